"""What only the pipeline can check or guarantee: DUP_02 and FILE_07 against earlier uploads,
reference data refreshed without a restart, the cap on stored issues, and resuming a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pipeline_helpers import revalidate, validate_stored

from services.core.reference_store import ReferenceCache, load_into_database
from services.validator import chunk_queue

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
VALID_ULNS = ("1000000043", "1234567899", "5555555554", "1111111110", "1234567805")


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


def row(uln: str, course: str = "SD-WAH-101", day: str = "12/11/2026") -> str:
    return f"REF,{course},{day},Amelia,Hartley,14/03/1990,{uln},,,79049946,"


async def test_an_achievement_accepted_earlier_is_dup_02_until_it_is_withdrawn(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await validate_stored(pool, tmp_path, csv_file(row(VALID_ULNS[0])))
    assert first["status"] == "passed"

    again = await validate_stored(
        pool, tmp_path, csv_file(row(VALID_ULNS[1]), row(VALID_ULNS[0])), ato_id=first["ato_id"]
    )
    assert again["status"] == "failed"
    assert again["counts_by_code"] == {"DUP_02": 1}
    assert [(i["row"], i["code"], i["column"]) for i in again["issues"]] == [(3, "DUP_02", None)]

    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE achievements SET grant_state = 'withdrawn' WHERE upload_id = $1",
            first["upload_id"],
        )
    after_withdrawal = await validate_stored(
        pool, tmp_path, csv_file(row(VALID_ULNS[0]), row(VALID_ULNS[2])), ato_id=first["ato_id"]
    )
    assert after_withdrawal["status"] == "passed"


async def test_the_same_bytes_accepted_before_are_rejected_as_file_07(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    content = csv_file(row(VALID_ULNS[0]), row(VALID_ULNS[1]))
    first = await validate_stored(pool, tmp_path, content)
    second = await validate_stored(pool, tmp_path, content, ato_id=first["ato_id"])

    assert second["status"] == "rejected"
    assert second["file_error_code"] == "FILE_07"
    assert (second["rows_total"], second["issues"]) == (0, [])
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE uploads SET withdrawn_at = now() WHERE upload_id = $1", first["upload_id"]
        )
        await connection.execute(
            "UPDATE achievements SET grant_state = 'withdrawn' WHERE upload_id = $1",
            first["upload_id"],
        )
    third = await validate_stored(pool, tmp_path, content, ato_id=first["ato_id"])
    assert third["status"] == "passed"


async def test_reference_data_reloaded_reaches_a_running_worker(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    cache = ReferenceCache(pool, check_every_s=0)
    before = await cache.current()
    assert before.course("SD-NEW-900") is None

    folder = tmp_path / "reference"
    folder.mkdir()
    bundled = Path(__file__).parents[3] / "services/core/scheme/reference_data"
    courses = (bundled / "courses.csv").read_text()
    (folder / "courses.csv").write_text(courses + "SD-NEW-900,New course,1,4,6000,2018-04-01,\n")
    (folder / "employers.csv").write_text((bundled / "employers.csv").read_text())
    async with pool.acquire() as connection:
        await load_into_database(connection, folder)

    after = await cache.current()
    assert after.course("SD-NEW-900") is not None
    upload = await validate_stored(pool, tmp_path, csv_file(row(VALID_ULNS[0], "SD-NEW-900")))
    assert upload["status"] == "passed"


async def test_stored_issues_are_capped_while_counts_stay_exact(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    bad_rows = [row("12345") for _ in range(12)]
    upload = await validate_stored(pool, tmp_path, csv_file(*bad_rows), max_stored_issues=5)

    assert upload["counts_by_code"] == {"ULN_01": 12}
    assert len(upload["issues"]) == 5
    assert upload["rows_invalid"] == 12


async def test_a_validation_interrupted_between_chunks_resumes_with_one_result_per_row(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [row(VALID_ULNS[i % 5], day=f"{1 + i % 19}/11/2026") for i in range(40)]
    rows[7] = row("9999999999")
    content = csv_file(*rows)
    reference = await validate_stored(
        pool, tmp_path / "a", content, policy="valid_rows", chunk_rows=6
    )

    real_complete = chunk_queue.complete
    calls = 0

    async def crash_on_third_chunk(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionResetError("worker died")
        return await real_complete(*args, **kwargs)

    monkeypatch.setattr(chunk_queue, "complete", crash_on_third_chunk)
    # A lease of 0 s: the dead worker's chunk is free again at once.
    with pytest.raises(ConnectionResetError):
        await validate_stored(
            pool, tmp_path / "b", content, policy="valid_rows", chunk_rows=6, chunk_lease_s=0
        )
    async with pool.acquire() as connection:
        upload_id = await connection.fetchval(
            "SELECT upload_id FROM uploads WHERE status = 'validating'"
        )
        done = await connection.fetchval(
            "SELECT count(*) FROM validation_chunks WHERE upload_id = $1 AND state = 'done'",
            upload_id,
        )
    assert done == 2  # two whole chunks survived the crash
    monkeypatch.setattr(chunk_queue, "complete", real_complete)

    resumed = await revalidate(pool, tmp_path / "b", upload_id, chunk_rows=6, chunk_lease_s=0)
    for field in ("status", "rows_total", "rows_valid", "rows_invalid", "rows_warned"):
        assert resumed[field] == reference[field], field
    assert resumed["counts_by_code"] == reference["counts_by_code"]
    assert resumed["issues"] == reference["issues"]
    async with pool.acquire() as connection:
        per_row = await connection.fetch(
            "SELECT row_number, count(*) AS n FROM achievements WHERE upload_id = $1"
            " GROUP BY row_number",
            upload_id,
        )
    assert resumed["rows_valid"] == 39
    assert len(per_row) == 39
    assert {r["n"] for r in per_row} == {1}


async def test_nothing_of_the_rows_stays_behind_but_the_outcome(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    upload = await validate_stored(pool, tmp_path, csv_file(row(VALID_ULNS[0]), row("12345")))
    async with pool.acquire() as connection:
        # The tasks go with the outcome, and with them the duplicate keys (identifiers).
        chunks = await connection.fetchval(
            "SELECT count(*) FROM validation_chunks WHERE upload_id = $1", upload["upload_id"]
        )
        achievements = await connection.fetchval(
            "SELECT count(*) FROM achievements WHERE upload_id = $1", upload["upload_id"]
        )
    assert (upload["status"], upload["rows_total"]) == ("failed", 2)
    assert (chunks, achievements) == (0, 0)


async def test_duplicates_beyond_the_issue_cap_still_count(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rows = [row(VALID_ULNS[0]) for _ in range(12)] + [row("12345")]
    upload = await validate_stored(pool, tmp_path, csv_file(*rows), max_stored_issues=5)

    assert upload["counts_by_code"] == {"DUP_01": 11, "ULN_01": 1}
    # The report keeps the first issues by row, whichever rule found them.
    assert [(i["row"], i["code"]) for i in upload["issues"]] == [
        (3, "DUP_01"),
        (4, "DUP_01"),
        (5, "DUP_01"),
        (6, "DUP_01"),
        (7, "DUP_01"),
    ]


async def test_another_atos_accepted_achievements_change_nothing_this_ato_sees(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """DUP_02 and FILE_07 are scoped to the uploading ATO: ATO A's accepted upload of the same
    learners and the same bytes leaves ATO B's status, counts, codes and issues as they are
    when A uploaded nothing at all."""
    from services.upload_gateway.keys import create_ato

    content = csv_file(row(VALID_ULNS[0]), row(VALID_ULNS[1]))
    async with pool.acquire() as connection:
        alone_ato = (await create_ato(connection, "B alone")).ato_id
    alone = await validate_stored(pool, tmp_path, content, ato_id=alone_ato)

    first = await validate_stored(pool, tmp_path, content)  # ATO A: the same rows and bytes
    assert first["status"] == "passed"
    async with pool.acquire() as connection:
        b_ato = (await create_ato(connection, "B")).ato_id
    seen_by_b = await validate_stored(pool, tmp_path, content, ato_id=b_ato)

    def visible(upload: dict[str, Any]) -> tuple[Any, ...]:
        return (
            upload["status"],
            upload["rows_total"],
            upload["rows_valid"],
            upload["rows_invalid"],
            upload["rows_warned"],
            upload["counts_by_code"],
            upload["file_error_code"],
            upload["issues"],
        )

    assert visible(seen_by_b) == visible(alone)
    assert visible(seen_by_b) == ("passed", 2, 2, 0, 0, {}, None, [])
