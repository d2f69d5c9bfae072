"""Forwarding throughput of the grant bridge: single claims vs batches, claims per second.

Runs against a healthy stand-in served in this process (its own fresh database) and a fresh
pipeline database on the local PostgreSQL; Kafka is not involved (claims are recorded pending
directly, as the consumer would). Both share this process's one event loop, so the figures
include the stand-in's own work.

    .venv/bin/python bench/bench_grant_bridge.py [--claims 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import date, timedelta

import asyncpg
from aiohttp.test_utils import TestServer
from scratch_database import admin, database_url

from services.core.db import create_pool, migrate_dsn
from services.core.events import AcceptedAchievement, Topics
from services.core.logging import configure_logging
from services.core.settings import CommonSettings, PostgresSettings
from services.grant_bridge.claims import record_pending
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import GrantClient, new_session
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_standin.app import create_app
from services.grant_standin.settings import Settings as StandinSettings

TOKEN = "bench-token"  # noqa: S105 (a throwaway token for the in-process stand-in)


async def _seed(pool: asyncpg.Pool, claims: int, uln_base: int) -> None:
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
            " VALUES ($1, $2, $3, $4, 'REF', 'SD-WAH-101', $5, 'Forename', 'Surname', $6, $7,"
            " '79049946', 'cohort', true, $8, 'held')",
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


async def _forward_all(settings: GrantBridgeSettings, pool: asyncpg.Pool, claims: int) -> float:
    """Seconds to forward every pending claim."""
    session = new_session(
        token=TOKEN,
        timeout_s=settings.client_timeout_s,
        max_connections=settings.single_concurrency,
    )
    try:
        forwarder = Forwarder(
            settings, pool, GrantClient(session, settings.grant_api_url), Topics("bench.")
        )
        started = time.perf_counter()
        while await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'pending'"):
            await forwarder.forward_once()
        elapsed_s = time.perf_counter() - started
    finally:
        await session.close()
    accepted = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'accepted'")
    assert accepted == claims, f"{accepted} of {claims} claimed"
    return elapsed_s


async def main(claims: int, single_concurrency: int) -> None:
    configure_logging("bench", "WARNING")
    suffix = uuid.uuid4().hex[:8]
    pipeline_db, standin_db = f"bench_bridge_{suffix}", f"bench_standin_{suffix}"
    for name in (pipeline_db, standin_db):
        await admin(f"CREATE DATABASE {name}")
    try:
        await migrate_dsn(database_url(pipeline_db))
        await migrate_dsn(database_url(standin_db), "services.grant_standin.migrations")
        server = TestServer(
            create_app(
                StandinSettings(
                    database_url=database_url(standin_db), port=0, token=TOKEN, log_level="WARNING"
                )
            ),
            port=0,
        )
        await server.start_server()
        pool = await create_pool(PostgresSettings(), dsn=database_url(pipeline_db))
        try:
            figures: dict[str, float] = {}
            for mode, batching, uln_base in (
                ("single", False, 1_000_000_000),
                ("batched", True, 2_000_000_000),
            ):
                await pool.execute("TRUNCATE grant_claims, outbox")
                await _seed(pool, claims, uln_base)
                settings = GrantBridgeSettings(
                    grant_api_url=str(server.make_url("")).rstrip("/"),
                    token=TOKEN,
                    batching=batching,
                    single_concurrency=single_concurrency,
                    release_grace_s=0.0,
                    common=CommonSettings(
                        postgres=PostgresSettings(database_url=database_url(pipeline_db))
                    ),
                )
                elapsed_s = await _forward_all(settings, pool, claims)
                figures[mode] = claims / elapsed_s
                print(
                    f"{mode:8} {claims} claims in {elapsed_s:6.2f} s: {figures[mode]:8.0f} claims/s"
                )
            print(f"batched/single: {figures['batched'] / figures['single']:.1f}x")
        finally:
            await pool.close()
            await server.close()
    finally:
        for name in (pipeline_db, standin_db):
            await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--single-concurrency", type=int, default=8)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.claims, arguments.single_concurrency))
