"""A chunk's DUP_02 check gives the same rows whichever way it looks: a probe of the duplicate
indexes per key, or (when the ATO has fewer accepted achievements than the chunk has keys) a
read of the ATO's achievements."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import polars as pl
import pytest
from pipeline_helpers import validate_stored

from services.core.settings import DeploymentMode, RetentionSettings
from services.validator import duplicates

RETENTION = RetentionSettings(deployment_mode=DeploymentMode.LOCAL)

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


def row(uln: str = "", nino: str = "") -> str:
    return f"REF,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,{uln},{nino},,79049946,"


@pytest.mark.parametrize("few", [True, False], ids=["reads the ATO", "probes per key"])
async def test_both_ways_find_exactly_the_atos_live_accepted_achievements(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, few: bool
) -> None:
    mine = await validate_stored(
        pool, tmp_path, csv_file(row("1000000043"), row(nino="AB123456C"), row("1234567899"))
    )
    ato_id = mine["ato_id"]
    theirs = await validate_stored(pool, tmp_path, csv_file(row("5555555554")))
    refused = await validate_stored(
        pool, tmp_path, csv_file(row("1111111110"), row("12345")), ato_id=ato_id
    )
    assert (mine["status"], theirs["status"], refused["status"]) == ("passed", "passed", "failed")
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE achievements SET grant_state = 'withdrawn'"
            " WHERE upload_id = $1 AND uln = '1234567899'",
            mine["upload_id"],
        )

    async def chosen(*args: object) -> bool:
        return few

    monkeypatch.setattr(duplicates, "_few_earlier_achievements", chosen)
    keys = pl.DataFrame(
        {
            "row_number": [2, 3, 4, 5, 6, 7],
            "key": [
                "SD-WAH-101|2026-11-12|uln|1000000043",  # mine: a duplicate
                "SD-WAH-101|2026-11-12|ni_number|AB123456C",  # mine, by NI number
                "SD-WAH-101|2026-11-12|uln|1234567899",  # mine, but withdrawn
                "SD-WAH-101|2026-11-12|uln|5555555554",  # another ATO's
                "SD-WAH-101|2026-11-12|uln|1111111110",  # in my refused upload
                "SD-WAH-101|2026-11-11|uln|1000000043",  # mine on another day
            ],
        },
        schema={"row_number": pl.Int32, "key": pl.String},
    )
    async with pool.acquire() as connection:
        found = await duplicates.chunk_earlier_upload_duplicates(
            connection, ato_id, uuid.uuid4(), keys, RETENTION
        )
        # Against itself: its own upload never counts.
        own = await duplicates.chunk_earlier_upload_duplicates(
            connection, ato_id, mine["upload_id"], keys, RETENTION
        )

    assert found == {2, 3}
    assert own == set()
