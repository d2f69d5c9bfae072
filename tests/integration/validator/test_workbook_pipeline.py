"""The guided workbook through the pipeline (section 9): planned from the CSV object written for
its sheet, validated by byte range, with the same answer as the offline check on the same bytes;
another workbook refused as the offline check refuses it."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
from openpyxl.workbook.defined_name import DefinedName
from pipeline_helpers import UPLOAD_DATE, validate_stored

from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import Policy
from services.core.scheme.columns import COLUMNS
from services.core.scheme.workbook_records import FILE_01_MACROS, TEMPLATE_MARKER
from services.core.storage import sheet_csv_key

HEADERS = [spec.header for spec in COLUMNS]
VALID = {
    "ProviderReference": "REF-0001",
    "CourseCode": "SD-WAH-101",
    "AchievementDate": date(2026, 11, 12),
    "LearnerForename": "Amelia",
    "LearnerSurname": "Hartley",
    "DateOfBirth": date(1990, 3, 14),
    "ULN": 1000000043,
    "EmployerLevyNumber": 79049946,
}


def guided_workbook(rows: dict[int, dict[str, object]]) -> bytes:
    """Guidance notes on rows 1 and 2, the header on row 3, then `rows` by sheet row number."""
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Achievements"
    sheet["A1"] = "# Fill in one row per achievement, from row 4."
    sheet["A2"] = "# Dates as dd/mm/yyyy."
    for column, header in enumerate(HEADERS, start=1):
        sheet.cell(row=3, column=column, value=header)
    for row_number, values in rows.items():
        for column, header in enumerate(HEADERS, start=1):
            if header in values:
                sheet.cell(row=row_number, column=column, value=values[header])
    book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def offline(data: bytes, tmp_path: Path, policy: str) -> CheckReport:
    path = tmp_path / "offline" / "june.xlsx"
    path.parent.mkdir()
    path.write_bytes(data)
    return check_file(path, today=UPLOAD_DATE, policy=Policy(policy))


def assert_same_answer(upload: dict[str, Any], report: CheckReport) -> None:
    expected = report.model_dump(mode="json")
    assert upload["status"] == expected["status"]
    assert upload["encoding"] == expected["encoding"]
    for count in ("rows_total", "rows_valid", "rows_invalid", "rows_warned"):
        assert upload[count] == expected[count], count
    assert [e["code"] for e in expected["file_errors"]] == (
        [upload["file_error_code"]] if upload["file_error_code"] else []
    )
    assert upload["issues"] == [
        {key: issue[key] for key in ("row", "column", "code", "severity", "message")}
        for issue in expected["issues"]
    ]


async def test_a_guided_workbook_is_validated_by_its_sheets_row_numbers_as_offline(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    bad = {**VALID, "ULN": 1234567890, "ProviderReference": "REF-0002"}  # check digit wrong
    data = guided_workbook({4: VALID, 9: bad})
    storage_root = tmp_path / "storage"

    upload = await validate_stored(pool, storage_root, data, policy="valid_rows")

    assert upload["status"] == "partially_accepted"
    assert upload["encoding"] == "xlsx"
    assert [(issue["row"], issue["code"]) for issue in upload["issues"]] == [(9, "ULN_03")]
    assert_same_answer(upload, offline(data, tmp_path, "valid_rows"))
    # The upload's own file stays the bytes sent; its sheet's records are stored beside it.
    assert (storage_root / upload["storage_key"]).read_bytes() == data
    records = (storage_root / sheet_csv_key(upload["storage_key"])).read_bytes()
    # Quoted as csv.writer quotes a cell with a comma: still a guidance record.
    assert records.startswith(b'"# Fill in one row per achievement, from row 4."\r\n')
    assert records.count(b"\r\n") == 9  # rows 1 to 9, rows 5 to 8 as empty records
    async with pool.acquire() as connection:
        accepted = await connection.fetchval(
            "SELECT count(*) FROM achievements WHERE upload_id = $1", upload["upload_id"]
        )
    assert accepted == 1


async def test_a_workbook_with_macros_is_refused_as_offline_and_nothing_is_read(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(guided_workbook({4: VALID}))) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 not really")
    data = out.getvalue()
    storage_root = tmp_path / "storage"

    upload = await validate_stored(pool, storage_root, data)

    assert (upload["status"], upload["file_error_code"]) == ("rejected", "FILE_01")
    assert upload["encoding"] is None
    assert_same_answer(upload, offline(data, tmp_path, "all_or_nothing"))
    assert not (storage_root / sheet_csv_key(upload["storage_key"])).exists()
    async with pool.acquire() as connection:
        message = await connection.fetchval(
            "SELECT file_error_message FROM uploads WHERE upload_id = $1", upload["upload_id"]
        )
    assert message == FILE_01_MACROS
