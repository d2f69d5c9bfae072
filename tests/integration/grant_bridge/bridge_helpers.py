"""Helpers for the grant bridge's integration tests: seeded achievements, a bridge run in
process, and a stand-in whose claim-creating requests are counted per claim id."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.core.events import AcceptedAchievement, AchievementsAccepted, Topics, encode_event
from services.core.kafka import make_producer
from services.core.settings import (
    CommonSettings,
    DeploymentMode,
    KafkaSettings,
    PostgresSettings,
)
from services.core.states import UploadState
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import GrantClient, new_session
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_bridge.worker import AcceptedConsumer
from services.grant_standin.app import create_app
from services.grant_standin.settings import Settings as StandinSettings

TOKEN = "bridge-test-token"
ADMIN_TOKEN = "bridge-test-standin-admin-token"
# In the stand-in's bundled reference data: a course with a grant and a grant-eligible employer.
COURSE_CODE = "SD-WAH-101"
COURSE_GRANT_PENCE = 6000
ELIGIBLE_LEVY = "79049946"
STANDIN_MIGRATIONS = "services.grant_standin.migrations"
ULN_BASE = 1_000_000_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestCounter:
    """Counts claim-creating requests per claim id, whatever the stand-in then answers."""

    def __init__(self) -> None:
        self.per_claim: Counter[str] = Counter()
        self.requests = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path in ("/v1/claims", "/v1/claim-batches"):
            self.requests += 1
            body = json.loads(await request.read())
            claims = body["claims"] if request.path.endswith("batches") else [body]
            self.per_claim.update(str(claim["claim_id"]) for claim in claims)
        return await handler(request)


@dataclass
class Standin:
    server: TestServer
    counter: RequestCounter
    database_url: str

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        token = ADMIN_TOKEN if path.startswith("/admin/") else TOKEN
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(method, self.url + path, **kwargs) as response,
        ):
            assert response.status == 200, await response.text()
            return await response.json()

    async def set_faults(self, **changes: Any) -> None:
        await self._call("PUT", "/admin/faults", json=changes)

    async def claims_of(self, upload_id: uuid.UUID) -> list[dict[str, Any]]:
        body = await self._call("GET", "/v1/claims", params={"upload_id": str(upload_id)})
        claims: list[dict[str, Any]] = body["claims"]
        return claims


@asynccontextmanager
async def serve_standin(database_url: str, **settings: Any) -> AsyncIterator[Standin]:
    app = create_app(
        StandinSettings(
            database_url=database_url,
            port=0,
            token=TOKEN,
            admin_token=ADMIN_TOKEN,
            seed=11,
            deployment_mode=DeploymentMode.LOCAL,
            **settings,
        )
    )
    counter = RequestCounter()
    app.middlewares.insert(0, counter.middleware)
    server = TestServer(app, port=0)
    await server.start_server()
    try:
        yield Standin(server, counter, database_url)
    finally:
        await server.close()


def bridge_settings(
    database_url: str, kafka_settings: KafkaSettings, standin: Standin, **overrides: Any
) -> GrantBridgeSettings:
    values: dict[str, Any] = {
        "grant_api_url": standin.url,
        "token": TOKEN,
        "consumer_group": f"grant-bridge-{uuid.uuid4().hex[:8]}",
        "consumer_poll_timeout_ms": 200,
        "poll_interval_s": 0.05,
        "release_grace_s": 0.0,
        "backoff_base_s": 0.02,
        "backoff_cap_s": 0.3,
        "breaker_failure_threshold": 5,
        "breaker_cooldown_s": 0.3,
        "client_timeout_s": 5.0,
        "lease_s": 30.0,
        "deployment_mode": DeploymentMode.LOCAL,
        "common": CommonSettings(
            postgres=PostgresSettings(
                database_url=database_url, deployment_mode=DeploymentMode.LOCAL
            ),
            kafka=kafka_settings,
        ),
    }
    values.update(overrides)
    return GrantBridgeSettings(**values)


@dataclass
class Seeded:
    upload_id: uuid.UUID
    ato_id: str
    released: list[uuid.UUID] = field(default_factory=list)
    withdrawn: list[uuid.UUID] = field(default_factory=list)
    ineligible: list[uuid.UUID] = field(default_factory=list)
    future: list[uuid.UUID] = field(default_factory=list)
    rows: list[AcceptedAchievement] = field(default_factory=list)

    def event(self) -> AchievementsAccepted:
        return AchievementsAccepted(
            upload_id=self.upload_id, ato_id=self.ato_id, achievements=self.rows
        )


async def seed_upload(
    pool: asyncpg.Pool,
    *,
    released: int = 0,
    withdrawn: int = 0,
    ineligible: int = 0,
    future: int = 0,
    release_in_s: float = 3600.0,
    uln_base: int = ULN_BASE,
    course_code: str = COURSE_CODE,
    levy_number: str = ELIGIBLE_LEVY,
) -> Seeded:
    """An ATO, an upload and its accepted achievements, as the validator leaves them."""
    upload_id = uuid.uuid4()
    ato_id = f"ATO-{uuid.uuid4().hex[:8].upper()}"
    seeded = Seeded(upload_id=upload_id, ato_id=ato_id)
    async with pool.acquire() as connection, connection.transaction():
        now = await connection.fetchval("SELECT now()")
        await connection.execute("INSERT INTO atos (ato_id, name) VALUES ($1, 'Test ATO')", ato_id)
        await connection.execute(
            "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
            " storage_key, terms_accepted_at, upload_date, status)"
            " VALUES ($1, $2, 'a.csv', 1, 'x', 'valid_rows', 'k', now(), current_date, $3)",
            upload_id,
            ato_id,
            UploadState.PASSED,
        )
        kinds = (
            [("released", True, "held", -60.0)] * released
            + [("withdrawn", True, "withdrawn", -60.0)] * withdrawn
            + [("ineligible", False, "not_eligible", -60.0)] * ineligible
            + [("future", True, "held", release_in_s)] * future
        )
        rows = []
        for row_number, (kind, eligible, state, release_offset_s) in enumerate(kinds, start=2):
            achievement_id = uuid.uuid4()
            release_at: datetime = now + timedelta(seconds=release_offset_s)
            getattr(seeded, kind).append(achievement_id)
            seeded.rows.append(
                AcceptedAchievement(
                    achievement_id=achievement_id,
                    row_number=row_number,
                    grant_eligible=eligible,
                    release_at=release_at,
                )
            )
            rows.append(
                (
                    achievement_id,
                    upload_id,
                    row_number,
                    ato_id,
                    f"REF-{row_number}",
                    course_code,
                    date(2026, 3, 1),
                    "Forename",
                    "Surname",
                    date(1990, 4, 1),
                    str(uln_base + row_number),
                    levy_number,
                    "cohort B",
                    eligible,
                    release_at,
                    state,
                )
            )
        await connection.executemany(
            "INSERT INTO achievements (achievement_id, upload_id, row_number, ato_id,"
            " provider_reference, course_code, achievement_date, forename, surname, date_of_birth,"
            " uln, levy_number, notes, grant_eligible, release_at, grant_state)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            rows,
        )
    return seeded


async def publish(kafka_settings: KafkaSettings, topics: Topics, *messages: Any) -> None:
    """Events (or raw bytes) on the accepted topic, keyed by upload so they share a partition."""
    producer = make_producer(kafka_settings, "bridge-test")
    await producer.start()
    try:
        for message in messages:
            if isinstance(message, AchievementsAccepted):
                value, key = encode_event(message), str(message.upload_id).encode()
            else:
                value, key = message
            await producer.send_and_wait(topics.accepted, value=value, key=key)
    finally:
        await producer.stop()


class Bridge:
    """A consumer and one or more forwarders running in this process until the block ends."""

    def __init__(
        self, settings: GrantBridgeSettings, pool: asyncpg.Pool, topics: Topics, forwarders: int
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.topics = topics
        self.forwarder_count = forwarders
        self.forwarders: list[Forwarder] = []

    @asynccontextmanager
    async def running(self, *, consume: bool = True) -> AsyncIterator[Bridge]:
        stop = asyncio.Event()
        settings = self.settings
        sessions = [
            new_session(
                token=settings.token.get_secret_value(),
                timeout_s=settings.client_timeout_s,
                max_connections=settings.single_concurrency,
            )
            for _ in range(self.forwarder_count)
        ]
        self.forwarders = [
            Forwarder(
                settings, self.pool, GrantClient(session, settings.grant_api_url), self.topics
            )
            for session in sessions
        ]
        producer = make_producer(settings.common.kafka, "bridge-test-dlq")
        await producer.start()
        tasks = [asyncio.create_task(f.run(stop)) for f in self.forwarders]
        if consume:
            consumer = AcceptedConsumer(settings, self.pool, producer, self.topics)
            tasks.append(asyncio.create_task(consumer.run(stop)))
        try:
            yield self
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for session in sessions:
                await session.close()
            await producer.stop()
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def claim_states(pool: asyncpg.Pool) -> dict[uuid.UUID, str]:
    rows = await pool.fetch("SELECT achievement_id, state FROM grant_claims")
    return {row["achievement_id"]: row["state"] for row in rows}


async def all_closed(pool: asyncpg.Pool, expected: int) -> bool:
    counts = await pool.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE state <> 'pending') AS closed"
        " FROM grant_claims"
    )
    return bool(counts["total"] == expected and counts["closed"] == expected)


async def outbox_events(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT payload::json AS payload FROM outbox ORDER BY id")
    return [row["payload"] for row in rows]


def now_utc() -> datetime:
    return datetime.now(UTC)
