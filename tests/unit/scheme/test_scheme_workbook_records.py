"""The guided workbook (section 9): which workbooks are read, the ZIP bounds on the bytes
actually inflated, how each kind of cell reads, and the sheet checked exactly as a CSV."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from scheme_builders import HEADERS, UPLOAD_DATE, VALID, VALID_ULNS, cells
from workbook_builders import changed, guided, sheet_part, workbook

from services.cli import main as achievements
from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import FILE_01_WORKBOOK, Code, FileError, UploadStatus
from services.core.scheme.records import path_opener
from services.core.scheme.workbook_records import (
    FILE_01_EXTERNAL_LINKS,
    FILE_01_MACROS,
    FILE_01_NO_SHEET,
    FILE_01_NOT_GUIDED,
    FILE_01_OVER_INFLATED,
    FILE_01_TOO_MANY_PARTS,
    FILE_01_UNREADABLE,
    WorkbookEncoding,
    screen_workbook,
    shortest_decimal,
    write_sheet_csv,
)

LIMIT = 200 * 1024 * 1024
MACRO_WORKBOOK_TYPE = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"


def records(data: bytes, tmp_path: Path, limit: int = LIMIT) -> list[list[str]] | FileError:
    """The sheet as the CSV records written for it, or the file error."""
    path = tmp_path / "book.xlsx"
    path.write_bytes(data)
    out = io.BytesIO()
    error = write_sheet_csv(path_opener(path), out, size_limit_bytes=limit)
    if error is not None:
        return error
    return list(csv.reader(io.StringIO(out.getvalue().decode("utf-8"), newline="")))


def check(data: bytes, tmp_path: Path, **options: object) -> CheckReport:
    path = tmp_path / "june.xlsx"
    path.write_bytes(data)
    return check_file(path, today=UPLOAD_DATE, **options)  # type: ignore[arg-type]


def refusal(report: CheckReport) -> tuple[str, str]:
    assert report.status is UploadStatus.REJECTED
    assert (report.rows_total, report.issues) == (0, [])
    [error] = report.file_errors
    return error.code.value, error.message


def valid_row(uln: str = VALID_ULNS[0]) -> list[object]:
    """The scheme's valid row as a spreadsheet holds it: dates as date cells, the ULN and the
    levy number as numbers."""
    row: list[object] = list(cells(ULN=uln))
    row[HEADERS.index("AchievementDate")] = date(2026, 11, 12)
    row[HEADERS.index("DateOfBirth")] = datetime(1990, 3, 14)
    row[HEADERS.index("ULN")] = int(uln)
    row[HEADERS.index("EmployerLevyNumber")] = int(VALID["EmployerLevyNumber"])
    return [value if value != "" else None for value in row]


class TestWhichWorkbooksAreRead:
    def test_the_guided_workbook_is_checked_as_a_csv_and_reports_xlsx(self, tmp_path: Path) -> None:
        report = check(guided(valid_row(), valid_row(VALID_ULNS[1])), tmp_path)
        assert report.status is UploadStatus.PASSED
        assert (report.rows_total, report.rows_valid, report.issues) == (2, 2, [])
        assert report.encoding is WorkbookEncoding.XLSX
        assert report.file_name == "june.xlsx"
        assert '"encoding":"xlsx"' in report.to_json()

    def test_a_workbook_without_the_marker_is_file_01_with_the_template_advice(
        self, tmp_path: Path
    ) -> None:
        data = workbook({1: HEADERS, 2: valid_row()}, marker=False)
        code, message = refusal(check(data, tmp_path))
        assert (code, message) == ("FILE_01", FILE_01_NOT_GUIDED)
        assert "Download the guided template again" in message
        assert "CSV (Comma delimited)" in message

    def test_the_marker_without_an_achievements_sheet_is_file_01(self, tmp_path: Path) -> None:
        data = workbook({1: HEADERS, 2: valid_row()}, sheet_name="Sheet1")
        assert refusal(check(data, tmp_path)) == ("FILE_01", FILE_01_NO_SHEET)

    def test_the_achievements_sheet_is_read_wherever_it_stands(self, tmp_path: Path) -> None:
        data = workbook({1: HEADERS, 2: valid_row()}, other_sheet_first=True)
        assert check(data, tmp_path).status is UploadStatus.PASSED

    def test_macros_are_found_by_a_vba_project_part_under_an_xlsx_name(
        self, tmp_path: Path
    ) -> None:
        data = changed(guided(valid_row()), added={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0"})
        assert refusal(check(data, tmp_path)) == ("FILE_01", FILE_01_MACROS)

    def test_macros_are_found_by_a_macro_content_type_alone(self, tmp_path: Path) -> None:
        def macro_enabled(content_types: bytes) -> bytes:
            return content_types.replace(
                b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                MACRO_WORKBOOK_TYPE.encode(),
            )

        data = changed(guided(valid_row()), parts={"[Content_Types].xml": macro_enabled})
        assert refusal(check(data, tmp_path)) == ("FILE_01", FILE_01_MACROS)

    def test_an_external_link_part_is_file_01(self, tmp_path: Path) -> None:
        link = b'<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>'
        data = changed(guided(valid_row()), added={"xl/externalLinks/externalLink1.xml": link})
        assert refusal(check(data, tmp_path)) == ("FILE_01", FILE_01_EXTERNAL_LINKS)

    def test_an_old_xls_file_is_file_01(self, tmp_path: Path) -> None:
        data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600
        assert refusal(check(data, tmp_path)) == ("FILE_01", FILE_01_WORKBOOK)

    def test_a_zip_that_is_no_workbook_is_file_01(self, tmp_path: Path) -> None:
        assert refusal(check(b"PK\x03\x04rest-of-zip", tmp_path)) == ("FILE_01", FILE_01_WORKBOOK)

    def test_a_zip_version_no_spreadsheet_writes_is_file_01(self, tmp_path: Path) -> None:
        # Found by the fuzzing: zipfile raises NotImplementedError for it.
        data = bytearray(guided(valid_row()))
        entry = data.index(b"PK\x01\x02")  # the first central directory record
        data[entry + 6 : entry + 8] = (204).to_bytes(2, "little")  # version needed: 20.4
        assert refusal(check(bytes(data), tmp_path)) == ("FILE_01", FILE_01_UNREADABLE)

    def test_a_damaged_sheet_is_file_01(self, tmp_path: Path) -> None:
        data = guided(valid_row())
        data = changed(data, parts={sheet_part(data): lambda xml: xml[: len(xml) // 2]})
        assert refusal(check(data, tmp_path)) == ("FILE_01", FILE_01_UNREADABLE)


class TestZipBounds:
    def test_65_entries_are_file_01(self, tmp_path: Path) -> None:
        data = guided(valid_row())
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            present = len(archive.namelist())
        extra = {f"docProps/extra{n}.xml": b"<x/>" for n in range(65 - present)}
        assert refusal(check(changed(data, added=extra), tmp_path)) == (
            "FILE_01",
            FILE_01_TOO_MANY_PARTS,
        )
        one_fewer = dict(list(extra.items())[:-1])
        assert check(changed(data, added=one_fewer), tmp_path).status is UploadStatus.PASSED

    def test_a_highly_compressed_entry_is_file_01_before_it_is_inflated_whole(
        self, tmp_path: Path
    ) -> None:
        # 64 MiB of zeros deflate to about 64 KiB: a zip bomb under a harmless name. The screen
        # stops once the entry passes 100 times its compressed size, some 6 MiB inflated.
        data = guided(valid_row())
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                target.writestr(info, source.read(info.filename), zipfile.ZIP_DEFLATED)
            bomb = zipfile.ZipInfo("xl/media/image1.png")
            bomb.compress_type = zipfile.ZIP_DEFLATED
            with target.open(bomb, "w", force_zip64=True) as entry:
                block = bytes(1024 * 1024)
                for _ in range(64):
                    entry.write(block)
        assert refusal(check(out.getvalue(), tmp_path)) == ("FILE_01", FILE_01_OVER_INFLATED)

    def test_a_zip_bomb_declaring_a_small_size_is_never_inflated_past_it(
        self, tmp_path: Path
    ) -> None:
        # The central directory says the 64 MiB of zeros are 1,000 bytes: the archive is not
        # believed for the bounds, and it is not read past what it declares either; its CRC
        # then fails, so it is refused as damaged.
        out = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(guided(valid_row()))) as source,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            for info in source.infolist():
                target.writestr(info.filename, source.read(info.filename))
            target.writestr("xl/media/image1.png", bytes(64 * 1024 * 1024))
        data = bytearray(out.getvalue())
        name = b"xl/media/image1.png"
        entry = data.rindex(name) - 46  # the central directory record's fixed part
        assert data[entry : entry + 4] == b"PK\x01\x02"
        data[entry + 24 : entry + 28] = (1000).to_bytes(4, "little")  # its uncompressed size
        assert refusal(check(bytes(data), tmp_path)) == ("FILE_01", FILE_01_UNREADABLE)

    def test_more_inflated_bytes_than_the_size_limit_is_file_03_naming_the_rows(
        self, tmp_path: Path
    ) -> None:
        # Digits deflate some 2.5 times: well within the ratio, yet the parts inflate to far
        # more than the file's own size.
        digits = "".join(str(n) for n in range(30_000)).encode()
        data = changed(guided(valid_row()), added={"docProps/digits.txt": digits})
        limit = len(data) + 1024  # the file fits; what it inflates to does not
        report = check(data, tmp_path, size_limit_bytes=limit)
        code, message = refusal(report)
        assert code == "FILE_03"
        assert "some 250,000 rows" in message

    def test_the_screen_alone_answers_as_the_reading_does(self, tmp_path: Path) -> None:
        good = tmp_path / "good.xlsx"
        good.write_bytes(guided(valid_row()))
        assert screen_workbook(path_opener(good), size_limit_bytes=LIMIT) is None
        macro = tmp_path / "macro.xlsx"
        macro.write_bytes(changed(guided(valid_row()), added={"xl/vbaProject.bin": b"x"}))
        assert screen_workbook(path_opener(macro), size_limit_bytes=LIMIT) == FileError(
            Code.FILE_01, FILE_01_MACROS
        )


class TestCells:
    def test_each_kind_of_cell_reads_as_section_9_says(self, tmp_path: Path) -> None:
        data = workbook(
            {
                1: [
                    "text as is ",
                    1234567890,
                    1234567890.0,
                    0.1,
                    1e20,
                    1.5e-7,
                    -2.50,
                    date(2026, 11, 12),
                    datetime(1990, 3, 14, 10, 30),
                    True,
                    False,
                    "#N/A",
                    "=1+1",
                ]
            }
        )
        assert records(data, tmp_path) == [
            [
                "text as is ",
                "1234567890",
                "1234567890",
                "0.1",
                "100000000000000000000",
                "0.00000015",
                "-2.5",
                "12/11/2026",
                "14/03/1990",
                "TRUE",
                "FALSE",
                "#N/A",
            ]  # the formula has no cached value: an empty cell, and trailing empties go
        ]

    def test_a_formula_reads_as_its_cached_value(self, tmp_path: Path) -> None:
        data = workbook({1: ["=1+1", '=A1&"x"', "after"]})
        part = sheet_part(data)
        data = changed(
            data,
            parts={
                part: lambda xml: xml.replace(
                    b'<c r="A1"><f>1+1</f><v /></c>', b'<c r="A1"><f>1+1</f><v>2</v></c>'
                ).replace(
                    b'<c r="B1"><f>A1&amp;"x"</f><v /></c>',
                    b'<c r="B1" t="str"><f>A1&amp;"x"</f><v>2x</v></c>',
                )
            },
        )
        assert records(data, tmp_path) == [["2", "2x", "after"]]

    def test_shared_strings_rich_runs_and_escaped_characters(self, tmp_path: Path) -> None:
        data = workbook({1: ["placeholder"]})
        part = sheet_part(data)
        shared = (
            b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            b"<si><t>plain</t></si>"
            b"<si><r><t>rich </t></r><r><t>runs</t></r><rPh><t>PHONETIC</t></rPh></si>"
            b"<si><t>line_x000D_break and _x005F_x000D_ kept</t></si></sst>"
        )
        sheet = (
            b'<c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c>'
        )
        data = changed(
            data,
            parts={
                part: lambda xml: xml.replace(
                    b'<c r="A1" t="inlineStr"><is><t>placeholder</t></is></c>', sheet
                ),
                "xl/_rels/workbook.xml.rels": lambda xml: xml.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdS" Target="sharedStrings.xml" Type="http://schemas'
                    b'.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/>'
                    b"</Relationships>",
                ),
            },
            added={"xl/sharedStrings.xml": shared},
        )
        assert records(data, tmp_path) == [["plain", "rich runs", "line\rbreak and _x000D_ kept"]]

    @pytest.mark.parametrize(
        ("number", "text"),
        [
            (0.0, "0"),
            (-0.0, "0"),
            (3.0, "3"),
            (1234567890123.0, "1234567890123"),
            (0.30000000000000004, "0.30000000000000004"),
            (1e-10, "0.0000000001"),
            (12345678901234567890.0, "12345678901234567000"),
        ],
    )
    def test_numbers_are_their_shortest_decimal_form(self, number: float, text: str) -> None:
        assert shortest_decimal(number) == text

    def test_rows_left_out_are_blank_records_so_row_numbers_are_the_sheets(
        self, tmp_path: Path
    ) -> None:
        data = workbook({1: ["a"], 4: ["b", None, "c"], 5: [None, None, None]})
        assert records(data, tmp_path) == [["a"], [], [], ["b", "", "c"]]

    def test_a_cell_beyond_the_record_bound_is_file_01_naming_its_row(self, tmp_path: Path) -> None:
        data = workbook({1: ["a"], 3: [*([None] * 1000), "too far"]})
        error = records(data, tmp_path)
        assert isinstance(error, FileError)
        assert error.code is Code.FILE_01
        assert "row 3 has more than 1,000 cells" in error.message


class TestCheckedAsACsv:
    def test_issues_carry_the_sheets_row_numbers(self, tmp_path: Path) -> None:
        bad = valid_row(VALID_ULNS[1])
        bad[HEADERS.index("ULN")] = 1234567890  # check digit wrong
        data = workbook({1: HEADERS, 2: valid_row(), 7: bad})
        report = check(data, tmp_path)
        assert report.status is UploadStatus.FAILED
        assert (report.rows_total, report.rows_invalid) == (2, 1)
        assert [(issue.row, issue.code.value) for issue in report.issues] == [(7, "ULN_03")]

    def test_an_error_cell_fails_its_columns_rules(self, tmp_path: Path) -> None:
        row = valid_row()
        row[HEADERS.index("CourseCode")] = "#N/A"
        report = check(workbook({1: HEADERS, 2: row}), tmp_path)
        assert [(issue.row, issue.code.value) for issue in report.issues] == [(2, "COURSE_02")]

    def test_a_sheet_with_a_header_and_no_data_is_file_02_reported_as_xlsx(
        self, tmp_path: Path
    ) -> None:
        report = check(workbook({1: HEADERS}), tmp_path)
        assert refusal(report)[0] == "FILE_02"
        assert report.encoding is WorkbookEncoding.XLSX

    def test_a_wrong_header_is_file_04(self, tmp_path: Path) -> None:
        report = check(workbook({1: ["Course", *HEADERS[1:]], 2: valid_row()}), tmp_path)
        assert refusal(report)[0] == "FILE_04"


class TestTheCommand:
    def test_achievements_check_reads_the_guided_workbook(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "june.xlsx"
        path.write_bytes(guided(valid_row()))
        status = achievements(["check", str(path), "--today", "2026-11-20", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert status == 0
        assert (report["file_name"], report["encoding"], report["status"]) == (
            "june.xlsx",
            "xlsx",
            "passed",
        )

    def test_achievements_check_refuses_a_macro_workbook_with_exit_1(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "june.xlsx"
        path.write_bytes(changed(guided(valid_row()), added={"xl/vbaProject.bin": b"x"}))
        status = achievements(["check", str(path), "--json"])
        report = json.loads(capsys.readouterr().out)
        assert status == 1
        assert report["file_errors"] == [{"code": "FILE_01", "message": FILE_01_MACROS}]


def test_a_directory_pointing_before_the_file_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    """A directory whose declared offset puts its entries before the file's start makes
    zipfile seek to a negative offset (EINVAL): the file's fault, so FILE_01 (found by the
    tier-2 fuzz)."""
    built = io.BytesIO()
    with zipfile.ZipFile(built, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    data = bytearray(built.getvalue())
    end = data.rfind(b"PK\x05\x06")
    declared = int.from_bytes(data[end + 16 : end + 20], "little")
    data[end + 16 : end + 20] = (declared + 1000).to_bytes(4, "little")
    path = tmp_path / "damaged.xlsx"
    path.write_bytes(bytes(data))

    refused = screen_workbook(path_opener(path), size_limit_bytes=LIMIT)

    assert refused == FileError(Code.FILE_01, FILE_01_UNREADABLE)
