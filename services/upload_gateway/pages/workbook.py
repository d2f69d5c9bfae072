"""The guided template workbook: the blank template as an .xlsx that guides whoever fills it in.

The first sheet says how to save the data sheet as CSV. The data sheet has the template's
header row and nothing else above the data, so that saving it as CSV gives exactly the file
the scheme expects; each header carries its guidance note (a cell note, shown above the
column when pointed at), mandatory headers are blue, the identifier group yellow, course codes
are a drop-down of the live catalogue, and every column is text so that a spreadsheet keeps
dates and long numbers as typed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from services.core.scheme.columns import COLUMNS, Column
from services.upload_gateway.pages.guidance import Kind, column_note, kind_of
from services.upload_gateway.pages.texts import WORKBOOK, WORKBOOK_INSTRUCTIONS

BLUE = "FF9FC5E8"
YELLOW = "FFFFE599"
TEXT_FORMAT = "@"
DATA_ROWS = 5000  # rows the drop-down covers below the header
FILLS = {
    Kind.REQUIRED: PatternFill(fill_type="solid", start_color=BLUE, end_color=BLUE),
    Kind.IDENTIFIER: PatternFill(fill_type="solid", start_color=YELLOW, end_color=YELLOW),
}
COLUMN_WIDTH = 22
NOTE_SIZE = (320, 160)  # width and height of a note, in points


def _instructions(workbook: Workbook) -> None:
    # A new workbook has one sheet, its active one; a workbook without would get its first.
    sheet = workbook.active or workbook.create_sheet()
    sheet.title = WORKBOOK["instructions_sheet"]
    sheet["A1"] = WORKBOOK["instructions_title"]
    sheet["A1"].font = Font(bold=True, size=14)
    row = 3
    for line in WORKBOOK_INSTRUCTIONS:
        sheet.cell(row=row, column=1, value=line).alignment = Alignment(wrap_text=True)
        row += 1
    row += 1
    for kind, key in ((Kind.REQUIRED, "legend_required"), (Kind.IDENTIFIER, "legend_identifier")):
        sheet.cell(row=row, column=1, value=WORKBOOK[key]).fill = FILLS[kind]
        row += 1
    row += 1
    for spec in COLUMNS:
        sheet.cell(
            row=row, column=1, value=f"{spec.letter}: {column_note(spec)}"
        ).alignment = Alignment(wrap_text=True)
        row += 1
    sheet.column_dimensions["A"].width = 120


def _courses(workbook: Workbook, course_codes: Sequence[str]) -> str:
    """A hidden sheet listing the catalogue; returns the range the drop-down reads."""
    sheet = workbook.create_sheet(WORKBOOK["courses_sheet"])
    sheet["A1"] = "CourseCode"
    for row, code in enumerate(course_codes, start=2):
        sheet.cell(row=row, column=1, value=code).number_format = TEXT_FORMAT
    sheet.sheet_state = "hidden"
    last = max(len(course_codes) + 1, 2)
    return f"'{WORKBOOK['courses_sheet']}'!$A$2:$A${last}"


def build_workbook(course_codes: Sequence[str]) -> bytes:
    """The guided template for a catalogue's course codes, as .xlsx bytes."""
    workbook = Workbook()
    _instructions(workbook)
    data = workbook.create_sheet(WORKBOOK["data_sheet"])
    for position, spec in enumerate(COLUMNS, start=1):
        cell = data.cell(row=1, column=position, value=spec.header)
        cell.font = Font(bold=True)
        cell.number_format = TEXT_FORMAT
        comment = Comment(column_note(spec), "CITB")
        comment.width, comment.height = NOTE_SIZE
        cell.comment = comment
        if (fill := FILLS.get(kind_of(spec))) is not None:
            cell.fill = fill
        dimension = data.column_dimensions[spec.letter]
        dimension.width = COLUMN_WIDTH
        # Text for the whole column: no date conversion, no 1.00E+09 for a ULN.
        dimension.number_format = TEXT_FORMAT
    data.freeze_panes = "A2"
    course_range = _courses(workbook, course_codes)
    course_letter = next(spec.letter for spec in COLUMNS if spec.column is Column.COURSE_CODE)
    validation = DataValidation(
        type="list",
        formula1=course_range,
        allow_blank=True,
        showDropDown=False,  # openpyxl's name for "hide the arrow": False shows it
        showErrorMessage=True,
        showInputMessage=True,
        promptTitle=WORKBOOK["course_prompt_title"],
        prompt=WORKBOOK["course_prompt"],
        errorTitle=WORKBOOK["course_prompt_title"],
        error=WORKBOOK["course_error"],
    )
    validation.add(f"{course_letter}2:{course_letter}{DATA_ROWS + 1}")
    data.add_data_validation(validation)
    workbook.active = 0
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
