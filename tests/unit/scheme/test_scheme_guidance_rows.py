"""Section 9 (v1.2): guidance and blank records before the header row.

Every expected row number, code and message here is written out by hand: the header row is the
first record that is neither a guidance record (first cell, trimmed, begins with `#`) nor a
blank record, and rows keep the numbers a spreadsheet shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scheme_builders import HEADER_LINE, UPLOAD_DATE, VALID_ULNS, cells, csv_line, write

from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import Code, UploadStatus
from services.core.scheme.columns import HeaderMap
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import scan_records
from services.core.scheme.records import Layout, detect_layout, path_opener
from services.core.scheme.reference import bundled_reference

REFERENCE = bundled_reference()


class _Lookups:
    """A reference that cannot list its catalogue: the check's row-validator path."""

    def course(self, code: str) -> object:
        return REFERENCE.course(code)

    def employer(self, levy_number: str) -> object:
        return REFERENCE.employer(levy_number)


def _both_paths(path: Path) -> list[CheckReport]:
    """The report of the bulk (Polars) path and of the row-validator path."""
    fast = check_file(path, today=UPLOAD_DATE)
    slow = check_file(path, today=UPLOAD_DATE, reference=_Lookups())  # type: ignore[arg-type]
    return [fast, slow]


def _rows(delimiter: str = ",") -> str:
    """Row A valid, row B with a wrong ULN check digit (ULN_03), row C repeating row A
    (DUP_01)."""
    rows = [cells(), cells(ULN="1234567890"), cells()]
    return "".join(csv_line(row, delimiter) + "\r\n" for row in rows)


def _header(delimiter: str = ",") -> str:
    return HEADER_LINE.replace(",", delimiter) + "\r\n"


def _issues(report: CheckReport) -> list[tuple[int, str]]:
    return [(issue.row, issue.code.value) for issue in report.issues]


def _file_error(report: CheckReport) -> tuple[str, str]:
    assert report.status is UploadStatus.REJECTED
    assert (report.rows_total, report.issues) == (0, [])
    [error] = report.file_errors
    return error.code.value, error.message


class TestGuidanceRowsAreSkipped:
    def test_two_guidance_rows_make_the_header_row_3(self, tmp_path: Path) -> None:
        text = "# Fill in one row per achievement,,,\r\n#Dates as dd/mm/yyyy\r\n"
        path = write(tmp_path, "g.csv", text + _header() + _rows())
        for report in _both_paths(path):
            assert report.status is UploadStatus.FAILED
            assert (report.rows_total, report.rows_invalid) == (3, 2)
            assert _issues(report) == [(5, "ULN_03"), (6, "DUP_01")]

    def test_a_quoted_multi_line_guidance_note_is_one_row(self, tmp_path: Path) -> None:
        # How a spreadsheet saves a note holding a comma and a line break: quoted, the quote
        # opening the field, so the note is one record over three lines.
        note = '"# Notes: one row per learner,\r\nper course\r\nand per date",,,,\r\n'
        path = write(tmp_path, "q.csv", note + "  # indented note\r\n" + _header() + _rows())
        for report in _both_paths(path):
            assert _issues(report) == [(5, "ULN_03"), (6, "DUP_01")]

    def test_blank_records_before_the_header_are_skipped_too(self, tmp_path: Path) -> None:
        text = "\r\n,,,\r\n# note\r\n \t\r\n"
        path = write(tmp_path, "b.csv", text + _header() + _rows())
        for report in _both_paths(path):
            assert _issues(report) == [(7, "ULN_03"), (8, "DUP_01")]

    def test_ten_guidance_rows_are_allowed(self, tmp_path: Path) -> None:
        path = write(tmp_path, "ten.csv", "# note\r\n" * 10 + _header() + _rows())
        for report in _both_paths(path):
            assert _issues(report) == [(13, "ULN_03"), (14, "DUP_01")]

    def test_an_11th_guidance_row_stands_where_the_header_must_be(self, tmp_path: Path) -> None:
        path = write(tmp_path, "eleven.csv", "# note\r\n" * 11 + _header() + _rows())
        for report in _both_paths(path):
            assert _file_error(report) == (
                "FILE_04",
                "The header row does not match the template: the template's header row was"
                " found at row 12, below rows 1-11, guidance or blank rows, but at most 10 may"
                " stand above the header row. Delete 1 of them, then upload the file again.",
            )

    def test_a_semicolon_file_with_guidance_rows(self, tmp_path: Path) -> None:
        # The note holds a comma before any semicolon: read with `,` its first cell still
        # begins with `#`, so both readings skip it and find the same header.
        text = "# Dates, please; as dd/mm/yyyy;;;\r\n;;;\r\n"
        path = write(tmp_path, "s.csv", text + _header(";") + _rows(";"))
        assert detect_layout(path_opener(path), Encoding.UTF_8) == Layout(
            ";", _template_header(path), 3
        )
        for report in _both_paths(path):
            assert _issues(report) == [(5, "ULN_03"), (6, "DUP_01")]

    def test_a_semicolon_blank_row_is_blank_only_when_read_with_semicolons(
        self, tmp_path: Path
    ) -> None:
        # `;;;` read with `,` is one non-blank cell, so the `,` reading's header is row 1 and
        # does not match; the `;` reading skips it and finds the header at row 2.
        path = write(tmp_path, "s2.csv", ";;;\r\n" + _header(";") + _rows(";"))
        for report in _both_paths(path):
            assert _issues(report) == [(4, "ULN_03"), (5, "DUP_01")]

    def test_a_guidance_row_after_the_header_is_a_data_row(self, tmp_path: Path) -> None:
        path = write(tmp_path, "after.csv", _header() + "# not a note here\r\n")
        [report, _] = _both_paths(path)
        assert _issues(report)[0] == (2, "COURSE_01")

    def test_only_guidance_rows_and_a_header_is_file_02(self, tmp_path: Path) -> None:
        path = write(tmp_path, "h.csv", "# note\r\n" + _header())
        for report in _both_paths(path):
            assert _file_error(report)[0] == "FILE_02"

    def test_the_plan_starts_after_the_header_and_numbers_from_it(self, tmp_path: Path) -> None:
        note = '"# a, b\r\nc",,\r\n'
        path = write(tmp_path, "p.csv", note + "#x\r\n" + _header() + _rows())
        with path.open("rb") as stream:
            scan = scan_records(stream, ",", encoding=Encoding.UTF_8, header_row=3)
        header_end = len(note) + len("#x\r\n") + len(_header())
        assert scan.header_end == header_end
        assert scan.records == 3
        [chunk] = scan.chunks
        assert chunk.segments == ((header_end, path.stat().st_size, 4),)


class TestRowsAboveTheHeader:
    def test_two_rows_above_the_header_name_rows_1_2(self, tmp_path: Path) -> None:
        text = "Achievements upload,,\r\nJune 2026,,\r\n"
        path = write(tmp_path, "above.csv", text + _header() + _rows())
        for report in _both_paths(path):
            assert _file_error(report) == (
                "FILE_04",
                "The header row does not match the template: the template's header row was"
                " found at row 3, below rows 1-2, which are not guidance rows. Delete rows 1-2,"
                " then upload the file again. Only blank rows, or guidance rows whose first cell"
                " starts with #, may stand above the header row (at most 10).",
            )

    def test_only_the_rows_that_are_not_guidance_are_named(self, tmp_path: Path) -> None:
        text = "# note\r\nTitle\r\n\r\n# note\r\nSubtitle\r\n"
        path = write(tmp_path, "mixed.csv", text + _header() + _rows())
        [report, _] = _both_paths(path)
        code, message = _file_error(report)
        assert code == "FILE_04"
        assert "found at row 6, below rows 2 and 5, which are not guidance rows." in message
        assert "Delete rows 2 and 5, then upload" in message

    def test_one_row_above_the_header(self, tmp_path: Path) -> None:
        path = write(tmp_path, "one.csv", "Title\r\n" + _header(";") + _rows(";"))
        [report, _] = _both_paths(path)
        assert (
            "found at row 2, below row 1, which is not a guidance row. Delete row 1,"
            in (_file_error(report)[1])
        )

    def test_a_header_more_than_10_records_lower_is_not_looked_for(self, tmp_path: Path) -> None:
        path = write(tmp_path, "far.csv", "Title\r\n" * 11 + _header() + _rows())
        [report, _] = _both_paths(path)
        code, message = _file_error(report)
        assert code == "FILE_04"
        assert "Delete" not in message
        assert message.startswith("The header row does not match the template: missing")

    def test_a_guidance_note_past_the_record_bound_is_file_01(self, tmp_path: Path) -> None:
        # A quoted note of short lines over 1 MiB in all, at row 2: FILE_01 outranks any header
        # problem, and names the row as a spreadsheet shows it.
        note = '"# ' + ("x" * 1000 + "\r\n") * 1100 + '"\r\n'
        path = write(tmp_path, "long.csv", "# note\r\n" + note + _header() + _rows())
        for report in _both_paths(path):
            code, message = _file_error(report)
            assert code == "FILE_01"
            assert "row 2 is longer than 1,048,576 bytes" in message

    def test_a_row_above_the_header_past_the_cell_bound_is_file_01(self, tmp_path: Path) -> None:
        path = write(tmp_path, "cells.csv", "Title" + "," * 1000 + "\r\n" + _header() + _rows())
        code, message = _file_error(check_file(path, today=UPLOAD_DATE))
        assert code == "FILE_01"
        assert "row 1 has more than 1,000 cells" in message


def _template_header(path: Path) -> HeaderMap:
    layout = detect_layout(path_opener(path), Encoding.UTF_8)
    assert isinstance(layout, Layout)
    assert isinstance(layout.header, HeaderMap)
    return layout.header


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252"])
def test_guidance_rows_in_each_encoding(tmp_path: Path, encoding: str) -> None:
    text = "# Données: une ligne par apprenant\r\n" + _header() + _rows()
    path = write(tmp_path, "e.csv", text, encoding=encoding)
    report = check_file(path, today=UPLOAD_DATE)
    assert report.encoding is (
        Encoding.UTF_8_SIG if encoding == "utf-8-sig" else Encoding.WINDOWS_1252
    )
    assert _issues(report) == [(4, "ULN_03"), (5, "DUP_01")]


def test_the_guidance_rows_do_not_change_a_valid_file_s_counts(tmp_path: Path) -> None:
    rows = "".join(csv_line(cells(ULN=uln)) + "\r\n" for uln in VALID_ULNS[:3])
    path = write(tmp_path, "v.csv", "#a\r\n#b\r\n" + _header() + rows)
    report = check_file(path, today=UPLOAD_DATE)
    assert (report.status, report.rows_total, report.rows_valid) == (UploadStatus.PASSED, 3, 3)
    assert Code.FILE_04 not in [error.code for error in report.file_errors]
