"""Streaming records: RFC 4180 quoting, spreadsheet row numbers, resuming, the delimiter."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from scheme_builders import HEADER_LINE, HEADERS, write

from services.core.scheme.codes import Code, FileError
from services.core.scheme.columns import HeaderMap
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.records import (
    Layout,
    Record,
    RecordReader,
    detect_layout,
    path_opener,
)


def read(
    path: Path, *, encoding: Encoding = Encoding.UTF_8, after_row: int = 1
) -> tuple[list[Record], FileError | None]:
    reader = RecordReader(path_opener(path), encoding)
    records = list(reader.records(after_row))
    assert reader.finished
    return records, reader.error


CsvFile = Callable[[str], Path]


@pytest.fixture
def csv_file(tmp_path: Path) -> CsvFile:
    """Writes a file of a three-column header and the given body."""

    def make(body: str, header: str = "h1,h2,h3") -> Path:
        return write(tmp_path, "file.csv", header + "\r\n" + body)

    return make


class TestQuoting:
    def test_quoted_fields_hold_delimiters_doubled_quotes_and_line_breaks(
        self, csv_file: CsvFile
    ) -> None:
        records, error = read(csv_file('"a,b","say ""hi""","two\r\nlines"\r\n'))
        assert records == [(2, ["a,b", 'say "hi"', "two\r\nlines"])]
        assert error is None

    def test_a_quote_inside_an_unquoted_field_is_an_ordinary_character(
        self, csv_file: CsvFile
    ) -> None:
        records, error = read(csv_file('O"Brien,5" pipe,x\r\n'))
        assert records == [(2, ['O"Brien', '5" pipe', "x"])]
        assert error is None

    def test_a_quoted_field_open_at_the_end_of_the_file_is_file_01(self, csv_file: CsvFile) -> None:
        _, error = read(csv_file('a,b,c\r\nd,"e,f\r\n'))
        assert error is not None
        assert error.code is Code.FILE_01
        assert "still open" in error.message

    def test_an_open_quote_in_the_last_line_without_a_line_break_is_file_01(
        self, csv_file: CsvFile
    ) -> None:
        _, error = read(csv_file('a,b,"c'))
        assert error is not None
        assert error.code is Code.FILE_01

    def test_an_open_quote_right_after_the_header_is_file_01(self, csv_file: CsvFile) -> None:
        records, error = read(csv_file('"'))
        assert records == []
        assert error is not None

    def test_an_open_quote_ending_in_doubled_quotes_is_still_open(self, csv_file: CsvFile) -> None:
        _, error = read(csv_file('a,"b""'))
        assert error is not None

    def test_a_closed_quote_on_the_last_line_without_a_line_break_is_fine(
        self, csv_file: CsvFile
    ) -> None:
        records, error = read(csv_file('a,b,"c"'))
        assert records == [(2, ["a", "b", "c"])]
        assert error is None

    def test_a_field_larger_than_the_csv_field_limit_is_file_01(self, csv_file: CsvFile) -> None:
        huge = "x\r\n" * (csv.field_size_limit() // 3 + 10)
        _, error = read(csv_file(f'a,"{huge}",c\r\n'))
        assert error is not None
        assert error.code is Code.FILE_01

    def test_a_file_of_only_a_header_has_no_records(self, csv_file: CsvFile) -> None:
        assert read(csv_file("")) == ([], None)


class TestRowNumbers:
    def test_the_first_record_is_row_2_and_multi_line_records_are_one_row(
        self, csv_file: CsvFile
    ) -> None:
        records, _ = read(csv_file('a,"b\r\nb\r\nb",c\r\nd,e,f\r\n'))
        assert [number for number, _ in records] == [2, 3]

    def test_blank_records_keep_their_numbers(self, csv_file: CsvFile) -> None:
        records, _ = read(csv_file("a,b,c\r\n\r\n,,\r\nd,e,f\r\n"))
        assert records == [(2, ["a", "b", "c"]), (3, []), (4, ["", "", ""]), (5, ["d", "e", "f"])]

    def test_lf_and_cr_line_ends_are_record_ends_too(self, csv_file: CsvFile) -> None:
        records, _ = read(csv_file("a\nb\rc\r\nd"))
        assert records == [(2, ["a"]), (3, ["b"]), (4, ["c"]), (5, ["d"])]

    def test_resuming_after_a_row_skips_the_rows_before_it(self, csv_file: CsvFile) -> None:
        path = csv_file("".join(f"r{n},x,y\r\n" for n in range(2, 12)))
        records, error = read(path, after_row=7)
        assert [number for number, _ in records] == [8, 9, 10, 11]
        assert records[0][1] == ["r8", "x", "y"]
        assert error is None

    def test_resuming_after_the_last_row_yields_nothing_and_still_checks_the_end(
        self, csv_file: CsvFile
    ) -> None:
        path = csv_file("a,b,c\r\nd,e,f\r\n")
        assert read(path, after_row=3) == ([], None)
        assert read(path, after_row=50) == ([], None)
        _, error = read(csv_file('a,b,c\r\n"d'), after_row=3)
        assert error is not None
        assert error.code is Code.FILE_01

    def test_records_can_be_read_again(self, csv_file: CsvFile) -> None:
        reader = RecordReader(path_opener(csv_file("a,b,c\r\n")), Encoding.UTF_8)
        assert list(reader.records()) == list(reader.records())


class TestEncodingsOnRead:
    def test_bom_is_not_part_of_the_first_header(self, tmp_path: Path) -> None:
        path = write(tmp_path, "bom.csv", HEADER_LINE + "\r\n", encoding="utf-8-sig")
        layout = detect_layout(path_opener(path), Encoding.UTF_8_SIG)
        assert isinstance(layout, Layout)
        assert isinstance(layout.header, HeaderMap)

    def test_cp1252_cells_decode_to_the_right_characters(self, tmp_path: Path) -> None:
        path = write(tmp_path, "cp.csv", "h\r\n£5 café\r\n", encoding="cp1252")
        records, _ = read(path, encoding=Encoding.WINDOWS_1252)
        assert records == [(2, ["£5 café"])]


class TestDelimiter:
    def test_comma_header_is_comma_separated(self, tmp_path: Path) -> None:
        path = write(tmp_path, "c.csv", HEADER_LINE + "\r\n")
        layout = detect_layout(path_opener(path), Encoding.UTF_8)
        assert isinstance(layout, Layout)
        assert layout.delimiter == ","

    def test_header_matching_only_when_split_by_semicolons_is_semicolon_separated(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path, "s.csv", ";".join(HEADERS) + ";;\r\na;b\r\n")
        layout = detect_layout(path_opener(path), Encoding.UTF_8)
        assert isinstance(layout, Layout)
        assert layout.delimiter == ";"
        assert isinstance(layout.header, HeaderMap)

    def test_a_header_matching_neither_way_is_read_as_comma_with_file_04(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path, "n.csv", ";".join(HEADERS[:-1]) + "\r\n")
        layout = detect_layout(path_opener(path), Encoding.UTF_8)
        assert isinstance(layout, Layout)
        assert layout.delimiter == ","
        assert isinstance(layout.header, FileError)
        assert layout.header.code is Code.FILE_04

    def test_semicolons_inside_a_comma_header_do_not_switch(self, tmp_path: Path) -> None:
        # Split by ';' this is two cells, neither a template header.
        path = write(tmp_path, "m.csv", HEADER_LINE.replace("Notes", "No;tes") + "\r\n")
        layout = detect_layout(path_opener(path), Encoding.UTF_8)
        assert isinstance(layout, Layout)
        assert layout.delimiter == ","

    def test_semicolon_records_keep_commas_inside_cells(self, tmp_path: Path) -> None:
        path = write(tmp_path, "s.csv", ";".join(HEADERS) + "\r\n1,5;b\r\n")
        records = list(RecordReader(path_opener(path), Encoding.UTF_8, ";").records())
        assert records == [(2, ["1,5", "b"])]
