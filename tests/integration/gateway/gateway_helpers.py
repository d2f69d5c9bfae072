"""Helpers for the gateway's integration tests: settings, auth headers, and rows put straight
into the tables the validator owns (so the gateway is tested without a validator)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from services.core.settings import (
    CommonSettings,
    DeploymentMode,
    KafkaSettings,
    PostgresSettings,
    SchemeLimits,
    StorageSettings,
)
from services.upload_gateway.keys import NewKey
from services.upload_gateway.settings import GatewaySettings

Client = TestClient[web.Request, web.Application]
# make_client(app=None, **settings_overrides): the gateway started on a free port.
ClientFactory = Callable[..., Awaitable[Client]]

# The template's header row, as the scheme names the columns.
HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
VALID_CSV = f"{HEADER}\r\nR1,SMSTS-R,01/03/2026,Ann,Smith,01/01/1990,1000000043,,,,\r\n".encode()


def gateway_settings_for(
    database_url: str, storage_root: Path, **overrides: Any
) -> GatewaySettings:
    common = CommonSettings(
        postgres=PostgresSettings(
            database_url=SecretStr(database_url),
            db_pool_max_size=20,
            deployment_mode=DeploymentMode.LOCAL,
        ),
        storage=StorageSettings(root=storage_root),
        kafka=overrides.pop("kafka", None) or KafkaSettings(deployment_mode=DeploymentMode.LOCAL),
    )
    if "max_upload_bytes" in overrides:
        overrides["limits"] = SchemeLimits(max_upload_bytes=overrides.pop("max_upload_bytes"))
    return GatewaySettings(**{"run_outbox_relay": False, **overrides, "common": common})


def bearer(key: NewKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.api_key}"}


async def insert_upload(
    pool: asyncpg.Pool,
    ato_id: str,
    *,
    status: str = "passed",
    received_at: datetime | None = None,
    **columns: Any,
) -> uuid.UUID:
    """An upload row as the validator leaves it (the gateway's own path is tested elsewhere)."""
    upload_id = uuid.uuid4()
    values: dict[str, Any] = {
        "upload_id": upload_id,
        "ato_id": ato_id,
        "file_name": "june.csv",
        "size_bytes": 100,
        "sha256": "0" * 64,
        "policy": "all_or_nothing",
        "storage_key": f"uploads/{upload_id}.csv",
        "terms_accepted_at": datetime.now(UTC),
        "upload_date": date.today(),
        "status": status,
        "received_at": received_at or datetime.now(UTC),
        **columns,
    }
    names = ", ".join(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    async with pool.acquire() as connection:
        await connection.execute(
            f"INSERT INTO uploads ({names}) VALUES ({placeholders})", *values.values()
        )
    return upload_id


async def insert_achievement(
    pool: asyncpg.Pool,
    upload_id: uuid.UUID,
    ato_id: str,
    *,
    row_number: int = 2,
    grant_state: str = "held",
    release_in: timedelta = timedelta(days=2),
    grant_eligible: bool = True,
) -> uuid.UUID:
    achievement_id = uuid.uuid4()
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO achievements (achievement_id, upload_id, row_number, ato_id,"
            " course_code, achievement_date, forename, surname, date_of_birth, uln,"
            " grant_eligible, release_at, grant_state)"
            " VALUES ($1, $2, $3, $4, 'SMSTS-R', '2026-03-01', 'Ann', 'Smith', '1990-01-01',"
            " '1000000043', $5, now() + $6::interval, $7)",
            achievement_id,
            upload_id,
            row_number,
            ato_id,
            grant_eligible,
            release_in,
            grant_state,
        )
    return achievement_id


async def outbox_events(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch("SELECT payload::json AS payload FROM outbox ORDER BY id")
    return [row["payload"] for row in rows]


async def drop_database(database_url: str) -> None:
    """Drops a test database under a running app, to see how it copes with losing it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    connection = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await connection.close()


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def count_uploads(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM uploads")
    return count
