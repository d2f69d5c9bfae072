"""The guided template workbook: the blank template as an .xlsx that guides whoever fills it in.

It opens on the Achievements sheet (its first tab, the active one), so that a spreadsheet's
"Save as CSV", which saves the sheet in view, exports the data and not the instructions. That
sheet holds, as the guide promises, the guidance notes visibly above the columns: guidance rows
whose first cell starts with "#" (scheme section 9: skipped by the checks, so a CSV export with
them passes), then the template's header row, then the data. Mandatory headers are blue, the
identifier group yellow, course codes a drop-down of the live catalogue, and every column is
text so that a spreadsheet keeps dates and long numbers as typed.

The defined name `AchievementsTemplateVersion` marks the workbook as the service's own: an
upload of the workbook as it is is read as records only when the marker is there (section 9).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from services.core.scheme.columns import COLUMNS, Column
from services.upload_gateway.course_list import ListedCourse
from services.upload_gateway.pages.guidance import Kind, column_note, guidance_rows, kind_of
from services.upload_gateway.pages.texts import WORKBOOK, WORKBOOK_INSTRUCTIONS

TEMPLATE_MARKER = "AchievementsTemplateVersion"
TEMPLATE_VERSION = "1.2"  # the scheme revision whose guidance rows the workbook carries
BLUE = "FF9FC5E8"
YELLOW = "FFFFE599"
GREY = "FFF3F2F1"
TEXT_FORMAT = "@"
DATA_ROWS = 5000  # rows the drop-down covers below the header
FILLS = {
    Kind.REQUIRED: PatternFill(fill_type="solid", start_color=BLUE, end_color=BLUE),
    Kind.IDENTIFIER: PatternFill(fill_type="solid", start_color=YELLOW, end_color=YELLOW),
}
NOTE_FILL = PatternFill(fill_type="solid", start_color=GREY, end_color=GREY)
COLUMN_WIDTH = 24
INTRO_HEIGHT = 48  # points: the intro line, wrapped across the merged row
NOTES_HEIGHT = 170  # points: the longest note, wrapped in its column
WRAPPED = Alignment(wrap_text=True, vertical="top")


def _notes_and_header(sheet: Worksheet) -> int:
    """The guidance rows, then the header; returns the header's row number."""
    rows = guidance_rows()
    for row_number, row in enumerate(rows, start=1):
        for position, text in enumerate(row, start=1):
            cell = sheet.cell(row=row_number, column=position, value=text)
            cell.alignment = WRAPPED
            cell.fill = NOTE_FILL
            cell.number_format = TEXT_FORMAT
    # The intro is one cell (the rest of its row stays empty, so its CSV record is one line),
    # shown across the columns: merging keeps A1's value and empties nothing else.
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(COLUMNS))
    sheet.row_dimensions[1].height = INTRO_HEIGHT
    sheet.row_dimensions[len(rows)].height = NOTES_HEIGHT
    header_row = len(rows) + 1
    for position, spec in enumerate(COLUMNS, start=1):
        cell = sheet.cell(row=header_row, column=position, value=spec.header)
        cell.font = Font(bold=True)
        cell.number_format = TEXT_FORMAT
        if (fill := FILLS.get(kind_of(spec))) is not None:
            cell.fill = fill
        dimension = sheet.column_dimensions[spec.letter]
        dimension.width = COLUMN_WIDTH
        # Text for the whole column: no date conversion, no 1.00E+09 for a ULN.
        dimension.number_format = TEXT_FORMAT
    sheet.freeze_panes = f"A{header_row + 1}"
    return header_row


def _instructions(workbook: Workbook) -> None:
    sheet = workbook.create_sheet(WORKBOOK["instructions_sheet"])
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


def _courses(workbook: Workbook, courses: Sequence[ListedCourse]) -> str:
    """The course codes sheet: each code with its title beside it; returns the range of codes
    the drop-down lists.

    Why codes in the drop-down and titles beside them, rather than "CODE - title" in the list:
    a list validation puts the chosen list entry itself into the cell, and the cell must hold
    the code alone for the file to pass; Excel cannot show one text and store another without a
    macro, and the service never publishes a workbook with macros. So the drop-down lists the
    codes, its prompt points to this sheet, and this sheet (visible, second tab) gives each
    code's title and grant, as the guide's "list of short duration course codes" does."""
    sheet = workbook.create_sheet(WORKBOOK["courses_sheet"])
    headers = ("courses_code", "courses_title", "courses_grant", "courses_from", "courses_to")
    for position, key in enumerate(headers, start=1):
        sheet.cell(row=1, column=position, value=WORKBOOK[key]).font = Font(bold=True)
    for row, course in enumerate(courses, start=2):
        sheet.cell(row=row, column=1, value=course.code).number_format = TEXT_FORMAT
        sheet.cell(row=row, column=2, value=course.title)
        sheet.cell(row=row, column=3, value=course.grant_pence / 100).number_format = "#,##0.00"
        sheet.cell(row=row, column=4, value=course.valid_from).number_format = "dd/mm/yyyy"
        if course.valid_to is not None:
            sheet.cell(row=row, column=5, value=course.valid_to).number_format = "dd/mm/yyyy"
    for letter, width in zip("ABCDE", (16, 48, 12, 16, 24), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A2"
    last = max(len(courses) + 1, 2)
    return f"'{WORKBOOK['courses_sheet']}'!$A$2:$A${last}"


def _course_drop_down(sheet: Worksheet, course_range: str, header_row: int) -> None:
    letter = next(spec.letter for spec in COLUMNS if spec.column is Column.COURSE_CODE)
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
    validation.add(f"{letter}{header_row + 1}:{letter}{header_row + DATA_ROWS}")
    sheet.add_data_validation(validation)


def build_workbook(courses: Sequence[ListedCourse]) -> bytes:
    """The guided template for a catalogue's courses (in the order given), as .xlsx bytes."""
    workbook = Workbook()
    # A new workbook has one sheet: it becomes the Achievements sheet, first and active.
    data = workbook.active or workbook.create_sheet()
    data.title = WORKBOOK["data_sheet"]
    header_row = _notes_and_header(data)
    course_range = _courses(workbook, courses)
    _course_drop_down(data, course_range, header_row)
    _instructions(workbook)
    workbook.active = 0
    # A constant name (no cell behind it): Excel keeps it through edits and "Save as .xlsx".
    workbook.defined_names[TEMPLATE_MARKER] = DefinedName(
        TEMPLATE_MARKER, attr_text=f'"{TEMPLATE_VERSION}"'
    )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
