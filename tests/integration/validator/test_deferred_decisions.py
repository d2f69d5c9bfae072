"""A worker never waits for another upload's decision of the same ATO: its own is deferred, and
the worker holding the ATO's outcome lock decides it after its own, or the sweep does (which
takes only uploads that can be decided now, and runs now and then while chunks keep coming).
Each upload is decided exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pipeline_helpers import TOPICS, decide, new_ato, process_without_deciding, store_upload
from pipeline_helpers import validator_settings as settings

from services.core.metrics import REGISTRY
from services.core.storage import FolderStorage
from services.validator.chunk_worker import ChunkWorker
from services.validator.planner import plan_upload

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
ULNS = ("1000000043", "1234567899", "5555555554", "1111111110", "1234567805")
# A liveness limit, not a speed target: a worker that waited on the lock would wait forever.
LIVENESS_S = 30.0


def csv_file(*ulns: str) -> bytes:
    rows = (
        f"REF,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,{uln},,,79049946," for uln in ulns
    )
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


async def planned(
    pool: asyncpg.Pool, root: Path, ato_id: str, *ulns: str, **values: Any
) -> uuid.UUID:
    upload_id = await store_upload(pool, root, csv_file(*ulns), ato_id=ato_id)
    await plan_upload(pool, FolderStorage(root), settings(root, **values), TOPICS, upload_id)
    return upload_id


@asynccontextmanager
async def ato_outcome_lock_held(pool: asyncpg.Pool, ato_id: str) -> AsyncIterator[None]:
    """Another connection holds the ATO's outcome lock (the key the decision takes) until the
    block ends, as a worker deciding another upload of the ATO would."""
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('upload-outcome:' || $1, 0))", ato_id
        )
        yield


async def status(pool: asyncpg.Pool, upload_id: uuid.UUID) -> str:
    async with pool.acquire() as connection:
        found: str = await connection.fetchval(
            "SELECT status FROM uploads WHERE upload_id = $1", upload_id
        )
    return found


async def outcome_events(pool: asyncpg.Pool, *upload_ids: uuid.UUID) -> list[int]:
    """How many `upload.validated` events each upload has in the outbox."""
    async with pool.acquire() as connection:
        return [
            await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE event_type = 'upload.validated'"
                " AND payload::json->>'upload_id' = $1",
                str(upload_id),
            )
            for upload_id in upload_ids
        ]


def deferrals() -> float:
    return REGISTRY.get_sample_value("validator_decisions_deferred_total") or 0.0


async def test_a_decision_behind_the_atos_lock_is_deferred_and_the_sweep_makes_it_later(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ato_id = await new_ato(pool, "Busy")
    config = settings(tmp_path)
    first = await planned(pool, tmp_path, ato_id, ULNS[0])
    second = await planned(pool, tmp_path, ato_id, ULNS[1])
    await process_without_deciding(pool, config, monkeypatch)
    worker = ChunkWorker(config, pool, TOPICS)
    deferred_before = deferrals()

    async with ato_outcome_lock_held(pool, ato_id):
        decided = await asyncio.wait_for(decide(pool, first), LIVENESS_S)
        # Nothing of this ATO can be decided while its lock is held: the sweep takes nothing.
        swept = await asyncio.wait_for(worker.decide_waiting_upload(), LIVENESS_S)
        held_statuses = [await status(pool, first), await status(pool, second)]

    assert (decided, swept) == (False, False)
    assert held_statuses == ["validating", "validating"]
    assert deferrals() == deferred_before + 1
    assert await outcome_events(pool, first, second) == [0, 0]

    await asyncio.wait_for(worker.run_until_idle(), LIVENESS_S)

    assert [await status(pool, first), await status(pool, second)] == ["passed", "passed"]
    assert await outcome_events(pool, first, second) == [1, 1]


async def test_the_worker_holding_the_atos_lock_then_decides_the_deferred_upload(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ato_id = await new_ato(pool, "Burst")
    config = settings(tmp_path)
    first = await planned(pool, tmp_path, ato_id, ULNS[0])
    second = await planned(pool, tmp_path, ato_id, ULNS[1])
    third = await planned(pool, tmp_path, ato_id, ULNS[2])
    await process_without_deciding(pool, config, monkeypatch)
    async with ato_outcome_lock_held(pool, ato_id):
        assert not await asyncio.wait_for(decide(pool, second), LIVENESS_S)
        assert not await asyncio.wait_for(decide(pool, third), LIVENESS_S)

    # The worker deciding the first upload (no sweep: `decide` alone) decides the other two.
    decided = await asyncio.wait_for(ChunkWorker(config, pool, TOPICS).decide(first), LIVENESS_S)

    assert decided
    statuses = [await status(pool, upload_id) for upload_id in (first, second, third)]
    assert statuses == ["passed", "passed", "passed"]
    assert await outcome_events(pool, first, second, third) == [1, 1, 1]


async def test_the_sweep_takes_an_upload_that_can_be_decided_now(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither an upload whose row another worker holds (it is deciding it) nor one whose ATO's
    lock is taken, though both have waited longer: another ATO's upload is decided."""
    being_decided, busy, free = [await new_ato(pool, name) for name in ("Held", "Busy", "Free")]
    config = settings(tmp_path)
    held_row = await planned(pool, tmp_path, being_decided, ULNS[0])
    behind_lock = await planned(pool, tmp_path, busy, ULNS[1])
    decidable = await planned(pool, tmp_path, free, ULNS[2])
    await process_without_deciding(pool, config, monkeypatch)
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE uploads SET validation_started_at = now() - interval '1 hour'"
            " WHERE upload_id = ANY($1::uuid[])",
            [held_row, behind_lock],
        )

    async with (
        ato_outcome_lock_held(pool, busy),
        pool.acquire() as holder,
        holder.transaction(),
    ):
        await holder.execute("SELECT 1 FROM uploads WHERE upload_id = $1 FOR UPDATE", held_row)
        worker = ChunkWorker(config, pool, TOPICS)
        swept = await asyncio.wait_for(worker.decide_waiting_upload(), LIVENESS_S)
        statuses = [await status(pool, u) for u in (held_row, behind_lock, decidable)]

    assert swept
    assert statuses == ["validating", "validating", "passed"]


async def test_the_sweep_runs_every_decide_sweep_s_while_chunks_keep_coming(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload whose deferred decision nobody made (the holder had looked already) is decided
    by a busy worker once `decide_sweep_s` has passed on its clock, not only when it is idle."""
    left, busy = await new_ato(pool, "Left"), await new_ato(pool, "Streaming")
    config = settings(tmp_path, chunk_rows=1, decide_sweep_s=2.0)
    undecided = await planned(pool, tmp_path, left, ULNS[0])
    await process_without_deciding(pool, config, monkeypatch)
    streaming = await planned(pool, tmp_path, busy, ULNS[1], ULNS[2], ULNS[3], chunk_rows=1)
    now = [100.0]
    worker = ChunkWorker(config, pool, TOPICS, clock=lambda: now[0])

    now[0] += 1.9
    assert await worker.work_once()  # a chunk of the streaming upload
    before_due = await status(pool, undecided)
    now[0] += 0.1
    assert await worker.work_once()  # another, then the sweep
    after_due = await status(pool, undecided)

    assert (before_due, after_due) == ("validating", "passed")
    assert await status(pool, streaming) == "validating"  # its third chunk is still queued
    assert await outcome_events(pool, undecided) == [1]
