"""The guided workbook in the pipeline, on a folder storage: the planner leaves a workbook to
`workbook_sheet`, which stores its sheet as a CSV object beside it; chunk tasks read that object
as UTF-8; the purge deletes it with the upload's own file."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import openpyxl
from openpyxl.workbook.defined_name import DefinedName

from services.core.retention import delete_files
from services.core.scheme.codes import Code
from services.core.scheme.columns import COLUMNS
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.reference import bundled_reference
from services.core.scheme.workbook_records import FILE_01_NOT_GUIDED, TEMPLATE_MARKER
from services.core.storage import FolderStorage, sheet_csv_key
from services.validator.chunk_queue import LeasedChunk
from services.validator.chunk_worker import validate_leased_chunk
from services.validator.planner import plan_file
from services.validator.settings import ValidatorSettings
from services.validator.workbook_sheet import csv_source, store_sheet_csv

LIMIT = 200 * 1024 * 1024
HEADERS = [spec.header for spec in COLUMNS]


def workbook(*, marker: bool = True) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Achievements"
    sheet.append(HEADERS)
    sheet["B4"] = "SD-WAH-101"  # rows 2 and 3 left out of the sheet
    sheet["A4"] = 42
    if marker:
        book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def stored(storage: FolderStorage, data: bytes, key: str = "uploads/u.csv") -> str:
    await storage.put(key, chunks(data), LIMIT)
    return key


async def test_the_planner_leaves_a_workbook_to_be_read_as_one(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    key = await stored(storage, workbook())
    plan = plan_file(storage, key, ValidatorSettings())
    assert (plan.workbook, plan.file_error, plan.chunks) == (True, None, [])


async def test_the_sheet_is_stored_beside_the_upload_as_csv_records_numbered_as_its_rows(
    tmp_path: Path,
) -> None:
    storage = FolderStorage(tmp_path)
    data = workbook()
    key = await stored(storage, data)

    sheet = await store_sheet_csv(storage, key, LIMIT)

    assert sheet == sheet_csv_key(key) == "uploads/u.csv.sheet.csv"
    assert (tmp_path / key).read_bytes() == data  # the upload stays the bytes sent
    assert (tmp_path / sheet).read_bytes() == (
        ",".join(HEADERS).encode() + b"\r\n\r\n\r\n42,SD-WAH-101\r\n"
    )
    plan = plan_file(storage, sheet, ValidatorSettings(), workbooks=False)
    assert (plan.encoding, plan.file_error, plan.workbook) == ("utf-8", None, False)
    assert len(plan.chunks) == 1


async def test_another_workbook_is_refused_and_nothing_is_stored_beside_it(
    tmp_path: Path,
) -> None:
    storage = FolderStorage(tmp_path)
    key = await stored(storage, workbook(marker=False))

    refused = await store_sheet_csv(storage, key, LIMIT)

    assert not isinstance(refused, str)
    assert (refused.code, refused.message) == (Code.FILE_01, FILE_01_NOT_GUIDED)
    assert not (tmp_path / sheet_csv_key(key)).exists()


def test_chunks_of_a_workbook_read_the_sheets_csv_object_as_utf8() -> None:
    assert csv_source("uploads/u.csv", "xlsx") == ("uploads/u.csv.sheet.csv", Encoding.UTF_8)
    assert csv_source("uploads/u.csv", "windows-1252") == ("uploads/u.csv", Encoding.WINDOWS_1252)


async def test_the_sheets_csv_object_is_deleted_with_the_upload(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    workbook_key = await stored(storage, workbook(), "uploads/w.csv")
    await store_sheet_csv(storage, workbook_key, LIMIT)
    csv_key = await stored(storage, b"CourseCode\r\n", "uploads/c.csv")

    deleted = await delete_files(storage, [workbook_key, csv_key, "uploads/gone.csv"])

    assert deleted == 2  # the uploads' own files; the sheet's object goes with its upload
    assert files_under(tmp_path) == []


async def test_a_chunk_of_a_workbook_upload_is_validated_with_the_sheets_row_numbers(
    tmp_path: Path,
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Achievements"
    sheet.append(HEADERS)
    valid = {
        "ProviderReference": "REF-0001",
        "CourseCode": "SD-WAH-101",
        "AchievementDate": date(2026, 11, 12),
        "LearnerForename": "Amelia",
        "LearnerSurname": "Hartley",
        "DateOfBirth": date(1990, 3, 14),
        "ULN": 1000000043,
        "EmployerLevyNumber": 79049946,
    }
    sheet.append([valid.get(header) for header in HEADERS])
    bad = {**valid, "ULN": 1234567890, "ProviderReference": "REF-0002"}  # check digit wrong
    for column, header in enumerate(HEADERS, start=1):
        sheet.cell(row=6, column=column, value=bad.get(header))
    book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    out = io.BytesIO()
    book.save(out)
    storage = FolderStorage(tmp_path)
    key = await stored(storage, out.getvalue())
    sheet_key = await store_sheet_csv(storage, key, LIMIT)
    assert isinstance(sheet_key, str)
    plan = plan_file(storage, sheet_key, ValidatorSettings(), workbooks=False)
    [segments] = plan.chunks
    chunk = LeasedChunk(
        upload_id=uuid.uuid4(),
        chunk_no=0,
        ato_id="ATO-1",
        segments=tuple(segments),
        attempts=1,
        storage_key=key,  # the upload's own key: the chunk finds the sheet's object beside it
        encoding="xlsx",
        delimiter=plan.delimiter,
        upload_date=date(2026, 11, 20),
        reference_version=1,
    )

    result, _ = validate_leased_chunk(storage, chunk, bundled_reference(), issue_room=100)

    assert (result.rows_total, result.rows_valid, result.rows_invalid) == (2, 1, 1)
    assert [(issue[1], issue[4]) for issue in result.issues] == [(6, "ULN_03")]
