"""The record scanner: boundaries as the csv module finds them, section 8's bounds of one
record, blank runs left out, chunk plans, and chunks read back by `read_chunk`."""

from __future__ import annotations

import csv
import io
import re
import tracemalloc
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheme_builders import HEADERS, UPLOAD_DATE, VALID_ULNS, cells, csv_text, write

import services.core.scheme.check as check_module
import services.core.scheme.record_scanner as record_scanner
from services.core.scheme.check import check_file
from services.core.scheme.codes import FILE_01_OPEN_QUOTE, Code, FileError, UploadStatus
from services.core.scheme.columns import HeaderMap
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import (
    DIALECTS,
    MAX_FIELD_CHARS,
    MAX_RECORD_BYTES,
    MAX_RECORD_CELLS,
    ChunkPlan,
    Opener,
    Record,
    ScanResult,
    read_chunk,
    read_header,
    scan_records,
)
from services.core.scheme.records import Layout, RecordReader, detect_layout


def opener(data: bytes) -> Opener:
    return lambda: io.BytesIO(data)


def scan(data: bytes, delimiter: str = ",", **options: Any) -> ScanResult:
    return scan_records(io.BytesIO(data), delimiter, **options)


def chunk_records(
    data: bytes,
    result: ScanResult,
    delimiter: str = ",",
    encoding: Encoding = Encoding.UTF_8,
) -> list[Record]:
    return [
        record
        for chunk in result.chunks
        for record in read_chunk(opener(data), encoding, delimiter, chunk.segments)
    ]


def records(
    data: bytes, delimiter: str = ",", encoding: Encoding = Encoding.UTF_8, **options: Any
) -> list[Record]:
    """Every record the plan holds, read back chunk by chunk; the file must be parseable."""
    result = scan(data, delimiter, encoding=encoding, **options)
    assert result.error is None, result.error
    return chunk_records(data, result, delimiter, encoding)


def segments(result: ScanResult) -> list[tuple[tuple[int, int, int], ...]]:
    return [chunk.segments for chunk in result.chunks]


def error_of(result: ScanResult) -> FileError:
    assert result.error is not None
    assert result.error.code is Code.FILE_01
    assert result.chunks == ()
    return result.error


class TestQuoting:
    def test_a_quote_inside_an_unquoted_field_is_an_ordinary_character(self) -> None:
        assert records(b'h\r\nO"Brien,5" pipe,x\r\n') == [(2, ['O"Brien', '5" pipe', "x"])]

    def test_doubled_quotes_and_delimiters_inside_quotes(self) -> None:
        assert records(b'h\r\n"say ""hi""","a,b"\r\n') == [(2, ['say "hi"', "a,b"])]

    def test_only_doubled_quotes(self) -> None:
        assert records(b'h\r\n"",""""\r\n') == [(2, ["", '"'])]

    def test_characters_after_the_closing_quote_are_ordinary(self) -> None:
        assert records(b'h\r\n"a"b"c,d\r\n') == [(2, ['ab"c', "d"])]
        assert records(b'h\r\na,"b\r\n"c\r\n') == [(2, ["a", "b\r\nc"])]

    def test_line_breaks_inside_quotes_do_not_end_the_record(self) -> None:
        data = b'h\r\n"two\r\nlines","x\ny\rz"\r\nnext\r\n'
        assert records(data) == [(2, ["two\r\nlines", "x\ny\rz"]), (3, ["next"])]

    def test_a_space_before_a_quote_makes_the_field_unquoted(self) -> None:
        assert records(b'h\r\n "a,b"\r\n') == [(2, [' "a', 'b"'])]

    def test_a_quoted_header_may_span_lines(self) -> None:
        result = scan(b'"h\r\n1",h2\nx\n')
        assert result.header_end == 10
        assert chunk_records(b'"h\r\n1",h2\nx\n', result) == [(2, ["x"])]


class TestLineEnds:
    def test_cr_lf_and_crlf_each_end_a_record(self) -> None:
        assert records(b"h\na\rb\r\nc\n\rd") == [
            (2, ["a"]),
            (3, ["b"]),
            (4, ["c"]),
            (5, []),
            (6, ["d"]),
        ]

    def test_an_empty_line_is_a_record_of_its_own(self) -> None:
        assert records(b"h\r\n\r\n\n\ra\r\n") == [(2, []), (3, []), (4, []), (5, ["a"])]

    def test_the_last_record_may_lack_a_line_break(self) -> None:
        result = scan(b"h1,h2\r\na,b")
        assert result.header_end == 7
        assert result.records == 1
        assert chunk_records(b"h1,h2\r\na,b", result) == [(2, ["a", "b"])]

    @pytest.mark.parametrize("block_bytes", [1, 2, 3, 4, 5, 6, 7])
    def test_a_crlf_across_a_block_boundary_is_one_line_break(self, block_bytes: int) -> None:
        result = scan(b"h\r\na\r\nb\r\n", block_bytes=block_bytes)
        assert (result.header_end, result.records) == (3, 2)
        assert segments(result) == [((3, 9, 2),)]


class TestOpenQuote:
    @pytest.mark.parametrize(
        "data",
        [
            b'h\r\na,b\r\nd,"e,f\r\n',
            b'h\r\n"',
            b'h\r\na,"b""',  # the doubled quote is a quote: the field is still open
            b'"h\r\na\r\n',  # in the header
        ],
    )
    def test_a_quoted_field_open_at_the_end_is_file_01(self, data: bytes) -> None:
        assert error_of(scan(data)).message == FILE_01_OPEN_QUOTE

    def test_a_closed_quote_on_the_last_line_without_a_line_break_is_fine(self) -> None:
        assert records(b'h\r\na,"b"') == [(2, ["a", "b"])]


class TestEncodings:
    BOM_FILE = b'\xef\xbb\xbf"h1",h2\r\n"a",b\r\n'

    @pytest.mark.parametrize("encoding", [Encoding.UTF_8_SIG, None])
    def test_a_quote_right_after_the_bom_opens_a_quoted_field(
        self, encoding: Encoding | None
    ) -> None:
        result = scan(self.BOM_FILE, encoding=encoding)
        assert result.header_end == 12
        assert chunk_records(self.BOM_FILE, result, encoding=Encoding.UTF_8_SIG) == [
            (2, ["a", "b"])
        ]
        assert read_header(opener(self.BOM_FILE), Encoding.UTF_8_SIG, ",") == ["h1", "h2"]

    def test_in_windows_1252_the_bom_bytes_are_characters_of_the_first_cell(self) -> None:
        header = read_header(opener(self.BOM_FILE), Encoding.WINDOWS_1252, ",")
        assert header == ['ï»¿"h1"', "h2"]

    def test_a_file_of_only_a_bom_has_no_records(self) -> None:
        result = scan(b"\xef\xbb\xbf", encoding=Encoding.UTF_8_SIG)
        assert (result.header_end, result.records, result.chunks) == (3, 0, ())

    def test_an_empty_file_has_no_records(self) -> None:
        assert scan(b"") == ScanResult(0, (), 0, 0, None)

    def test_windows_1252_cells_decode_to_the_right_characters(self) -> None:
        data = "h\r\n£5 café\r\n".encode("cp1252")
        assert records(data, encoding=Encoding.WINDOWS_1252) == [(2, ["£5 café"])]


class TestByteClasses:
    @pytest.mark.parametrize("excluded", [b'"\r\n', b",\r\n", b'";\r\n', b"\x00\xff"])
    def test_every_byte_but_the_excluded_ones_and_nothing_else(self, excluded: bytes) -> None:
        # The scanner's patterns spell `[^...]` as the ranges of the bytes it holds.
        byte_class = re.compile(record_scanner._all_bytes_but(excluded))
        matched = [byte for byte in range(256) if byte_class.fullmatch(bytes([byte]))]
        assert matched == [byte for byte in range(256) if byte not in excluded]


class TestSemicolons:
    def test_the_delimiter_decides_where_quoted_fields_start(self) -> None:
        data = b'h;i\r\n"a;b";c,d\r\n'
        assert records(data, ";") == [(2, ["a;b", "c,d"])]
        assert records(data, ",") == [(2, ["a;b;c", "d"])]

    def test_blank_records_are_made_of_the_file_s_delimiter(self) -> None:
        data = b"h\r\n" + b";; \t\r\n" * 2000 + b"x\r\n"
        semicolon = scan(data, ";")
        assert semicolon.blank_records_skipped == 2000
        assert chunk_records(data, semicolon, ";") == [(2002, ["x"])]
        assert scan(data, ",").blank_records_skipped == 0  # ";" is content then


class TestRecordBytes:
    # 16 fields of 65,535 bytes and 15 commas: 1,048,575 bytes; one more byte is the bound.
    AT_BOUND = ",".join(["x" * 65_535] * 16) + "x"
    # 15 quoted fields of 16,384 "ab\r\n" (65,538 bytes each with the quotes) and 15 commas:
    # 983,085 bytes, then an unquoted field of 65,491 bytes: 1,048,576 in all.
    QUOTED_AT_BOUND = ",".join(['"' + "ab\r\n" * 16_384 + '"'] * 15) + "," + "x" * 65_491

    def test_the_bound_is_1_mib(self) -> None:
        assert MAX_RECORD_BYTES == 1_048_576
        assert len(self.AT_BOUND) == len(self.QUOTED_AT_BOUND) == MAX_RECORD_BYTES

    @pytest.mark.parametrize("record", [AT_BOUND, QUOTED_AT_BOUND])
    def test_a_record_of_exactly_1_mib_is_read(self, record: str) -> None:
        data = f"h\r\n{record}\r\nz\r\n".encode()
        read = records(data)
        assert [row for row, _ in read] == [2, 3]
        assert len(read[0][1]) == 16

    @pytest.mark.parametrize("record", [AT_BOUND, QUOTED_AT_BOUND])
    @pytest.mark.parametrize("block_bytes", [4096, 1 << 20])
    def test_one_byte_more_is_file_01_naming_the_row_and_the_bound(
        self, record: str, block_bytes: int
    ) -> None:
        data = f"h\r\na\r\n{record}x\r\nz\r\n".encode()
        message = error_of(scan(data, block_bytes=block_bytes)).message
        assert "row 3 " in message
        assert "1,048,576 bytes" in message

    def test_a_record_longer_than_1_mib_without_a_line_break_at_the_end_is_file_01(self) -> None:
        assert "row 2 " in error_of(scan(b"h\r\n" + b"y" * (MAX_RECORD_BYTES + 1))).message

    def test_a_quote_open_over_more_than_1_mib_is_the_record_bound(self) -> None:
        data = b'h\r\na,"' + b"line\r\n" * 200_000
        assert "1,048,576 bytes" in error_of(scan(data)).message

    def test_the_header_record_has_the_same_bound(self) -> None:
        data = ("x" * 65_535 + ",") * 17 + "\r\na\r\n"  # 1,114,112 bytes
        message = error_of(scan(data.encode())).message
        assert "row 1 " in message


class TestCells:
    def test_1000_cells_are_read(self) -> None:
        assert MAX_RECORD_CELLS == 1000
        read = records(b"h\r\na" + b",a" * 999 + b"\r\n")
        assert len(read[0][1]) == 1000

    def test_1001_cells_are_file_01_naming_the_row_and_the_bound(self) -> None:
        message = error_of(scan(b"h\r\nok\r\nSECRET" + b",a" * 1000 + b"\r\n")).message
        assert "row 3 " in message
        assert "1,000 cells" in message
        assert "SECRET" not in message

    def test_a_blank_record_of_1001_cells_is_file_01_too(self) -> None:
        assert "row 2 " in error_of(scan(b"h\r\n" + b"," * 1000 + b"\r\n")).message

    def test_a_million_cells_are_refused_from_byte_counts(self) -> None:
        data = b"h\r\n" + b"," * 1_000_000 + b"\r\n"
        tracemalloc.start()
        try:
            result = scan(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "1,000 cells" in error_of(result).message
        assert peak < 8 * 1024 * 1024

    def test_delimiters_inside_quotes_are_not_cells(self) -> None:
        read = records(b'h\r\na,"' + b"," * 5000 + b'",b\r\n')
        assert read == [(2, ["a", "," * 5000, "b"])]

    def test_the_header_record_has_the_same_bound(self) -> None:
        assert "row 1 " in error_of(scan(b"h" + b",h" * 1000 + b"\r\na\r\n")).message


class TestFieldCharacters:
    N = MAX_FIELD_CHARS

    def test_the_bound_is_the_csv_module_s_default_field_limit(self) -> None:
        assert MAX_FIELD_CHARS == 131_072 == csv.field_size_limit()

    @pytest.mark.parametrize(
        "field",
        [
            "x" * N,
            '"' + "x" * N + '"',  # the quotes are not characters of the field
            '"' + "x" * (N - 1) + '"""',  # `""` is one character
            '"' + "x" * (N - 72) + '"' + "y" * 72,  # after the closing quote
            '"' + "x\r\n" * (N // 3) + "zz" + '"',  # line breaks are characters
            "é" * N,  # UTF-8: two bytes, one character
        ],
    )
    def test_a_field_of_131072_characters_is_read(self, field: str) -> None:
        read = records(f"h\r\na,{field},b\r\n".encode())
        assert len(read[0][1][1]) == self.N

    @pytest.mark.parametrize(
        "field",
        [
            "x" * (N + 1),
            '"' + "x" * (N + 1) + '"',
            '"' + "x" * N + '"""',
            '"' + "x" * (N - 72) + '"' + "y" * 73,
            "é" * (N + 1),
        ],
    )
    def test_one_character_more_is_file_01_naming_the_row_and_the_bound(self, field: str) -> None:
        message = error_of(scan(f"h\r\nok\r\na,{field},b\r\n".encode())).message
        assert "row 3" in message
        assert "131,072 characters" in message

    def test_in_windows_1252_every_byte_is_a_character(self) -> None:
        data = "h\r\né\r\n".encode() + "é".encode() * (self.N // 2 + 1) + b"\r\n"
        assert scan(data, encoding=Encoding.UTF_8).error is None
        assert "row 3" in error_of(scan(data, encoding=Encoding.WINDOWS_1252)).message

    def test_a_quote_open_to_the_end_counts_to_the_end(self) -> None:
        data = b'h\r\na,"' + b"x\r\n" * 50_000
        assert "131,072 characters" in error_of(scan(data)).message

    def test_the_first_error_stops_the_scan(self) -> None:
        data = b"h\r\na\r\n" + b",a" * 1000 + b"\r\nb\r\n" + b"x" * (MAX_RECORD_BYTES + 10)
        result = scan(data)
        assert "row 3 " in error_of(result).message
        assert result.records == 1


class TestBlankRuns:
    def test_a_long_run_is_left_out_and_keeps_its_row_numbers(self) -> None:
        # Header [0,3), row 2 [3,8), rows 3..2002 (8,000 bytes) [8,8008), row 2003 [8008,8011).
        data = b"h\r\na,b\r\n" + b",,\r\n" * 2000 + b"c\r\n"
        result = scan(data)
        assert segments(result) == [((3, 8, 2), (8008, 8011, 2003))]
        assert (result.records, result.blank_records_skipped) == (2002, 2000)
        assert chunk_records(data, result) == [(2, ["a", "b"]), (2003, ["c"])]

    @pytest.mark.parametrize(
        ("before", "line", "end"),
        [
            (b"a,b\r\n", b",,", b"\r\n"),
            (b'"a\r\nb",c\r\n', b" \t,", b"\r\n"),  # after a record with a quoted line break
            (b"x" * 1500 + b"\r\n", b"", b"\r\n"),  # after a line too long for the fast path
            (b"a\n", b"", b"\n"),
            (b"a\r", b",", b"\r"),
            (b"", b",,,", b"\r\n"),  # right after the header
        ],
    )
    @pytest.mark.parametrize("block_bytes", [1, 7, 1 << 20])
    def test_the_whole_run_is_left_out_wherever_it_starts(
        self, before: bytes, line: bytes, end: bytes, block_bytes: int
    ) -> None:
        run = (line + end) * 5000  # at least 5,000 bytes
        data = b"h" + end + before + run + b"z" + end
        result = scan(data, block_bytes=block_bytes)
        assert result.blank_records_skipped == 5000
        read = chunk_records(data, result)
        assert read[-1] == (len(read) + 5000 + 1, ["z"])

    def test_a_run_between_records_of_mixed_line_ends_is_left_out(self) -> None:
        # Four records in each 8 bytes: ",\r\n", "\n", " \r", ",\n".
        data = b"h\r\na\r\n" + b",\r\n\n \r,\n" * 1500 + b"b\n"
        result = scan(data)
        assert result.blank_records_skipped == 6000
        assert chunk_records(data, result) == [(2, ["a"]), (6003, ["b"])]

    def test_a_run_at_the_end_of_the_file_is_left_out(self) -> None:
        data = b"h\na\n" + b" \n" * 5000
        result = scan(data)
        assert segments(result) == [((2, 4, 2),)]
        assert (result.records, result.blank_records_skipped) == (5001, 5000)

    def test_a_last_blank_record_without_a_line_break_is_part_of_the_run(self) -> None:
        data = b"h\na\n" + b" \n" * 5000 + b"  "
        result = scan(data)
        assert segments(result) == [((2, 4, 2),)]
        assert (result.records, result.blank_records_skipped) == (5002, 5001)

    def test_a_short_run_stays_in_the_segment_and_is_read_back(self) -> None:
        data = b"h\r\na\r\n\r\n,,\r\n \t\r\nb\r\n"
        result = scan(data)
        assert segments(result) == [((3, len(data), 2),)]
        assert result.blank_records_skipped == 0
        assert chunk_records(data, result) == [
            (2, ["a"]),
            (3, []),
            (4, ["", "", ""]),
            (5, [" \t"]),
            (6, ["b"]),
        ]

    @pytest.mark.parametrize("block_bytes", [1, 5, 63, 64, 65, 1 << 20])
    def test_a_run_across_blocks_is_measured_whole(self, block_bytes: int) -> None:
        long_run = b"h\n" + b"\n" * 300 + b"x\n"
        result = scan(long_run, block_bytes=block_bytes, blank_run_bytes=64)
        assert result.blank_records_skipped == 300
        assert chunk_records(long_run, result) == [(302, ["x"])]
        short_run = b"h\n" + b"\n" * 50 + b"x\n"
        result = scan(short_run, block_bytes=block_bytes, blank_run_bytes=64)
        assert result.blank_records_skipped == 0
        assert chunk_records(short_run, result)[-1] == (52, ["x"])

    def test_a_file_of_line_breaks_has_no_chunk_work(self) -> None:
        data = b"\n" * (5 * 1024 * 1024)
        result = scan(data)
        assert (result.header_end, result.chunks) == (1, ())
        assert result.records == result.blank_records_skipped == 5 * 1024 * 1024 - 1

    def test_a_file_of_empty_spreadsheet_rows_has_no_chunk_work(self) -> None:
        result = scan(b",,,,,,,,,,\r\n" * 100_000)
        assert (result.header_end, result.chunks) == (12, ())
        assert result.records == result.blank_records_skipped == 99_999

    def test_short_blank_records_in_a_batch_of_quoted_records_are_counted(self) -> None:
        data = b'h\r\n"a"\r\n \r\n"b"\r\n\r\nx'
        result = scan(data)
        assert (result.records, segments(result)) == (5, [((3, len(data), 2),)])
        assert chunk_records(data, result) == [
            (2, ["a"]),
            (3, [" "]),
            (4, ["b"]),
            (5, []),
            (6, ["x"]),
        ]

    def test_blank_records_with_quotes_stay_in_segments(self) -> None:
        data = b'h\r\n"",""\r\n' + b'"",""\r\n' * 3000
        result = scan(data)
        assert result.blank_records_skipped == 0
        assert result.records == 3001


class TestChunks:
    # Header [0,3), then five records of four bytes: rows 2 to 6 at 3, 7, 11, 15, 19.
    FIVE = b"h\r\nr2\r\nr3\r\nr4\r\nr5\r\nr6\r\n"

    def test_chunks_hold_at_most_chunk_rows_records(self) -> None:
        result = scan(self.FIVE, chunk_rows=2)
        assert result.chunks == (
            ChunkPlan(((3, 11, 2),), 2, 8),
            ChunkPlan(((11, 19, 4),), 2, 8),
            ChunkPlan(((19, 23, 6),), 1, 4),
        )

    def test_chunks_hold_at_most_chunk_bytes_bytes(self) -> None:
        assert segments(scan(self.FIVE, chunk_bytes=9)) == [
            ((3, 11, 2),),
            ((11, 19, 4),),
            ((19, 23, 6),),
        ]

    def test_a_record_larger_than_chunk_bytes_is_a_chunk_of_its_own(self) -> None:
        data = b'h\r\na\r\n"' + b"x" * 100 + b'"\r\nb\r\n'
        assert scan(data, chunk_bytes=10).chunks == (
            ChunkPlan(((3, 6, 2),), 1, 3),
            ChunkPlan(((6, 110, 3),), 1, 104),
            ChunkPlan(((110, 113, 4),), 1, 3),
        )

    def test_skipped_runs_split_segments_and_chunk_segments_caps_them(self) -> None:
        # "a" [2,4) row 2; rows 3..102 blank [4,104); "b" [104,106) row 103; rows 104..203
        # blank [106,206); "c" [206,208) row 204.
        data = b"h\na\n" + b"\n" * 100 + b"b\n" + b"\n" * 100 + b"c\n"
        assert segments(scan(data, blank_run_bytes=50)) == [
            ((2, 4, 2), (104, 106, 103), (206, 208, 204))
        ]
        assert segments(scan(data, blank_run_bytes=50, chunk_segments=1)) == [
            ((2, 4, 2),),
            ((104, 106, 103),),
            ((206, 208, 204),),
        ]

    def test_the_default_plan_of_a_big_file_cuts_at_20000_rows(self) -> None:
        line = b"R,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,1000000043,,,79049946,\r\n"
        data = b"h\r\n" + line * 50_000
        result = scan(data)
        assert [chunk.records for chunk in result.chunks] == [20_000, 20_000, 10_000]
        assert all(chunk.size_bytes <= 4 * 1024 * 1024 for chunk in result.chunks)
        assert result.chunks[1].segments == (
            (3 + 20_000 * len(line), 3 + 40_000 * len(line), 20_002),
        )

    def test_wrong_sizes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            scan(b"h\r\n", chunk_rows=0)
        with pytest.raises(ValueError, match="delimiter"):
            scan(b"h\r\n", "\t")


class TestBlockBoundaries:
    MIXED = (
        b'h1,h2\r\na,"b\r\nc"\nd""e,f\r"g""",h\r\n'
        + b"x" * 1200
        + b'\r\n\r\n,,\n"",x\r'
        + b'last,"one"'
    )

    def test_the_records(self) -> None:
        assert records(self.MIXED) == [
            (2, ["a", "b\r\nc"]),
            (3, ['d""e', "f"]),
            (4, ['g"', "h"]),
            (5, ["x" * 1200]),
            (6, []),
            (7, ["", "", ""]),
            (8, ["", "x"]),
            (9, ["last", "one"]),
        ]

    @pytest.mark.parametrize(
        "options", [{}, {"chunk_bytes": 16, "chunk_rows": 2}, {"blank_run_bytes": 2}]
    )
    def test_every_block_size_gives_the_same_plan(self, options: dict[str, int]) -> None:
        expected = scan(self.MIXED, **options)
        assert expected.error is None
        for block_bytes in range(1, len(self.MIXED) + 2):
            assert scan(self.MIXED, block_bytes=block_bytes, **options) == expected, block_bytes

    @pytest.mark.parametrize("block_bytes", [1, 2, 3, 5, 8, 13])
    def test_chunk_limits_hold_with_tiny_blocks(self, block_bytes: int) -> None:
        result = scan(self.MIXED, block_bytes=block_bytes, chunk_bytes=16, chunk_rows=2)
        for chunk in result.chunks:
            assert chunk.records <= 2
            assert chunk.size_bytes <= 16 or chunk.records == 1
        assert chunk_records(self.MIXED, result) == chunk_records(self.MIXED, scan(self.MIXED))


class TestReadChunk:
    def test_a_segment_after_a_bom_is_plain_utf8(self) -> None:
        data = "h\r\né\r\n".encode("utf-8-sig")
        assert records(data, encoding=Encoding.UTF_8_SIG) == [(2, ["é"])]

    def test_segments_are_read_in_order_with_their_row_numbers(self) -> None:
        data = b"h\r\na\r\nb\r\nc\r\n"
        read = list(read_chunk(opener(data), Encoding.UTF_8, ",", [(9, 12, 4), (3, 6, 2)]))
        assert read == [(4, ["c"]), (2, ["a"])]

    def test_a_plan_beyond_the_end_of_the_file_is_refused(self) -> None:
        with pytest.raises(ValueError, match="shorter"):
            list(read_chunk(opener(b"h\r\na\r\n"), Encoding.UTF_8, ",", [(3, 20, 2)]))


class TestLayout:
    def test_a_header_past_a_bound_is_file_01(self) -> None:
        layout = detect_layout(opener(b"h" + b",h" * 1000 + b"\r\n"), Encoding.UTF_8)
        assert isinstance(layout, FileError)
        assert "row 1 " in layout.message

    def test_a_header_unparseable_with_commas_may_still_match_with_semicolons(self) -> None:
        # Split by ",": one field of about 200,000 characters. Split by ";": the template and
        # two trailing cells of spaces, which are empty.
        header = ";".join(HEADERS) + ";" + " " * 100_000 + ";" + " " * 100_000
        layout = detect_layout(opener(header.encode() + b"\r\n"), Encoding.UTF_8)
        assert isinstance(layout, Layout)
        assert layout.delimiter == ";"
        assert isinstance(layout.header, HeaderMap)

    def test_a_header_unparseable_with_semicolons_only_does_not_match_them(self) -> None:
        layout = detect_layout(opener(b"Nope," + b";" * 1500 + b"\r\n"), Encoding.UTF_8)
        assert isinstance(layout, Layout)
        assert layout.delimiter == ","
        assert isinstance(layout.header, FileError)
        assert layout.header.code is Code.FILE_04

    def test_a_huge_header_is_refused_in_bounded_memory(self) -> None:
        data = b"h" + b',"\n"' * 3_000_000 + b"\r\n"  # short lines, 3 million cells
        tracemalloc.start()
        try:
            layout = detect_layout(opener(data), Encoding.UTF_8)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(layout, FileError)
        assert peak < 8 * 1024 * 1024


class TestOfflineCheck:
    def test_a_data_record_past_a_bound_is_file_01(self, tmp_path: Path) -> None:
        text = csv_text([cells(), cells(ULN=VALID_ULNS[1])]) + "," * 1000 + "\r\n"
        report = check_file(write(tmp_path, "x.csv", text), today=UPLOAD_DATE)
        assert report.status is UploadStatus.REJECTED
        assert report.file_errors[0].code is Code.FILE_01
        assert "row 4 " in report.file_errors[0].message

    def test_a_bound_outranks_a_bad_header(self, tmp_path: Path) -> None:
        text = csv_text([cells()], header=["Nope"]) + "x" * (MAX_FIELD_CHARS + 1) + "\r\n"
        report = check_file(write(tmp_path, "x.csv", text), today=UPLOAD_DATE)
        assert report.file_errors[0].code is Code.FILE_01

    def test_small_chunks_give_the_same_report(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rows = [
            cells(),
            [],
            cells(ULN="1234567890"),
            [""] * 11,
            cells(ULN=VALID_ULNS[1], Notes="a\r\nb"),
        ]
        path = write(tmp_path, "x.csv", csv_text(rows))
        expected = check_file(path, today=UPLOAD_DATE)
        assert expected.rows_total == 3
        assert [issue.row for issue in expected.issues] == [4]

        def one_record_chunks(stream: IO[bytes], delimiter: str, **options: Any) -> ScanResult:
            return scan_records(stream, delimiter, **options, chunk_rows=1, chunk_bytes=1)

        monkeypatch.setattr(check_module, "scan_records", one_record_chunks)
        assert check_file(path, today=UPLOAD_DATE) == expected


# -- the scanner against the csv module reading the whole file --------------------------------

_TOKENS = ['"', '""', ",", ";", "\r", "\n", "\r\n", " ", "\t", "a", "b", "é", "€", "😀"]
_BLANK_RUNS = [",,\r\n" * 20, "\n" * 40, " ;\r" * 15]


def _oracle(data: bytes, encoding: Encoding, delimiter: str) -> tuple[list[Record], bool]:
    reader = RecordReader(opener(data), encoding, delimiter)
    read = list(reader.records())
    return read, reader.error is not None


def _non_blank(read: list[Record]) -> list[Record]:
    return [(row, cells) for row, cells in read if any(cell.strip() for cell in cells)]


def _encode(text: str, encoding: Encoding) -> bytes:
    if encoding is Encoding.WINDOWS_1252:
        return text.encode("cp1252", errors="replace")
    return text.encode(encoding.value)


def _agrees_with_the_csv_module(
    text: str, encoding: Encoding, delimiter: str, options: dict[str, int]
) -> None:
    data = _encode(text, encoding)
    expected, open_quote = _oracle(data, encoding, delimiter)
    result = scan_records(io.BytesIO(data), delimiter, encoding=encoding, **options)
    assert (result.error is not None) == open_quote
    header = read_header(opener(data), encoding, delimiter)
    if result.error is not None:
        assert result.error == FileError(Code.FILE_01, FILE_01_OPEN_QUOTE)
        return
    decoded = io.StringIO(data.decode(encoding.value), newline="")
    assert header == next(csv.reader(decoded, DIALECTS[delimiter]), [])
    read = chunk_records(data, result, delimiter, encoding)
    assert _non_blank(read) == _non_blank(expected)
    by_row = dict(expected)
    assert all(by_row[row] == cells for row, cells in read)  # blank ones too
    assert [row for row, _ in read] == sorted(row for row, _ in read)
    assert result.records == len(expected)
    assert result.blank_records_skipped == len(expected) - len(read)
    position = result.header_end
    for chunk in result.chunks:
        assert chunk.records <= options["chunk_rows"]
        assert len(chunk.segments) <= options["chunk_segments"]
        assert chunk.size_bytes <= options["chunk_bytes"] or chunk.records == 1
        assert chunk.size_bytes == sum(end - start for start, end, _ in chunk.segments)
        for start, end, _ in chunk.segments:
            assert position <= start < end <= len(data)
            assert data[position:start].strip(b" \t\r\n" + delimiter.encode()) == b""
            position = end


_options = st.fixed_dictionaries(
    {
        "block_bytes": st.sampled_from([1, 2, 3, 5, 8, 64, 1 << 20]),
        "chunk_bytes": st.sampled_from([1, 16, 100, 1 << 22, 1 << 22]),
        "chunk_rows": st.sampled_from([1, 5, 20_000, 20_000]),
        "blank_run_bytes": st.sampled_from([1, 8, 64, 4096]),
        "chunk_segments": st.sampled_from([1, 2, 256]),
    }
)


_FIELDS = ["", " ", "\t", "a", "é€😀", 'x"y', '"q"', '"x\r\ny"', '"a""b"', '"q"z', '" \n"', '"']
_SEPARATORS = [",", ";"]
_LINE_ENDS = ["\r\n", "\n", "\r", ""]


def _text(max_tokens: int) -> st.SearchStrategy[str]:
    """Bytes of every kind mixed freely, or records made of fields (quoted, blank, with quotes
    inside) and runs of blank records, each ending in any line break or none."""
    tokens = st.sampled_from(_TOKENS) | st.sampled_from(_BLANK_RUNS)
    free = st.lists(tokens, max_size=max_tokens).map("".join)
    field_and_separator = st.tuples(st.sampled_from(_FIELDS), st.sampled_from(_SEPARATORS))
    record = st.tuples(
        st.lists(field_and_separator, min_size=1, max_size=4), st.sampled_from(_LINE_ENDS)
    ).map(lambda parts: "".join(field + sep for field, sep in parts[0])[:-1] + parts[1])
    blank_run = st.tuples(
        st.sampled_from(["", " ", ",", ";", " \t,"]),
        st.sampled_from(_LINE_ENDS[:3]),
        st.integers(1, 30),
    ).map(lambda parts: (parts[0] + parts[1]) * parts[2])
    records = st.lists(record | blank_run, max_size=max_tokens // 4).map("".join)
    return free | records


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=_text(60),
    encoding=st.sampled_from(list(Encoding)),
    delimiter=st.sampled_from([",", ";"]),
    options=_options,
)
def test_scanned_chunks_read_as_the_csv_module_reads_the_whole_file(
    text: str, encoding: Encoding, delimiter: str, options: dict[str, int]
) -> None:
    _agrees_with_the_csv_module(text, encoding, delimiter, options)


@pytest.mark.tier2
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=_text(400),
    encoding=st.sampled_from(list(Encoding)),
    delimiter=st.sampled_from([",", ";"]),
    options=_options,
)
def test_scanned_chunks_read_as_the_csv_module_reads_the_whole_file_at_length(
    text: str, encoding: Encoding, delimiter: str, options: dict[str, int]
) -> None:
    _agrees_with_the_csv_module(text, encoding, delimiter, options)


def _record_spans(data: bytes, delimiter: str) -> list[tuple[int, int]]:
    """Each record's bytes without its line break, found byte by byte (slow, independent of the
    scanner); the file must have no quote open at its end."""
    spans: list[tuple[int, int]] = []
    position, size, separator = 0, len(data), ord(delimiter)
    while position < size:
        start, field_start, quoted = position, True, False
        while position < size:
            byte = data[position]
            if quoted:
                if byte == ord('"') and data[position + 1 : position + 2] == b'"':
                    position += 2
                    continue
                quoted = byte != ord('"')
            elif byte in b"\r\n":
                spans.append((start, position))
                position += 2 if data[position : position + 2] == b"\r\n" else 1
                break
            else:
                quoted = field_start and byte == ord('"')
                field_start = byte == separator
            position += 1
        else:
            spans.append((start, size))
    return spans


_BALANCED = ['"a\r\nb"', '""', ",", ";", "\r", "\n", "\r\n", " ", "\t", "a", "é", 'x"y']


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(
        st.sampled_from(_BALANCED) | st.sampled_from(_BLANK_RUNS) | st.just(" " * 1000 + "\n"),
        max_size=40,
    ),
    delimiter=st.sampled_from([",", ";"]),
    block_bytes=st.sampled_from([1, 3, 16, 1 << 20]),
    blank_run_bytes=st.sampled_from([1, 16, 64]),
)
def test_every_long_run_of_blank_records_is_left_out_whole(
    parts: list[str], delimiter: str, block_bytes: int, blank_run_bytes: int
) -> None:
    data = ("h\r\n" + "".join(parts)).encode()
    result = scan(data, delimiter, block_bytes=block_bytes, blank_run_bytes=blank_run_bytes)
    assert result.error is None
    planned = {row for row, _ in chunk_records(data, result, delimiter)}
    records = _record_spans(data, delimiter)[1:]  # the data records: rows 2, 3, ...
    assert result.records == len(records)
    blank_line = re.compile(b"[ \t" + delimiter.encode() + b"]{0,999}")
    blank = [blank_line.fullmatch(data, start, end) is not None for start, end in records]
    starts = [start for start, _ in records] + [len(data)]
    index = 0
    while index < len(records):
        first = index
        while index < len(records) and blank[index]:
            index += 1
        # A run of blank records spans from its first record to the record after it.
        if index > first and starts[index] - starts[first] >= blank_run_bytes:
            assert planned.isdisjoint(range(first + 2, index + 2)), (first + 2, index + 2)
        index = max(index, first + 1)


# -- quoted records among quote-free lines, taken a step at a time ----------------------------


def _plan_record_by_record(
    monkeypatch: pytest.MonkeyPatch, data: bytes, delimiter: str, options: dict[str, int]
) -> ScanResult:
    """The plan without `_lines_with_quotes` and `_dense_records`: its quoted records one
    Python step each."""
    with monkeypatch.context() as patch:
        patch.setattr(record_scanner._Scanner, "_lines_with_quotes", lambda *_: False)
        patch.setattr(record_scanner._Scanner, "_dense_records", lambda *_: False)
        return scan(data, delimiter, **options)


_QUOTED_ROWS = [
    "a,b,c\r\n",
    '="1",b,c\r\n',
    '"=""1""",b,c\r\n',
    'a,"x\r\ny",c\r\n',
    'a,"x\ny\n\nz",c\r\n',
    'a,"' + " " * 40 + '\r\n\r\n",c\r\n',
    ",,\r\n",
    "\r\n",
    'a,b"c,d\r\n',
    "a," + "b" * 1200 + "\r\n",
    'a,"' + "b" * 1200 + '"\r\n',
    '"' + ",".join("x" * 1001) + '"\r\n',
    "a,b\n",
    'a,"b"\r',
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.sampled_from(_QUOTED_ROWS), max_size=80),
    delimiter=st.sampled_from([",", ";"]),
    options=_options,
)
def test_quoted_records_among_lines_give_the_record_by_record_plan(
    rows: list[str], delimiter: str, options: dict[str, int]
) -> None:
    """Taking a step of quote-free lines and short quoted records at once changes nothing:
    the plan is the one the record-by-record paths make, and it reads as the csv module."""
    data = ("h\r\n" + "".join(rows)).encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _plan_record_by_record(monkeypatch, data, delimiter, options)
    assert scan(data, delimiter, **options) == expected
    _agrees_with_the_csv_module(data.decode(), Encoding.UTF_8, delimiter, options)


def test_a_file_quoting_a_field_every_few_lines_is_planned_in_big_steps() -> None:
    rows = [f"r{i},b,c\r\n" if i % 7 else f'r{i},"x\r\ny",c\r\n' for i in range(30_000)]
    data = ("h\r\n" + "".join(rows)).encode()
    calls = 0
    original = record_scanner._Scanner._lines_with_quotes

    def counted(self: Any, *args: Any) -> bool:
        nonlocal calls
        calls += 1
        return original(self, *args)

    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _plan_record_by_record(monkeypatch, data, ",", {})
        monkeypatch.setattr(record_scanner._Scanner, "_lines_with_quotes", counted)
        result = scan(data, ",")
    assert result == expected
    assert [chunk.records for chunk in result.chunks] == [20_000, 10_000]
    assert calls < 30_000 // 7 // 10  # steps of many quoted records, not one each


# Rows as spreadsheets quote them (every other row), with the shapes they never write.
_DENSE_ROWS = [
    *_QUOTED_ROWS,
    'r,"PO 4471, cohort B"\r\n',
    'r,"said ""thanks"""\r\n',
    'r,"Passed, resit\r\nroom 4"\r\n',
    'r,"Smith, Jr",x\r\n',
    'r,2" pipe\r\n',
    'r,"PO 4471" cohort B\r\n',
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(st.just("r,plain\r\n"), st.sampled_from(_DENSE_ROWS)).map("".join),
        min_size=32,
        max_size=200,
    ),
    delimiter=st.sampled_from([",", ";"]),
    options=_options,
)
def test_a_file_quoting_every_other_line_gives_the_record_by_record_plan(
    rows: list[str], delimiter: str, options: dict[str, int]
) -> None:
    """Batches of records taken by one regex each (`_dense_records`) change nothing either."""
    data = ("h\r\n" + "".join(rows)).encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _plan_record_by_record(monkeypatch, data, delimiter, options)
    assert scan(data, delimiter, **options) == expected
    _agrees_with_the_csv_module(data.decode(), Encoding.UTF_8, delimiter, options)


def test_a_file_quoting_every_other_line_is_planned_in_batches() -> None:
    rows = [f"r{i},b,c\r\n" if i % 2 else f'r{i},"x, ""y""\r\nz",c\r\n' for i in range(30_000)]
    data = ("h\r\n" + "".join(rows)).encode()
    calls = 0
    original = record_scanner._Scanner._dense_records

    def counted(self: Any, *args: Any) -> bool:
        nonlocal calls
        calls += 1
        return bool(original(self, *args))

    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _plan_record_by_record(monkeypatch, data, ",", {})
        monkeypatch.setattr(record_scanner._Scanner, "_dense_records", counted)
        result = scan(data, ",")
    assert result == expected
    assert [chunk.records for chunk in result.chunks] == [20_000, 10_000]
    assert 0 < calls < 30_000 // 64  # batches of records, not one step each


def _dense_file(middle: str, rows: int = 400) -> bytes:
    """A file quoting a field every other line, with `middle` as the record in its middle."""
    lines = [f'r{i},"x, ""y""",c\r\n' if i % 2 else f"r{i},b,c\r\n" for i in range(rows)]
    lines[rows // 2] = middle
    return ("h\r\n" + "".join(lines)).encode()


def test_a_record_of_too_many_cells_among_dense_quotes_is_file_01() -> None:
    data = _dense_file(",".join("x" * 1001) + "\r\n")
    message = error_of(scan(data, ",")).message
    assert "row 202 " in message
    assert "1,000 cells" in message


def test_a_file_wider_than_a_batch_allows_is_planned_as_record_by_record() -> None:
    """Batches of 600-cell records hold more delimiters than one record may have: their cells
    are counted record by record (`_dense_records`), and the plan does not change."""
    wide = ",".join("c" * 600)
    rows = [f'{wide},"x, ""y""\r\nz"\r\n' if i % 2 else f"{wide}\r\n" for i in range(300)]
    data = ("h\r\n" + "".join(rows)).encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _plan_record_by_record(monkeypatch, data, ",", {})
    result = scan(data, ",")
    assert result == expected
    assert result.error is None
    assert result.records == 300
    _agrees_with_the_csv_module(data.decode(), Encoding.UTF_8, ",", _DEFAULT_OPTIONS)


_DEFAULT_OPTIONS = {
    "block_bytes": 1 << 20,
    "chunk_bytes": 1 << 22,
    "chunk_rows": 20_000,
    "blank_run_bytes": 4096,
    "chunk_segments": 256,
}
