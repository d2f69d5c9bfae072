"""Validators killed with SIGKILL at random points of a file: the chunks their leases held are
taken again by the restarted workers, and the upload ends with exactly one achievement per valid
row and the counts of the offline check."""

from __future__ import annotations

import asyncio
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.core.scheme.check import check_file
from services.core.scheme.codes import Policy
from tests.e2e.conftest import Pipeline

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
ROWS = 200_000
KILLS = 5


def valid_uln(n: int) -> str:
    """A distinct ULN with a right check digit (§3.1) for each n, skipping prefixes with none."""
    while True:
        digits = f"{100_000_000 + n:09d}"
        remainder = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if remainder:
            return digits + str((10 - remainder) % 10)
        n += 1_000_000


def write_file(path: Path, today: date) -> None:
    day = (today - timedelta(days=3)).strftime("%d/%m/%Y")
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\r\n")
        for n in range(ROWS):
            uln = valid_uln(n) if n % 50 else "9999999999"  # 2% ULN_02 errors
            levy = "79049946" if n % 7 else ""  # some LEVY_03 warnings
            out.write(f"R{n},SD-WAH-101,{day},Amelia,Hartley,14/03/1990,{uln},,,{levy},\r\n")


async def progress(database_url: str, upload_id: str) -> tuple[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT status, rows_processed FROM uploads WHERE upload_id = $1", upload_id
        )
        return row["status"], row["rows_processed"]
    finally:
        await connection.close()


@pytest.mark.slow
async def test_killed_validators_leave_one_result_per_row_and_the_uninterrupted_counts(
    make_pipeline, tmp_path: Path
) -> None:
    today = datetime.now(ZoneInfo("Europe/London")).date()
    path = tmp_path / "big.csv"
    write_file(path, today)
    expected = check_file(path, today=today, policy=Policy.VALID_ROWS)
    # Small chunks and short leases: many chunks in flight at each kill, freed again quickly.
    pipeline: Pipeline = await make_pipeline(
        bridges=0, VALIDATOR_CHUNK_ROWS="5000", VALIDATOR_CHUNK_LEASE_S="3"
    )
    _, api_key = await pipeline.create_ato()

    accepted = await pipeline.upload(path.read_bytes(), api_key, policy="valid_rows")
    upload_id = accepted["upload_id"]
    chooser = random.Random(20261129)  # random points, the same ones on every run
    thresholds = sorted(chooser.randrange(ROWS // 20, ROWS * 9 // 10) for _ in range(KILLS))
    kills = 0
    for threshold in thresholds:
        # Polls another process's progress; there is nothing to await in this one.
        while (await progress(pipeline.database_url, upload_id))[1] < threshold:
            await asyncio.sleep(0.02)
        # A validator dies (both, every other time); it is restarted, as a supervisor would.
        victims = ("validator-1", "validator-2") if kills % 2 else (f"validator-{1 + kills % 2}",)
        for name in victims:
            pipeline.services[name].kill()
        assert (await progress(pipeline.database_url, upload_id))[0] == "validating"
        for name in victims:
            pipeline.services[name].start()
        kills += 1
    upload = await pipeline.wait_final(upload_id, api_key, timeout_s=300)

    assert kills == KILLS
    assert upload["status"] == str(expected.status) == "partially_accepted"
    for field in ("rows_total", "rows_valid", "rows_invalid", "rows_warned"):
        assert upload[field] == getattr(expected, field), field
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        achievements = await connection.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT row_number) AS distinct_rows"
            " FROM achievements WHERE upload_id = $1",
            upload_id,
        )
        outcome_events = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE payload::json->>'event_type' = 'upload.validated'"
            " AND payload::json->>'upload_id' = $1",
            upload_id,
        )
        announced = await connection.fetchval(
            "SELECT coalesce(sum(json_array_length(payload::json->'achievements')), 0) FROM outbox"
            " WHERE payload::json->>'event_type' = 'achievements.accepted'"
            " AND payload::json->>'upload_id' = $1",
            upload_id,
        )
    finally:
        await connection.close()
    assert achievements["n"] == achievements["distinct_rows"] == expected.rows_valid
    assert outcome_events == 1
    assert announced == expected.rows_valid
