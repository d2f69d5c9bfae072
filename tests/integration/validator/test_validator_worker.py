"""The planner's answers to the shared consumer loop: a poison message is unusable (dead-lettered
by the loop), an upload whose planning keeps failing ends `errored` and is unusable, and an
outage is retried later, never dead-lettered."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from services.core.consumer import DONE, RetryLater, Unusable
from services.core.events import UploadReceived, encode_event
from services.core.settings import CommonSettings, StorageSettings
from services.upload_gateway.keys import create_ato
from services.validator import worker as worker_module
from services.validator.settings import ValidatorSettings
from services.validator.worker import UploadPlanner


def planner(pool: asyncpg.Pool, root: Path) -> UploadPlanner:
    settings = ValidatorSettings(
        common=CommonSettings(storage=StorageSettings(root=root)), max_attempts=2, retry_delay_s=0
    )
    return UploadPlanner(settings, pool)


def record(value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.achievements.uploads.v1",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


async def stored_upload(pool: asyncpg.Pool) -> UploadReceived:
    upload_id = uuid.uuid4()
    async with pool.acquire() as connection:
        ato_id = (await create_ato(connection, "Planner ATO")).ato_id
        await connection.execute(
            "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
            " storage_key, terms_accepted_at, upload_date)"
            " VALUES ($1, $2, 'f.csv', 1, $3, 'all_or_nothing', $4, $5, $6)",
            upload_id,
            ato_id,
            "0" * 64,
            f"uploads/{upload_id}.csv",
            datetime.now(UTC),
            date(2026, 11, 20),
        )
    return UploadReceived(
        upload_id=upload_id,
        ato_id=ato_id,
        size_bytes=1,
        sha256="0" * 64,
        policy="all_or_nothing",
        storage_key=f"uploads/{upload_id}.csv",
        upload_date=date(2026, 11, 20),
    )


async def test_an_upload_whose_planning_keeps_failing_ends_errored_and_unusable(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []

    async def broken_plan(*args: Any) -> None:
        attempts.append(1)
        raise ValueError("a bug in a rule")

    monkeypatch.setattr(worker_module, "plan_upload", broken_plan)
    event = await stored_upload(pool)
    handler = planner(pool, tmp_path)

    first = await handler.handle(record(encode_event(event)))
    second = await handler.handle(record(encode_event(event)))

    assert isinstance(first, RetryLater)
    assert second == Unusable("ValueError")
    assert len(attempts) == 2
    async with pool.acquire() as connection:
        status = await connection.fetchval(
            "SELECT status FROM uploads WHERE upload_id = $1", event.upload_id
        )
    assert status == "errored"


async def test_a_message_that_is_not_an_event_is_unusable(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    assert await planner(pool, tmp_path).handle(record(b"{not json")) == Unusable("ValidationError")


async def test_an_outage_is_retried_later_never_dead_lettered(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def storage_gone(*args: Any) -> None:
        raise FileNotFoundError("the shared storage is not mounted")

    monkeypatch.setattr(worker_module, "plan_upload", storage_gone)
    event = await stored_upload(pool)
    handler = planner(pool, tmp_path)

    outcomes = [await handler.handle(record(encode_event(event))) for _ in range(3)]

    assert outcomes == [RetryLater("FileNotFoundError")] * 3


async def test_a_planned_upload_is_done(pool: asyncpg.Pool, tmp_path: Path) -> None:
    event = await stored_upload(pool)
    path = tmp_path / event.storage_key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a scheme header\r\nx\r\n")

    assert await planner(pool, tmp_path).handle(record(encode_event(event))) is DONE
