"""The guided template workbook and the blank CSV file, read back as a spreadsheet reads them."""

from __future__ import annotations

import csv
import io
from datetime import date

import openpyxl

from services.core.scheme.columns import COLUMNS
from services.upload_gateway.course_list import ListedCourse
from services.upload_gateway.pages.guidance import guided_csv
from services.upload_gateway.pages.workbook import BLUE, YELLOW, build_workbook

COURSES = (
    ListedCourse("SD-MSF-102", "Mobile scaffold towers", 14000, date(2018, 4, 1), None),
    ListedCourse("SD-WAH-101", "Working at height", 6000, date(2018, 4, 1), date(2027, 3, 31)),
)
HEADERS = [spec.header for spec in COLUMNS]


def _workbook() -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(build_workbook(COURSES)))


def test_it_opens_on_the_achievements_sheet_its_first_tab() -> None:
    workbook = _workbook()

    assert workbook.sheetnames[0] == "Achievements"
    assert workbook.active is not None
    assert workbook.active.title == "Achievements"


def test_it_carries_the_template_marker_as_a_defined_name() -> None:
    marker = _workbook().defined_names["AchievementsTemplateVersion"]

    assert marker.attr_text == '"1.2"'


def test_the_notes_stand_in_guidance_rows_above_the_header() -> None:
    sheet = _workbook()["Achievements"]
    rows = [[cell.value for cell in row] for row in sheet.iter_rows(min_row=1, max_row=3)]

    intro, notes, header = rows
    assert str(intro[0]).startswith("# Guidance notes: rows whose first cell starts with #")
    assert intro[1:] == [None] * (len(COLUMNS) - 1)
    assert str(notes[0]).startswith("# ProviderReference: Optional.")
    assert notes[1] == (
        "CourseCode: Mandatory. A short duration course code from the list of course codes,"
        " for example SD-WAH-101. In the guided template, choose it from the drop-down."
    )
    assert header == HEADERS
    assert sheet.freeze_panes == "A4"
    assert sheet["B3"].fill.start_color.rgb == BLUE
    assert sheet["G3"].fill.start_color.rgb == YELLOW
    assert sheet["A3"].fill.fill_type is None
    assert sheet["A3"].comment is None  # the notes are above the columns, not hover comments


def test_the_notes_use_plain_words_without_pattern_syntax_or_nested_brackets() -> None:
    notes = [cell.value for cell in _workbook()["Achievements"][2]]

    for note in notes:
        assert not any(mark in str(note) for mark in ("^", "$", "[A-Z", "{1,", "((", "))"))
    assert str(notes[9]).startswith("EmployerLevyNumber: Optional but recommended. ")


def test_the_course_code_drop_down_lists_the_codes_with_their_titles_beside_them() -> None:
    workbook = _workbook()
    (validation,) = workbook["Achievements"].data_validations.dataValidation

    assert validation.type == "list"
    assert str(validation.sqref) == "B4:B5003"
    assert validation.formula1 == "'Course codes'!$A$2:$A$3"
    courses = workbook["Course codes"]
    assert courses.sheet_state == "visible"
    listed = [[cell.value for cell in row] for row in courses.iter_rows(min_row=1, max_row=3)]
    assert listed[0][:2] == ["Course code", "Title"]
    assert [row[:3] for row in listed[1:]] == [
        ["SD-MSF-102", "Mobile scaffold towers", 140],
        ["SD-WAH-101", "Working at height", 60],
    ]


def test_the_blank_csv_file_has_the_same_guidance_rows_then_the_header_only() -> None:
    text = guided_csv()

    assert text.startswith("\ufeff")
    assert text.endswith("\r\n")
    records = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert len(records) == 3
    assert records[0][0].startswith("# Guidance notes:")
    assert len(records[0]) == 1
    assert records[1][0].startswith("# ProviderReference: Optional.")
    assert len(records[1]) == len(COLUMNS)
    assert records[2] == HEADERS
