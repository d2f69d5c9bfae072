"""Forwarding throughput of the grant bridge, claims per second, against the stand-in run as its
own process, beside what the stand-in answers alone to a raw client at the same concurrency.

Two throwaway databases on the PostgreSQL of `DATABASE_URL` (the pipeline's and the
stand-in's); Kafka is not involved (claims are recorded pending directly, as the consumer
would). Stages, each on fresh claims:

- **stand-in alone**: pre-built batches of `--batch-size` claims POSTed by a bare aiohttp
  client with `--in-flight` requests at once: what the stand-in (and its database) can take.
- **bridge**: the bridge's forwarder with the given settings, from its first lease until every
  claim is accepted (first claim to last), then a check that each claim was sent exactly once.

Each stage prints the stand-in's CPU (its process, user + system) as a share of one core over
the stage: when the bridge runs slower than the raw client and the stand-in's share is below
the raw client's, the stand-in is not what bounds the bridge.

    DATABASE_URL=... .venv/bin/python bench/bench_grant_bridge.py [--claims 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from scratch_database import admin, database_url

from services.core.db import create_pool, migrate_dsn
from services.core.events import AcceptedAchievement, Topics
from services.core.logging import configure_logging
from services.core.settings import CommonSettings, PostgresSettings
from services.grant_bridge.claims import record_pending
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import GrantClient, new_session
from services.grant_bridge.settings import GrantBridgeSettings

TOKEN = "bench-token"  # noqa: S105 (a throwaway token for the bench's own stand-in)
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105
REPO = Path(__file__).resolve().parent.parent
COURSE, LEVY = "SD-WAH-101", "79049946"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _backends_cpu_s(pool: asyncpg.Pool, databases: list[str]) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving the bench's databases (the server
    runs on this machine)."""
    pids = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])", databases
    )
    found: dict[int, float] = {}
    for row in pids:
        with contextlib.suppress(OSError):
            found[row["pid"]] = _cpu_s(row["pid"])
    return found


@dataclass
class StandIn:
    process: asyncio.subprocess.Process
    url: str

    @contextlib.asynccontextmanager
    async def cpu_share(
        self, into: dict[str, float], pool: asyncpg.Pool, databases: list[str]
    ) -> AsyncIterator[None]:
        """Per stage: the stand-in's, this process's and the databases' backends' CPU seconds,
        and the stand-in's share of one core."""
        standin, own = _cpu_s(self.process.pid), _own_cpu_s()
        backends = await _backends_cpu_s(pool, databases)
        wall = time.perf_counter()
        yield
        wall = time.perf_counter() - wall
        into["standin_cpu_s"] = _cpu_s(self.process.pid) - standin
        into["standin_core"] = into["standin_cpu_s"] / wall
        into["own_cpu_s"] = _own_cpu_s() - own
        after = await _backends_cpu_s(pool, databases)
        into["postgres_cpu_s"] = sum(cpu - backends.get(pid, 0.0) for pid, cpu in after.items())


def _cpu_line(figures: dict[str, float]) -> str:
    return (
        f"    CPU s: stand-in {figures['standin_cpu_s']:.1f} ({figures['standin_core']:.0%} of a"
        f" core), this process {figures['own_cpu_s']:.1f}, PostgreSQL backends"
        f" {figures['postgres_cpu_s']:.1f}"
    )


async def _start_standin(dsn: str) -> StandIn:
    port = _free_port()
    env = {
        **os.environ,
        "GRANT_STANDIN_DATABASE_URL": dsn,
        "GRANT_STANDIN_PORT": str(port),
        "GRANT_STANDIN_TOKEN": TOKEN,
        "GRANT_STANDIN_ADMIN_TOKEN": ADMIN_TOKEN,
        "GRANT_STANDIN_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.grant_standin", cwd=REPO, env=env
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/admin/faults", headers=_auth(ADMIN_TOKEN)) as r:
                    if r.status == 200:
                        return StandIn(process, url)
            await asyncio.sleep(0.1)
    process.terminate()
    await process.wait()
    raise RuntimeError("the stand-in did not start")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _claim_body(row: int, uln: int, upload_id: str) -> dict[str, Any]:
    return {
        "claim_id": str(uuid.uuid4()),
        "ato_id": "ATO-BENCH",
        "levy_registration_number": LEVY,
        "course_code": COURSE,
        "achievement_date": "2026-03-01",
        "provider_reference": "REF",
        "learner": {
            "forename": "Forename",
            "surname": "Surname",
            "date_of_birth": "1990-04-01",
            "uln": str(uln),
            "ni_number": None,
            "citb_individual_id": None,
        },
        "notes": "cohort",
        "upload_id": upload_id,
        "row_number": row,
    }


async def raw_client(standin: StandIn, claims: int, batch_size: int, in_flight: int) -> float:
    """Claims/s the stand-in takes from a bare client: batches built beforehand, `in_flight`
    requests at once."""
    upload_id = str(uuid.uuid4())
    bodies = [_claim_body(row, 3_000_000_000 + row, upload_id) for row in range(2, claims + 2)]
    batches = [bodies[i : i + batch_size] for i in range(0, claims, batch_size)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    accepted = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while not queue.empty():
            batch = queue.get_nowait()
            async with session.post(
                f"{standin.url}/v1/claim-batches",
                json={"claims": batch},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ) as response:
                body = await response.json()
                if response.status != 207:
                    raise RuntimeError(f"stand-in answered {response.status}")
                accepted += sum(1 for r in body["results"] if r["status"] == 201)

    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(headers=_auth(TOKEN), connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(in_flight)))
        elapsed_s = time.perf_counter() - started
    if accepted != claims:
        raise RuntimeError(f"{accepted} of {claims} accepted by the stand-in")
    return elapsed_s


async def _seed(pool: asyncpg.Pool, claims: int, uln_base: int) -> uuid.UUID:
    upload_id = uuid.uuid4()
    ato_id = f"ATO-{uuid.uuid4().hex[:8].upper()}"
    async with pool.acquire() as connection, connection.transaction():
        released_at = await connection.fetchval("SELECT now()") - timedelta(minutes=1)
        await connection.execute("INSERT INTO atos (ato_id, name) VALUES ($1, 'Bench')", ato_id)
        await connection.execute(
            "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
            " storage_key, terms_accepted_at, upload_date) VALUES ($1, $2, 'b.csv', 1, 'x',"
            " 'valid_rows', 'k', now(), current_date)",
            upload_id,
            ato_id,
        )
        ids = [uuid.uuid4() for _ in range(claims)]
        await connection.executemany(
            "INSERT INTO achievements (achievement_id, upload_id, row_number, ato_id,"
            " provider_reference, course_code, achievement_date, forename, surname,"
            " date_of_birth, uln, levy_number, notes, grant_eligible, release_at, grant_state)"
            " VALUES ($1, $2, $3, $4, 'REF', $9, $5, 'Forename', 'Surname', $6, $7,"
            " $10, 'cohort', true, $8, 'held')",
            [
                (
                    achievement_id,
                    upload_id,
                    row,
                    ato_id,
                    date(2026, 3, 1),
                    date(1990, 4, 1),
                    str(uln_base + row),
                    released_at,
                    COURSE,
                    LEVY,
                )
                for row, achievement_id in enumerate(ids, start=2)
            ],
        )
        accepted = [
            AcceptedAchievement(
                achievement_id=a, row_number=row, grant_eligible=True, release_at=released_at
            )
            for row, a in enumerate(ids, start=2)
        ]
        await record_pending(connection, upload_id, accepted)
    return upload_id


async def bridge(
    settings: GrantBridgeSettings, pool: asyncpg.Pool, standin: StandIn, claims: int
) -> tuple[float, int]:
    """Seconds from the forwarder's start until every claim is accepted, and its requests."""
    session = new_session(
        token=TOKEN,
        timeout_s=settings.client_timeout_s,
        max_connections=max(settings.single_concurrency, settings.max_in_flight),
    )
    stop = asyncio.Event()
    try:
        forwarder = Forwarder(settings, pool, GrantClient(session, standin.url), Topics("bench."))
        started = time.perf_counter()
        running = asyncio.create_task(forwarder.run(stop))
        # Polled on the side, cheaply (the first pending claim ends the scan): the forwarder is
        # timed as the service runs it.
        while await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM grant_claims WHERE state = 'pending')"
        ):
            if running.done():
                running.result()
            await asyncio.sleep(0.02)
        elapsed_s = time.perf_counter() - started
        stop.set()
        await running
    finally:
        await session.close()
    accepted = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'accepted'")
    if accepted != claims:
        raise RuntimeError(f"{accepted} of {claims} claimed")
    return elapsed_s, forwarder.requests_sent


async def _sent_once(standin: StandIn, upload_id: uuid.UUID, claims: int) -> bool:
    """Every claim of the upload carried by exactly one request, answered 201."""
    async with (
        aiohttp.ClientSession(headers=_auth(ADMIN_TOKEN)) as session,
        session.get(f"{standin.url}/admin/calls", params={"upload_id": str(upload_id)}) as got,
    ):
        calls = (await got.json())["calls"]
    return len(calls) == claims and all(
        len(c) == 1 and c[0]["status"] == 201 for c in calls.values()
    )


async def main(arguments: argparse.Namespace) -> None:
    configure_logging("bench", "WARNING")
    suffix = uuid.uuid4().hex[:8]
    pipeline_db, standin_db = f"bench_bridge_{suffix}", f"bench_standin_{suffix}"
    for name in (pipeline_db, standin_db):
        await admin(f"CREATE DATABASE {name}")
    standin: StandIn | None = None
    claims, batch_size, in_flight = arguments.claims, arguments.batch_size, arguments.in_flight
    try:
        await migrate_dsn(database_url(pipeline_db))
        standin = await _start_standin(database_url(standin_db))
        pool = await create_pool(PostgresSettings(), dsn=database_url(pipeline_db))
        print(f"{claims} claims a stage, batches of {batch_size}, {in_flight} requests in flight")
        try:
            figures: dict[str, float] = {}
            databases = [pipeline_db, standin_db]
            async with standin.cpu_share(figures, pool, databases):
                elapsed_s = await raw_client(standin, claims, batch_size, in_flight)
            figures["raw"] = claims / elapsed_s
            print(
                f"stand-in alone (raw client): {elapsed_s:6.2f} s, {figures['raw']:6.0f} claims/s"
            )
            print(_cpu_line(figures))
            modes = [("bridge", True, 1_000_000_000)]
            if arguments.single:
                modes.append(("bridge, single claims", False, 2_000_000_000))
            for mode, batching, uln_base in modes:
                await pool.execute("TRUNCATE grant_claims, outbox")
                upload_id = await _seed(pool, claims, uln_base)
                settings = GrantBridgeSettings(
                    grant_api_url=standin.url,
                    token=TOKEN,
                    batching=batching,
                    batch_size=batch_size,
                    max_in_flight=in_flight,
                    release_grace_s=0.0,
                    poll_interval_s=0.05,
                    common=CommonSettings(
                        postgres=PostgresSettings(database_url=database_url(pipeline_db))
                    ),
                )
                async with standin.cpu_share(figures, pool, databases):
                    elapsed_s, requests = await bridge(settings, pool, standin, claims)
                once = await _sent_once(standin, upload_id, claims)
                figures[mode] = claims / elapsed_s
                print(
                    f"{mode}: {elapsed_s:6.2f} s, {figures[mode]:6.0f} claims/s first claim to"
                    f" last, {requests} requests, each claim sent once: {'yes' if once else 'NO'}"
                )
                print(_cpu_line(figures))
            print(f"bridge / stand-in alone: {figures['bridge'] / figures['raw']:.2f}")
        finally:
            await pool.close()
    finally:
        if standin is not None:
            standin.process.terminate()
            await asyncio.wait_for(standin.process.wait(), timeout=10)
        for name in (pipeline_db, standin_db):
            await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--single", action="store_true", help="also forward claims one by one")
    asyncio.run(main(parser.parse_args()))
