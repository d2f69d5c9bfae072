"""Running one upload's validation in-process against a test database."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.core.events import Topics
from services.core.reference_store import ReferenceCache
from services.core.settings import CommonSettings, StorageSettings
from services.core.storage import FolderStorage
from services.upload_gateway.keys import create_ato
from services.validator import upload_outcome
from services.validator.chunk_worker import ChunkWorker
from services.validator.planner import plan_upload
from services.validator.settings import ValidatorSettings

UPLOAD_DATE = date(2026, 11, 20)
TOPICS = Topics("unused.")


def validator_settings(storage_root: Path, **values: Any) -> ValidatorSettings:
    return ValidatorSettings(
        common=CommonSettings(storage=StorageSettings(root=storage_root)), **values
    )


async def new_ato(pool: asyncpg.Pool, name: str) -> str:
    async with pool.acquire() as connection:
        return (await create_ato(connection, name)).ato_id


async def process_without_deciding(
    pool: asyncpg.Pool, config: ValidatorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every queued chunk validated and written, no upload decided."""

    async def not_yet(self: ChunkWorker, upload_id: object) -> bool:
        return False

    with monkeypatch.context() as patch:
        patch.setattr(ChunkWorker, "decide", not_yet)
        await ChunkWorker(config, pool, TOPICS).run_until_idle()


async def decide(pool: asyncpg.Pool, upload_id: uuid.UUID) -> bool:
    """The outcome of one upload, as a worker decides it after its last chunk."""
    async with pool.acquire() as connection:
        return await upload_outcome.decide(
            connection,
            TOPICS,
            upload_id,
            max_rows=1_000_000,
            max_stored_issues=10_000,
            amendment_window_s=3600,
            accepted_event_chunk=1000,
        )


async def store_upload(
    pool: asyncpg.Pool,
    storage_root: Path,
    content: bytes,
    *,
    policy: str = "all_or_nothing",
    ato_id: str | None = None,
    upload_date: date = UPLOAD_DATE,
) -> uuid.UUID:
    """Stores `content` and its `uploads` row as the gateway would (a new ATO if none)."""
    storage = FolderStorage(storage_root)
    upload_id = uuid.uuid4()
    key = storage.key_for(upload_id)
    path = storage.path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    async with pool.acquire() as connection:
        if ato_id is None:
            ato_id = (await create_ato(connection, "Corpus ATO")).ato_id
        await connection.execute(
            "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
            " storage_key, terms_accepted_at, upload_date)"
            " VALUES ($1, $2, 'f.csv', $3, $4, $5, $6, $7, $8)",
            upload_id,
            ato_id,
            len(content),
            hashlib.sha256(content).hexdigest(),
            policy,
            key,
            datetime.now(UTC),
            upload_date,
        )
    return upload_id


async def validate_stored(
    pool: asyncpg.Pool,
    storage_root: Path,
    content: bytes,
    *,
    policy: str = "all_or_nothing",
    ato_id: str | None = None,
    upload_date: date = UPLOAD_DATE,
    **settings: Any,
) -> dict[str, Any]:
    """Stores `content` as a new upload, validates it, returns the upload row."""
    upload_id = await store_upload(
        pool, storage_root, content, policy=policy, ato_id=ato_id, upload_date=upload_date
    )
    return await revalidate(pool, storage_root, upload_id, **settings)


async def revalidate(
    pool: asyncpg.Pool, storage_root: Path, upload_id: uuid.UUID, **settings: Any
) -> dict[str, Any]:
    """Plans a stored upload (as a validator does with its `upload.received`), then works its
    chunks and outcome until nothing is left; returns the upload row and its issues."""
    storage = FolderStorage(storage_root)
    config = validator_settings(storage_root, **settings)
    await plan_upload(pool, storage, config, TOPICS, upload_id)
    await ChunkWorker(config, pool, TOPICS, ReferenceCache(pool)).run_until_idle()
    async with pool.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", upload_id)
        issues = await connection.fetch(
            "SELECT row_number, column_name, code, severity, message FROM row_issues"
            " WHERE upload_id = $1 ORDER BY row_number, position",
            upload_id,
        )
    assert row is not None
    result = dict(row.items())
    result["issues"] = [
        {
            "row": i["row_number"],
            "column": i["column_name"],
            "code": i["code"],
            "severity": i["severity"],
            "message": i["message"],
        }
        for i in issues
    ]
    return result
