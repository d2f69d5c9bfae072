"""A validator killed with SIGKILL mid-file: the next owner of the partition finishes the upload
with exactly one result per row and the counts of an uninterrupted run."""

from __future__ import annotations

import asyncio
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
ROWS = 120_000


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
    pipeline: Pipeline = await make_pipeline(bridges=0, VALIDATOR_BATCH_ROWS="2000")
    _, api_key = await pipeline.create_ato()

    accepted = await pipeline.upload(path.read_bytes(), api_key, policy="valid_rows")
    upload_id = accepted["upload_id"]
    kills = 0
    for threshold in (ROWS // 5, ROWS // 2):
        # Polls another process's progress; there is nothing to await in this one.
        while (await progress(pipeline.database_url, upload_id))[1] < threshold:
            await asyncio.sleep(0.05)
        # Whichever validator owns the partition dies; both are restarted, as a supervisor would.
        for name in ("validator-1", "validator-2"):
            pipeline.services[name].kill()
        assert (await progress(pipeline.database_url, upload_id))[0] == "validating"
        for name in ("validator-1", "validator-2"):
            pipeline.services[name].start()
        kills += 1
    upload = await pipeline.wait_final(upload_id, api_key, timeout_s=300)

    assert kills == 2
    assert upload["status"] == str(expected.status) == "partially_accepted"
    for field in ("rows_total", "rows_valid", "rows_invalid", "rows_warned"):
        assert upload[field] == getattr(expected, field), field
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        results = await connection.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT row_number) AS distinct_rows"
            " FROM row_results WHERE upload_id = $1",
            upload_id,
        )
        achievements = await connection.fetchval(
            "SELECT count(*) FROM achievements WHERE upload_id = $1", upload_id
        )
    finally:
        await connection.close()
    assert results["n"] == results["distinct_rows"] == ROWS
    assert achievements == expected.rows_valid
