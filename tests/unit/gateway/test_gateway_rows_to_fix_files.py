"""The rows to fix (scheme section 9): which rows, in which order, and the two files.

The expected files are written out by hand from the upload below."""

from __future__ import annotations

import io
from pathlib import Path

from openpyxl import load_workbook

from services.core.scheme.columns import HeaderMap
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.records import Layout, RecordReader, detect_layout, path_opener
from services.upload_gateway.rows_to_fix import (
    Problem,
    RowNumbers,
    RowsToFix,
    select_rows,
    to_csv,
    to_workbook,
)

# An upload as a spreadsheet saved it: a guidance row, the header with its columns in another
# order (Notes first), accented names, a quoted note with a comma, `""` and a line break.
UPLOAD = (
    "# My notes\r\n"
    "Notes,ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,"
    "DateOfBirth,ULN,NINumber,CITBIndividualId,EmployerLevyNumber\r\n"
    ",R1,SD-WAH-101,12/11/2026,Amélie,Hartley,14/03/1990,1000000043,,,79049946\r\n"
    '"Booked, ""late""\r\nsecond line",R2,SD-WAH-101,12/11/2026,Zoë,Ó Briain,1/2/1985,'
    "1234567890,,,79049946\r\n"
    ",R3,SD-WAH-101,12/11/2026,Amélie,Hartley,14/03/1990,1000000043,,,79049946\r\n"
    ",,,,,,,,,,\r\n"
    "=1+1,R5,sd-waH-101,2026-13-01,Noah,Clarke,2/2/1980,5555555554,,,,extra\r\n"
)
# Rows: 3 accepted; 4 ULN_03; 5 only DUP_01; 6 blank; 7 ACHDATE_01, ROW_01 and NOTES_02.
PROBLEMS = {
    4: [Problem("ULN", "ULN_03", "error", "ULN is not a valid number.")],
    5: [Problem(None, "DUP_01", "error", "An earlier row of this file is the same.")],
    7: [
        Problem("AchievementDate", "ACHDATE_01", "error", "AchievementDate is required."),
        Problem("EmployerLevyNumber", "LEVY_03", "warning", "EmployerLevyNumber is empty."),
        Problem("Notes", "NOTES_02", "warning", "Notes starts with =."),
        Problem(None, "ROW_01", "error", "The row has a non-empty cell beyond the header."),
    ],
}


def _selected(tmp_path: Path, accepted: list[int], problems: dict[int, list[Problem]]) -> RowsToFix:
    """The rows to fix of UPLOAD, stored in `tmp_path`, with these rows accepted."""
    path = tmp_path / "upload.csv"
    path.write_bytes(UPLOAD.encode("utf-8"))
    opener = path_opener(path)
    layout = detect_layout(opener, Encoding.UTF_8)
    assert isinstance(layout, Layout)
    assert isinstance(layout.header, HeaderMap)
    assert layout.header_row == 2
    records = RecordReader(opener, Encoding.UTF_8, layout.delimiter).records(layout.header_row)
    return select_rows(records, layout.header, RowNumbers(accepted), problems)


def test_the_rows_not_accepted_in_template_order_duplicates_left_out(tmp_path: Path) -> None:
    selected = _selected(tmp_path, [3], PROBLEMS)
    assert [row.source_row for row in selected.rows] == [4, 7]
    assert selected.duplicates == (5,)
    assert selected.rows[0].cells == (
        "R2",
        "SD-WAH-101",
        "12/11/2026",
        "Zoë",
        "Ó Briain",
        "1/2/1985",
        "1234567890",
        "",
        "",
        "79049946",
        'Booked, "late"\r\nsecond line',
    )
    # Exactly as sent: the course code's case, the bad date, the formula-like note, and the
    # cell past the header's columns after the template's.
    assert selected.rows[1].cells == (
        "R5",
        "sd-waH-101",
        "2026-13-01",
        "Noah",
        "Clarke",
        "2/2/1980",
        "5555555554",
        "",
        "",
        "",
        "=1+1",
        "extra",
    )


def test_the_csv_file(tmp_path: Path) -> None:
    expected = (
        "\ufeff"
        '"# Rows to fix: the 2 rows of your upload that were not accepted, as you sent them.'
        " Correct them, then upload this file: its rows are checked afresh. Do not upload your"
        " whole file again: its other rows were accepted, and would be refused as duplicates"
        ' (DUP_02)."\r\n'
        '"# In your file these were rows 4 and 7, in this order. The problems are in the error'
        ' report, by those row numbers."\r\n'
        '"# Left out: row 5 of your file, which repeats an earlier row of the file (DUP_01) or'
        ' an achievement already accepted (DUP_02). It needs no fixing: do not send it again."'
        "\r\n"
        "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,"
        "DateOfBirth,ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes\r\n"
        'R2,SD-WAH-101,12/11/2026,Zoë,Ó Briain,1/2/1985,1234567890,,,79049946,"Booked,'
        ' ""late""\r\nsecond line"\r\n'
        "R5,sd-waH-101,2026-13-01,Noah,Clarke,2/2/1980,5555555554,,,,=1+1,extra\r\n"
    )
    assert to_csv(_selected(tmp_path, [3], PROBLEMS)).decode("utf-8") == expected


def test_the_workbook_carries_the_problems_as_comments(tmp_path: Path) -> None:
    workbook = load_workbook(io.BytesIO(to_workbook(_selected(tmp_path, [3], PROBLEMS))))
    assert workbook.sheetnames == ["Achievements"]
    assert "AchievementsTemplateVersion" in workbook.defined_names
    sheet = workbook["Achievements"]
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert [row[0][:14] for row in rows[:3]] == [
        "# Rows to fix:",
        "# In your file",
        "# Left out: ro",
    ]
    assert rows[3][:3] == ["ProviderReference", "CourseCode", "AchievementDate"]
    assert rows[4][:7] == [
        "R2",
        "SD-WAH-101",
        "12/11/2026",
        "Zoë",
        "Ó Briain",
        "1/2/1985",
        "1234567890",
    ]
    # A workbook's XML keeps a line break as a line feed alone.
    assert rows[4][10] == 'Booked, "late"\nsecond line'
    # Text cells, never a formula.
    assert (sheet["K6"].value, sheet["K6"].data_type) == ("=1+1", "s")
    assert sheet["L6"].value == "extra"

    def comment(cell: str) -> str | None:
        found = sheet[cell].comment
        return None if found is None else found.text

    assert comment("A5") == "Row 4 of your file."
    assert comment("G5") == "ULN_03: ULN is not a valid number."
    assert comment("B5") is None
    assert comment("A6") == (
        "Row 7 of your file.\nROW_01: The row has a non-empty cell beyond the header."
    )
    assert comment("C6") == "ACHDATE_01: AchievementDate is required."
    assert comment("J6") == "Warning LEVY_03: EmployerLevyNumber is empty."
    assert comment("K6") == "Warning NOTES_02: Notes starts with =."


def test_a_row_whose_problems_the_capped_report_left_out_says_so(tmp_path: Path) -> None:
    # No stored problem at all: every row not accepted is a row to fix.
    selected = _selected(tmp_path, [3, 4], {})
    assert [row.source_row for row in selected.rows] == [5, 7]
    assert [row.problems_kept for row in selected.rows] == [False, False]
    sheet = load_workbook(io.BytesIO(to_workbook(selected)))["Achievements"]
    first = sheet["A4"].comment
    assert first is not None
    assert first.text.startswith("Row 5 of your file.\nThe error report of the upload was over")


def test_many_duplicates_are_named_in_ranges_then_counted() -> None:
    selected = RowsToFix((), tuple(range(2, 1000, 2)))
    note = to_csv(selected).decode("utf-8").splitlines()[1]
    assert note.startswith('"# Left out: rows 2, 4, 6,')
    assert "398 and 400 and 299 more of your file" in note


def test_row_numbers() -> None:
    accepted = RowNumbers([9, 2, 5])
    assert [row in accepted for row in range(1, 11)] == [
        False,
        True,
        False,
        False,
        True,
        False,
        False,
        False,
        True,
        False,
    ]
    assert len(accepted) == 3
