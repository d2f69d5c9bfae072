"""Chunk tasks on the real PostgreSQL: fair leases across ATOs, a chunk taken twice written
once, one outcome however many workers race to decide it, DUP_02 between two uploads of one
ATO finishing together, the reference version an upload was planned with, and the uploads the
pipeline cannot finish ending `errored`."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pipeline_helpers import (
    TOPICS,
    decide,
    new_ato,
    process_without_deciding,
    revalidate,
    validate_stored,
)
from pipeline_helpers import store_upload as stored
from pipeline_helpers import validator_settings as settings

from services.core.reference_store import ReferenceCache, load_into_database
from services.core.storage import FolderStorage
from services.validator import chunk_queue
from services.validator.chunk_worker import ChunkWorker
from services.validator.planner import plan_upload

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
ULNS = ("1000000043", "1234567899", "5555555554", "1111111110", "1234567805")


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


def row(uln: str, course: str = "SD-WAH-101", day: str = "12/11/2026") -> str:
    return f"REF,{course},{day},Amelia,Hartley,14/03/1990,{uln},,,79049946,"


async def store_upload(
    pool: asyncpg.Pool, root: Path, content: bytes, ato_id: str, policy: str = "all_or_nothing"
) -> uuid.UUID:
    return await stored(pool, root, content, ato_id=ato_id, policy=policy)


async def upload_row(pool: asyncpg.Pool, upload_id: uuid.UUID) -> asyncpg.Record:
    async with pool.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", upload_id)
    assert row is not None
    return row


async def test_chunks_are_leased_round_robin_across_atos(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    big_ato, small_ato = await new_ato(pool, "Big"), await new_ato(pool, "Small")
    config = settings(tmp_path, chunk_rows=2)
    big = await store_upload(pool, tmp_path, csv_file(*(row(u) for u in ULNS * 2)), big_ato)
    small = await store_upload(pool, tmp_path, csv_file(row(ULNS[0])), small_ato)
    for upload_id in (big, small):  # the big upload is planned first: 5 chunks queued
        await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)

    order = []
    async with pool.acquire() as connection:
        while (chunk := await chunk_queue.lease_next(connection, lease_s=600)) is not None:
            order.append(("big" if chunk.upload_id == big else "small", chunk.chunk_no))

    # The small upload's only chunk comes second, not after the big upload's five.
    assert order == [("big", 0), ("small", 0), ("big", 1), ("big", 2), ("big", 3), ("big", 4)]


async def test_a_chunk_taken_again_after_its_lease_ran_out_is_written_once(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rows = [row(ULNS[i % 5], day=f"{1 + i % 19}/11/2026") for i in range(10)]
    expected = await validate_stored(pool, tmp_path / "a", csv_file(*rows), chunk_rows=4)
    ato_id = await new_ato(pool, "Stalled")
    upload_id = await store_upload(pool, tmp_path / "b", csv_file(*rows), ato_id)
    config = settings(tmp_path / "b", chunk_rows=4, chunk_lease_s=0)
    await plan_upload(pool, FolderStorage(tmp_path / "b"), config, TOPICS, upload_id)
    stalled, other = (ChunkWorker(config, pool, TOPICS) for _ in range(2))

    async with pool.acquire() as connection:
        first = await chunk_queue.lease_next(connection, lease_s=0)
    assert first is not None
    stalled_result = await stalled._validate(first)  # then it stalls past its lease
    await other.run_until_idle()  # takes the same chunk again, and every other, and decides
    async with pool.acquire() as connection, connection.transaction():
        late = await chunk_queue.complete(connection, first, stalled_result, 1.0)

    assert late is None
    decided = await revalidate(pool, tmp_path / "b", upload_id)
    for field in ("status", "rows_total", "rows_valid", "rows_invalid", "counts_by_code"):
        assert decided[field] == expected[field], field
    async with pool.acquire() as connection:
        achievements = await connection.fetchval(
            "SELECT count(*) FROM achievements WHERE upload_id = $1", upload_id
        )
    assert achievements == 10


async def test_workers_racing_to_decide_an_upload_record_one_outcome(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ato_id = await new_ato(pool, "Race")
    config = settings(tmp_path, chunk_rows=2)
    upload_id = await store_upload(pool, tmp_path, csv_file(*(row(u) for u in ULNS)), ato_id)
    await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)
    await process_without_deciding(pool, config, monkeypatch)

    decided = await asyncio.gather(*(decide(pool, upload_id) for _ in range(4)))

    assert sorted(decided) == [False, False, False, True]
    async with pool.acquire() as connection:
        events = await connection.fetch(
            "SELECT payload::json->>'event_type' AS type, count(*) AS n FROM outbox"
            " WHERE payload::json->>'upload_id' = $1 GROUP BY 1 ORDER BY 1",
            str(upload_id),
        )
    # Progress at most once a second: the first chunk's, then the outcome. The achievements
    # are announced in the parts their chunks staged: 2 + 2 + 1.
    assert [(e["type"], e["n"]) for e in events] == [
        ("achievements.accepted", 3),
        ("upload.progress", 1),
        ("upload.validated", 1),
        ("upload.validation_started", 1),
    ]
    assert (await upload_row(pool, upload_id))["status"] == "passed"


async def test_of_two_uploads_of_one_ato_finishing_together_exactly_one_gets_dup_02(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ato_id = await new_ato(pool, "Twice")
    config = settings(tmp_path)
    first = await store_upload(pool, tmp_path, csv_file(row(ULNS[0]), row(ULNS[1])), ato_id)
    second = await store_upload(pool, tmp_path, csv_file(row(ULNS[1]), row(ULNS[2])), ato_id)
    for upload_id in (first, second):
        await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)
    # Both uploads' chunks looked for earlier duplicates before either was accepted.
    await process_without_deciding(pool, config, monkeypatch)

    await asyncio.gather(decide(pool, first), decide(pool, second))
    # The one deferred behind the other's outcome lock is the sweep's here (a worker holding
    # the lock would decide it after its own).
    await ChunkWorker(config, pool, TOPICS).run_until_idle()

    outcomes = sorted(
        [(r["status"], dict(r["counts_by_code"])) for r in [await upload_row(pool, first)]]
        + [(r["status"], dict(r["counts_by_code"])) for r in [await upload_row(pool, second)]]
    )
    assert outcomes == [("failed", {"DUP_02": 1}), ("passed", {})]


async def test_the_outcomes_dup_02_re_check_spans_chunks_and_counts_dup_01_rows_once_each(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The later upload's chunks looked before the earlier one was accepted: its outcome finds
    the repeats, chunk by chunk (one row per chunk here), after DUP_01."""
    ato_id = await new_ato(pool, "Rechecked")
    config = settings(tmp_path, chunk_rows=1)
    earlier = await store_upload(pool, tmp_path, csv_file(row(ULNS[0]), row(ULNS[1])), ato_id)
    later = await store_upload(
        pool,
        tmp_path,
        # Row 2 repeats the earlier upload; row 3 repeats row 2 (DUP_01) and so the earlier
        # upload too; row 4 is new; row 5 repeats the earlier upload.
        csv_file(row(ULNS[1]), row(ULNS[1]), row(ULNS[2]), row(ULNS[0])),
        ato_id,
        policy="valid_rows",
    )
    for upload_id in (earlier, later):
        await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)
    await process_without_deciding(pool, config, monkeypatch)

    assert await decide(pool, earlier)
    assert await decide(pool, later)

    decided = await upload_row(pool, later)
    assert (decided["status"], decided["rows_valid"], decided["rows_invalid"]) == (
        "partially_accepted",
        1,
        3,
    )
    assert dict(decided["counts_by_code"]) == {"DUP_01": 1, "DUP_02": 3}
    async with pool.acquire() as connection:
        kept = await connection.fetch(
            "SELECT row_number FROM achievements WHERE upload_id = $1", later
        )
        issues = await connection.fetch(
            "SELECT row_number, code FROM row_issues WHERE upload_id = $1"
            " ORDER BY row_number, code",
            later,
        )
    assert [r["row_number"] for r in kept] == [4]
    assert [(r["row_number"], r["code"]) for r in issues] == [
        (2, "DUP_02"),
        (3, "DUP_01"),
        (3, "DUP_02"),
        (5, "DUP_02"),
    ]


async def test_an_upload_keeps_the_reference_version_it_was_planned_with(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    ato_id = await new_ato(pool, "Versions")
    config = settings(tmp_path)
    upload_id = await store_upload(pool, tmp_path, csv_file(row(ULNS[0])), ato_id)
    await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)
    planned_with = (await upload_row(pool, upload_id))["reference_version"]

    # The catalogue loses the upload's course before its chunk is validated.
    folder = tmp_path / "reference"
    folder.mkdir()
    bundled = Path(__file__).parents[3] / "services/core/scheme/reference_data"
    courses = (bundled / "courses.csv").read_text().splitlines(keepends=True)
    (folder / "courses.csv").write_text("".join(c for c in courses if "SD-WAH-101" not in c))
    (folder / "employers.csv").write_text((bundled / "employers.csv").read_text())
    async with pool.acquire() as connection:
        newer = await load_into_database(connection, folder)

    await ChunkWorker(config, pool, TOPICS, ReferenceCache(pool, check_every_s=0)).run_until_idle()

    decided = await upload_row(pool, upload_id)
    assert newer == planned_with + 1
    assert (decided["status"], decided["reference_version"]) == ("passed", planned_with)
    later = await validate_stored(pool, tmp_path, csv_file(row(ULNS[1])), ato_id=ato_id)
    assert (later["status"], later["reference_version"]) == ("failed", newer)
    assert later["counts_by_code"] == {"COURSE_03": 1}


async def test_an_upload_whose_stored_file_is_gone_ends_errored(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    ato_id = await new_ato(pool, "Lost")
    config = settings(tmp_path)
    upload_id = await store_upload(pool, tmp_path, csv_file(row(ULNS[0])), ato_id)
    await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)
    FolderStorage(tmp_path).path(f"uploads/{upload_id}.csv").unlink()

    await ChunkWorker(config, pool, TOPICS).run_until_idle()

    errored = await upload_row(pool, upload_id)
    assert (errored["status"], errored["rows_total"], errored["file_error_code"]) == (
        "errored",
        0,
        None,
    )
    async with pool.acquire() as connection:
        outcome = await connection.fetchval(
            "SELECT payload::json->>'status' FROM outbox WHERE payload::json->>'upload_id' = $1"
            " AND payload::json->>'event_type' = 'upload.validated'",
            str(upload_id),
        )
    assert outcome == "errored"


async def test_a_chunk_that_keeps_failing_ends_its_upload_errored(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.validator import chunk_worker

    ato_id = await new_ato(pool, "Poison")
    config = settings(tmp_path, chunk_max_attempts=2)
    upload_id = await store_upload(pool, tmp_path, csv_file(row(ULNS[0])), ato_id)
    await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)
    calls = 0

    def broken(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        raise ValueError("a rule that fails on this chunk")

    monkeypatch.setattr(chunk_worker, "validate_leased_chunk", broken)
    await ChunkWorker(config, pool, TOPICS).run_until_idle()

    assert calls == 2
    assert (await upload_row(pool, upload_id))["status"] == "errored"


async def test_an_express_lease_takes_only_the_chunks_of_small_uploads(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    big_ato, small_ato = await new_ato(pool, "Big"), await new_ato(pool, "Small")
    config = settings(tmp_path, chunk_rows=2)
    small_file = csv_file(row(ULNS[0]))
    big = await store_upload(pool, tmp_path, csv_file(*(row(u) for u in ULNS * 2)), big_ato)
    small = await store_upload(pool, tmp_path, small_file, small_ato)
    for upload_id in (big, small):  # the big upload is planned first: 5 chunks queued
        await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)

    async with pool.acquire() as connection:
        express = await chunk_queue.lease_next(connection, 600, max_upload_bytes=len(small_file))
        nothing_small_left = await chunk_queue.lease_next(
            connection, 600, max_upload_bytes=len(small_file)
        )
        any_size = await chunk_queue.lease_next(connection, 600)

    assert express is not None
    assert (express.upload_id, express.chunk_no) == (small, 0)
    assert nothing_small_left is None
    assert any_size is not None
    assert (any_size.upload_id, any_size.chunk_no) == (big, 0)


async def test_a_small_upload_is_planned_in_parts_for_the_validators_to_share(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    ato = await new_ato(pool, "Small")
    content = csv_file(*(row(u) for u in ULNS[:4]))
    upload_id = await store_upload(pool, tmp_path, content, ato)
    # Halves of the file's bytes: the header and two records, then the other two.
    config = settings(tmp_path, split_parts=2, split_min_bytes=1)

    await plan_upload(pool, FolderStorage(tmp_path), config, TOPICS, upload_id)

    assert (await upload_row(pool, upload_id))["chunks_total"] == 2
    await ChunkWorker(config, pool, TOPICS, ReferenceCache(pool)).run_until_idle()
    decided = await upload_row(pool, upload_id)
    assert (decided["status"], decided["rows_total"]) == ("passed", 4)
