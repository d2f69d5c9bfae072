"""What a chunk stores for each valid row: every column of `achievements` as the scheme
normalises it, through the binary COPY: multi-byte text, a text longer than 255 bytes, dates
before 2000, nulls for empty optional values, a row number beyond two bytes."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import asyncpg
from pipeline_helpers import validate_stored

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
LONG_NOTE = "é" * 255  # 255 characters, 510 bytes


async def test_every_column_of_a_valid_row_is_stored_as_normalised(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    rows = [
        f"REF-1,sd-wah-101,12/11/2026,Zoë,Ó Briain,14/03/1990,1000000043,,,79049946,{LONG_NOTE}",
        ',SD-WAH-101,2026-11-12,Amelia,"Hartley, Jr",01/01/1961,,ab 12 34 56 c,,p853-3900,',
        "R3,SD-WAH-101,12/11/2026,Li,Wu,29/02/2008,,,citb12345,,  plain note  ",
    ]
    # Blank records are skipped but keep their row numbers: the last row is row 70,004, a row
    # number of three bytes.
    blanks = ",\r\n" * 70_000
    content = ("\r\n".join((HEADER, *rows[:2])) + "\r\n" + blanks + rows[2] + "\r\n").encode()
    upload = await validate_stored(pool, tmp_path, content, policy="valid_rows")
    assert (upload["status"], upload["rows_valid"]) == ("passed_with_warnings", 3)
    assert [(issue["row"], issue["code"]) for issue in upload["issues"]] == [
        (3, "LEVY_02"),
        (70_004, "LEVY_03"),
    ]

    stored = await pool.fetch(
        "SELECT achievement_id, upload_id, row_number, ato_id, provider_reference, course_code,"
        " achievement_date, forename, surname, date_of_birth, uln, ni_number,"
        " citb_individual_id, levy_number, notes, grant_eligible, grant_state"
        " FROM achievements WHERE upload_id = $1 ORDER BY row_number",
        upload["upload_id"],
    )
    upload_id: uuid.UUID = upload["upload_id"]
    prefix = upload_id.bytes[:12]
    assert [tuple(record.values()) for record in stored] == [
        (
            uuid.UUID(bytes=prefix + (2).to_bytes(4, "big")),
            upload_id,
            2,
            upload["ato_id"],
            "REF-1",
            "SD-WAH-101",
            date(2026, 11, 12),
            "Zoë",
            "Ó Briain",
            date(1990, 3, 14),
            "1000000043",
            None,
            None,
            "79049946",
            LONG_NOTE,
            True,
            "held",
        ),
        (
            uuid.UUID(bytes=prefix + (3).to_bytes(4, "big")),
            upload_id,
            3,
            upload["ato_id"],
            None,
            "SD-WAH-101",
            date(2026, 11, 12),
            "Amelia",
            "Hartley, Jr",
            date(1961, 1, 1),
            None,
            "AB123456C",
            None,
            "P8533900",
            None,
            False,
            "not_eligible",
        ),
        (
            uuid.UUID(bytes=prefix + bytes.fromhex("00011174")),
            upload_id,
            70_004,
            upload["ato_id"],
            "R3",
            "SD-WAH-101",
            date(2026, 11, 12),
            "Li",
            "Wu",
            date(2008, 2, 29),
            None,
            None,
            "CITB12345",
            None,
            "plain note",
            False,
            "not_eligible",
        ),
    ]
