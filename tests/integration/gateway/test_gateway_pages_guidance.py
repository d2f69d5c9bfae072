"""The guidance the pages give holds against the checks themselves: the examples pass, and the
guided workbook, filled in and saved as CSV, gives a file the scheme accepts."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import openpyxl

from services.core.scheme.check import check_file
from services.core.scheme.codes import UploadStatus
from services.core.scheme.columns import COLUMNS, Column
from services.core.scheme.reference import bundled_reference
from services.upload_gateway.course_list import course_list
from services.upload_gateway.pages.guidance import guided_csv, scheme_view
from services.upload_gateway.pages.texts import EXAMPLES
from services.upload_gateway.pages.workbook import build_workbook

EXAMPLE_DAY = datetime.strptime(EXAMPLES[Column.ACHIEVEMENT_DATE], "%d/%m/%Y").date()


def test_a_row_of_the_examples_passes_every_check(tmp_path: Path) -> None:
    path = tmp_path / "examples.csv"
    rows = [[spec.header for spec in COLUMNS], [EXAMPLES[spec.column] for spec in COLUMNS]]
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)

    report = check_file(path, today=EXAMPLE_DAY)

    assert report.status is UploadStatus.PASSED, report.issues


def test_the_scheme_view_is_the_scheme_document_with_an_example_per_column() -> None:
    view = scheme_view()

    assert [column["header"] for column in view["columns"]] == [spec.header for spec in COLUMNS]
    assert all(column["example"] for column in view["columns"])
    assert [c["kind"] for c in view["columns"]].count("identifier") == 3


def test_the_workbook_filled_in_and_saved_as_csv_with_its_notes_is_accepted(
    tmp_path: Path,
) -> None:
    catalogue = course_list(1, bundled_reference().courses())
    workbook = openpyxl.load_workbook(io.BytesIO(build_workbook(catalogue.courses)))
    sheet = workbook["Achievements"]
    assert [cell.value for cell in sheet[3]] == [spec.header for spec in COLUMNS]
    for position, spec in enumerate(COLUMNS, start=1):
        cell = sheet.cell(row=4, column=position, value=EXAMPLES[spec.column])
        cell.number_format = sheet.column_dimensions[spec.letter].number_format
    path = tmp_path / "saved.csv"
    # What "Save as CSV UTF-8" writes for the sheet in view: its cells as text, row by row,
    # the guidance rows above the header included.
    with path.open("w", newline="", encoding="utf-8-sig") as file:
        writer = csv.writer(file, lineterminator="\r\n")
        for row in sheet.iter_rows(values_only=True):
            writer.writerow(["" if value is None else str(value) for value in row])

    report = check_file(path, today=EXAMPLE_DAY)

    assert report.status is UploadStatus.PASSED, report.issues
    assert report.rows_total == 1
    assert EXAMPLES[Column.COURSE_CODE] in {course.code for course in catalogue.courses}


def test_the_blank_csv_file_with_a_row_added_under_its_notes_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    row = ",".join(EXAMPLES[spec.column] for spec in COLUMNS)
    path.write_text(guided_csv() + row + "\r\n", encoding="utf-8", newline="")

    report = check_file(path, today=EXAMPLE_DAY)

    assert report.status is UploadStatus.PASSED, report.issues
    assert [issue.row for issue in report.issues] == []


def test_the_workbook_filled_in_and_kept_as_a_workbook_is_accepted(tmp_path: Path) -> None:
    catalogue = course_list(1, bundled_reference().courses())
    workbook = openpyxl.load_workbook(io.BytesIO(build_workbook(catalogue.courses)))
    sheet = workbook["Achievements"]
    for position, spec in enumerate(COLUMNS, start=1):
        sheet.cell(row=4, column=position, value=EXAMPLES[spec.column])
    path = tmp_path / "filled.xlsx"
    workbook.save(path)

    report = check_file(path, today=EXAMPLE_DAY)

    assert report.status is UploadStatus.PASSED, (report.file_errors, report.issues)
    assert report.encoding == "xlsx"
    assert report.rows_total == 1
