"""Scheme v1.2, section 9, through the pipeline: guidance rows above the header are skipped by
the planner, and the chunk tasks number the rows as a spreadsheet shows them."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from pipeline_helpers import validate_stored

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
# The first note is quoted over two lines, as a spreadsheet saves a note holding a comma and a
# line break: still one record, row 1. The header is row 3.
GUIDANCE = (
    '"# One row per learner, per course.\r\nDates as dd/mm/yyyy",,,\r\n# ULN: 10 digits,,\r\n'
)


def _row(uln: str) -> str:
    return f"REF,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,{uln},,,79049946,\r\n"


async def test_two_guidance_rows_make_the_first_data_row_4(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # Rows 4 to 8: valid, ULN_03, valid, valid, and a repeat of row 4 (DUP_01). Two rows per
    # chunk, so the second and third chunks start their numbering from the plan.
    rows = ["1000000043", "1234567890", "1234567899", "5555555554", "1000000043"]
    content = (GUIDANCE + HEADER + "\r\n" + "".join(map(_row, rows))).encode()
    upload = await validate_stored(pool, tmp_path, content, policy="valid_rows", chunk_rows=2)

    assert upload["status"] == "partially_accepted"
    assert (upload["rows_total"], upload["rows_valid"], upload["rows_invalid"]) == (5, 3, 2)
    assert [(i["row"], i["code"]) for i in upload["issues"]] == [(5, "ULN_03"), (8, "DUP_01")]
    async with pool.acquire() as connection:
        accepted = await connection.fetch(
            "SELECT row_number FROM achievements WHERE upload_id = $1 ORDER BY row_number",
            upload["upload_id"],
        )
    assert [record["row_number"] for record in accepted] == [4, 6, 7]


async def test_rows_above_the_header_are_named_in_the_file_04_message(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    content = ("Achievements,June\r\nUploaded by,Office\r\n" + HEADER + "\r\n").encode()
    content += _row("1000000043").encode()
    upload = await validate_stored(pool, tmp_path, content)

    assert upload["status"] == "rejected"
    assert upload["file_error_code"] == "FILE_04"
    assert upload["file_error_message"] == (
        "The header row does not match the template: the template's header row was found at"
        " row 3, below rows 1-2, which are not guidance rows. Delete rows 1-2, then upload the"
        " file again. Only blank rows, or guidance rows whose first cell starts with #, may stand"
        " above the header row (at most 10)."
    )
