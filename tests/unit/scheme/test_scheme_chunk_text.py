"""A chunk read as UTF-8 bytes (`read_chunk_bytes`, `BulkValidator.bulk_bytes`) gives the bulk
pass exactly what the csv module's records give it (`read_chunk`, `BulkValidator.bulk`)."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheme_builders import HEADERS, UPLOAD_DATE, VALID_ULNS, cells, csv_line, template_header_map

from services.core.scheme.bulk_rules import BulkResult, BulkValidator
from services.core.scheme.check import check_file
from services.core.scheme.codes import Code
from services.core.scheme.columns import HeaderMap, match_header
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import (
    SegmentBytes,
    quoted_records,
    read_chunk,
    read_chunk_bytes,
    scan_records,
)
from services.core.scheme.records import Opener
from services.core.scheme.reference import bundled_reference

_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def _opener(data: bytes) -> Opener:
    def open_binary() -> io.BytesIO:
        return io.BytesIO(data)

    return open_binary


def _both(
    data: bytes,
    header: HeaderMap,
    *,
    delimiter: str = ",",
    encoding: Encoding = Encoding.UTF_8,
    chunk_rows: int = 7,
) -> list[tuple[BulkResult, BulkResult]]:
    """Each planned chunk through `bulk` (records) and through `bulk_bytes` (UTF-8 bytes), one
    validator for each way, as a check runs them."""
    open_binary = _opener(data)
    scan = scan_records(open_binary(), delimiter, encoding=encoding, chunk_rows=chunk_rows)
    assert scan.error is None
    by_records = BulkValidator(header, UPLOAD_DATE, bundled_reference())
    by_bytes = BulkValidator(header, UPLOAD_DATE, bundled_reference())
    results = []
    for chunk in scan.chunks:
        records = read_chunk(open_binary, encoding, delimiter, chunk.segments)
        segments_bytes = read_chunk_bytes(open_binary, encoding, chunk.segments)
        results.append((by_records.bulk(records), by_bytes.bulk_bytes(segments_bytes, delimiter)))
    return results


def _assert_same(
    data: bytes,
    header: HeaderMap,
    *,
    delimiter: str = ",",
    encoding: Encoding = Encoding.UTF_8,
    chunk_rows: int = 7,
) -> None:
    results = _both(data, header, delimiter=delimiter, encoding=encoding, chunk_rows=chunk_rows)
    for expected, got in results:
        assert got.valid.equals(expected.valid)
        assert got.exact == expected.exact
        assert (got.records, got.rows_blank) == (expected.records, expected.rows_blank)
        rows = expected.valid["row_number"].to_list() + [row for row, _ in expected.exact]
        assert got.cells_of(rows) == expected.cells_of(rows)
        assert len(got.cells_of(rows)) == len(rows)


def _file(lines: list[str], line_break: str = "\r\n", header: str | None = None) -> bytes:
    header_line = header if header is not None else ",".join(HEADERS)
    return (header_line + line_break + "".join(line + line_break for line in lines)).encode()


def _row(**changes: str) -> str:
    return csv_line(cells(**changes))


class TestLines:
    def test_quote_free_lines_are_records_split_at_the_delimiter(self) -> None:
        rows = [_row(ULN=uln) for uln in VALID_ULNS[:4]]
        _assert_same(_file(rows), template_header_map())

    def test_a_quoted_field_across_lines_is_one_record_and_the_rows_after_it_count_on(
        self,
    ) -> None:
        rows = [
            _row(ULN=VALID_ULNS[0]),
            _row(ULN=VALID_ULNS[1], Notes="Passed\r\nresit\nbooked"),
            _row(ULN=VALID_ULNS[2]),
            _row(ULN=f'="{VALID_ULNS[3]}"'),
            _row(ULN=VALID_ULNS[4], ProviderReference='a "quoted" ref, with a comma'),
            _row(ULN=VALID_ULNS[5]),
        ]
        _assert_same(_file(rows), template_header_map(), chunk_rows=100)

    def test_a_quote_inside_an_unquoted_field_is_an_ordinary_character(self) -> None:
        rows = [_row(ProviderReference='AB"C'), _row(ULN=VALID_ULNS[1]), 'x,y"z,"w\r\nv",u']
        _assert_same(_file(rows), template_header_map(), chunk_rows=100)

    def test_short_long_and_blank_lines(self) -> None:
        rows = [
            _row(),
            "a,b",
            "",
            ",,,,,,,,,,",
            _row(ULN=VALID_ULNS[1]) + ",,  ,",
            _row(ULN=VALID_ULNS[2]) + ",stray",
            _row(ULN=VALID_ULNS[3]) + ',"quoted stray"',
            "   ",
        ]
        _assert_same(_file(rows), template_header_map(), chunk_rows=100)

    def test_line_breaks_of_each_kind(self) -> None:
        rows = [_row(ULN=uln) for uln in VALID_ULNS[:3]]
        for line_break in ("\n", "\r\n", "\r"):
            _assert_same(_file(rows, line_break), template_header_map())
        mixed = _file(rows[:1], "\r") + _file(rows[1:], "\n", header=rows[0])
        _assert_same(mixed, template_header_map(), chunk_rows=100)

    def test_the_last_record_without_a_line_break(self) -> None:
        data = _file([_row(), _row(ULN=VALID_ULNS[1])])[:-2]
        _assert_same(data, template_header_map())
        quoted_last = _file([_row(), _row(ULN=VALID_ULNS[1], Notes="a\nb")])[:-2]
        _assert_same(quoted_last, template_header_map())

    def test_a_long_blank_run_leaves_segments_apart(self) -> None:
        rows = [_row(), *[""] * 3000, _row(ULN=VALID_ULNS[1]), *[",,"] * 3000, _row(Notes="x\ny")]
        _assert_same(_file(rows), template_header_map(), chunk_rows=10_000)

    def test_semicolons_and_columns_in_another_order(self) -> None:
        order = list(reversed(HEADERS))
        header = match_header(order)
        assert isinstance(header, HeaderMap)
        values = dict(zip(HEADERS, cells(Notes="one; two"), strict=True))
        row = csv_line([values[name] for name in order], ";")
        data = (";".join(order) + "\r\n" + row + "\r\n" + row.replace("one", "1") + "\r\n").encode()
        _assert_same(data, header, delimiter=";")

    def test_windows_1252_text(self) -> None:
        rows = [_row(LearnerForename="Zoë"), _row(ULN=VALID_ULNS[1], Notes="café\r\nbar")]
        data = "".join(line + "\r\n" for line in [",".join(HEADERS), *rows]).encode("cp1252")
        _assert_same(data, template_header_map(), encoding=Encoding.WINDOWS_1252)

    def test_an_empty_chunk_list(self) -> None:
        validator = BulkValidator(template_header_map(), UPLOAD_DATE, bundled_reference())
        result = validator.bulk_bytes([], ",")
        assert (result.records, result.rows_valid, result.exact) == (0, 0, [])

    def test_bytes_with_a_lone_cr_are_read_by_the_csv_module(self) -> None:
        """A CR that is not part of a CR LF, anywhere in the bytes, or at their end."""
        header = template_header_map()
        validator = BulkValidator(header, UPLOAD_DATE, bundled_reference())
        row, other = _row(), _row(ULN=VALID_ULNS[1])
        for data in (
            f"{row}\r{other}\r\n".encode(),
            f"{row}\r\n{other}\r".encode(),
            f"{row}\r\r\n{other}\n".encode(),
            f"{row}\n{other}\r".encode(),
        ):
            got = validator.bulk_bytes([SegmentBytes(data, 2)], ",")
            expected = BulkValidator(header, UPLOAD_DATE, bundled_reference()).bulk(
                read_chunk(_opener(data), Encoding.UTF_8, ",", [(0, len(data), 2)])
            )
            assert got.valid.equals(expected.valid)
            assert got.exact == expected.exact
            assert (got.records, got.rows_blank) == (expected.records, expected.rows_blank)

    def test_a_byte_order_mark_at_the_start_is_left_out_of_the_bytes(self) -> None:
        data = b"\xef\xbb\xbf" + _file([_row()])
        (segment,) = read_chunk_bytes(_opener(data), Encoding.UTF_8_SIG, [(0, len(data), 1)])
        assert segment == SegmentBytes(data[3:], 1)


class TestQuotedRecords:
    def test_records_from_the_lines_holding_a_quote(self) -> None:
        text = 'a,b\n"c\nd",e\nf,"g"\nh\n'
        # (line, offset) of the lines with a quote: "c, d", f,"g"
        found = quoted_records(text, ",", [(1, 4), (2, 7), (3, 12)])
        assert found == [(1, 2, ["c\nd", "e"]), (3, 1, ["f", "g"])]


_ALPHABET = st.sampled_from([*'abc ,;"=\r\n\t1é', "\u00a0", "\u2028"])


@given(
    texts=st.lists(st.text(_ALPHABET, max_size=30), min_size=1, max_size=25),
    line_break=st.sampled_from(["\r\n", "\n", "\r"]),
    chunk_rows=st.integers(min_value=1, max_value=9),
)
@settings(max_examples=300, **_SETTINGS)  # type: ignore[arg-type]
def test_any_text_gives_the_same_bulk_result(
    texts: list[str], line_break: str, chunk_rows: int
) -> None:
    """Lines of any characters that matter to CSV (an unparseable file is left out)."""
    data = (",".join(HEADERS) + line_break + line_break.join(texts)).encode()
    scan = scan_records(io.BytesIO(data), ",", encoding=Encoding.UTF_8, chunk_rows=chunk_rows)
    if scan.error is None:
        _assert_same(data, template_header_map(), chunk_rows=chunk_rows)


@given(seed=st.integers(min_value=0, max_value=2**32 - 1), size=st.integers(1, 60))
@settings(max_examples=60, **_SETTINGS)  # type: ignore[arg-type]
def test_rows_like_real_files_give_the_same_bulk_result(seed: int, size: int) -> None:
    """Valid rows, damaged rows, quoted cells, line breaks in notes, blank and stray cells."""
    rng = random.Random(seed)
    changes = [
        {},
        {"ULN": f'="{VALID_ULNS[1]}"'},
        {"Notes": "Passed\r\nresit"},
        {"Notes": 'said "fine", then left'},
        {"LearnerForename": "  Zoë "},
        {"ULN": "1234 567 899"},
        {"ULN": "12345"},
        {"CourseCode": "sd-wah-101"},
        {"AchievementDate": "2026-11-12"},
        {"DateOfBirth": "31/02/1990"},
    ]
    lines = []
    for _ in range(size):
        kind = rng.random()
        if kind < 0.05:
            lines.append("")
        elif kind < 0.1:
            lines.append(_row() + ",extra")
        else:
            lines.append(_row(**rng.choice(changes)))
    _assert_same(_file(lines), template_header_map(), chunk_rows=rng.randint(1, 30))


def test_the_check_counts_the_rows_of_quoted_records(tmp_path: Path) -> None:
    """Rows after a record of several lines keep their numbers in the check's issues."""
    path = tmp_path / "x.csv"
    rows = [_row(), _row(ULN=VALID_ULNS[1], Notes="a\nb\nc"), _row(ULN="12345")]
    path.write_bytes(_file(rows))
    report = check_file(path, today=UPLOAD_DATE)
    assert (report.rows_total, report.rows_valid) == (3, 2)
    assert [(issue.row, issue.code) for issue in report.issues] == [(4, Code.ULN_01)]


class TestQuotedRecordsInPolars:
    """Records in the shape spreadsheets write never reach the csv module; every other shape
    does, counted by reason, and reads the same."""

    @staticmethod
    def _fallbacks(data: bytes, delimiter: str = ",") -> dict[str, int]:
        validator = BulkValidator(template_header_map(), UPLOAD_DATE, bundled_reference())
        validator.bulk_bytes([SegmentBytes(data, 2)], delimiter)
        return dict(validator.fallbacks)

    def test_cells_quoted_as_spreadsheets_quote_them_stay_in_polars(self) -> None:
        rows = [
            _row(Notes="PO 4471, cohort B"),
            _row(ULN=VALID_ULNS[1], Notes='said "thanks"'),
            _row(ULN=VALID_ULNS[2], Notes="Passed, resit booked\r\nroom 4"),
            _row(ULN=VALID_ULNS[3], LearnerSurname="Smith, Jr", Notes='a\n"b"\n\nc'),
            _row(ULN=VALID_ULNS[4], Notes='""'),
            _row(ULN=VALID_ULNS[5]),
        ]
        data = _file(rows)
        _assert_same(data, template_header_map(), chunk_rows=100)
        assert self._fallbacks(data.split(b"\r\n", 1)[1]) == {}
        result = BulkValidator(template_header_map(), UPLOAD_DATE, bundled_reference()).bulk_bytes(
            [SegmentBytes(data.split(b"\r\n", 1)[1], 2)], ","
        )
        assert result.cells_of([4, 5])[4][10] == "Passed, resit booked\r\nroom 4"
        assert result.cells_of([5])[5][4:5] == ["Smith, Jr"]
        assert result.valid["row_number"].to_list() == [2, 3, 4, 5, 6, 7]

    def test_other_shapes_go_to_the_csv_module_counted_by_reason(self) -> None:
        stray = _row(ULN=VALID_ULNS[1], Notes="N").replace(",N", ',2" pipe', 1)
        after_quote = _row(ULN=VALID_ULNS[2]) + ',"x" y'
        short = '"a, b",c'
        lines = [_row(), stray, after_quote, short, _row(ULN=VALID_ULNS[3])]
        data = "".join(line + "\r\n" for line in lines).encode()
        _assert_same(_file(lines), template_header_map(), chunk_rows=100)
        assert self._fallbacks(data) == {"quote_shape": 2, "quoted_cell_count": 1}

    def test_a_record_of_several_lines_outside_the_shape_reads_the_rest_the_old_way(
        self,
    ) -> None:
        # Text after a closing quote on the record's second line: outside the strict shape,
        # so the rest of the segment is read as before.
        odd = 'x,"a\r\nb"c,e'
        lines = [_row(), odd, _row(ULN=VALID_ULNS[1], Notes="p, q"), _row(ULN=VALID_ULNS[2])]
        data = "".join(line + "\r\n" for line in lines).encode()
        _assert_same(_file(lines), template_header_map(), chunk_rows=100)
        assert self._fallbacks(data) == {"after_misread_record": 2}

    def test_a_lone_cr_is_counted(self) -> None:
        data = f"{_row()}\r{_row(ULN=VALID_ULNS[1])}\r\n".encode()
        assert self._fallbacks(data) == {"lone_return": 2}

    def test_semicolons(self) -> None:
        order = list(HEADERS)
        values = cells(Notes="one; two", LearnerSurname="Smith, Jr")
        row = csv_line(values, ";")
        data = (row + "\r\n" + row.replace("one", "1") + "\r\n").encode()
        assert self._fallbacks(data, ";") == {}
        header = match_header(order)
        assert isinstance(header, HeaderMap)
        _assert_same((";".join(order) + "\r\n").encode() + data, header, delimiter=";")


def test_the_check_adds_up_the_records_left_to_the_csv_module(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    stray = _row(ULN=VALID_ULNS[1], Notes="N").replace(",N", ',2" pipe', 1)
    path.write_bytes(_file([_row(Notes="a, b"), stray, _row(ULN=VALID_ULNS[2], Notes='"x"')]))
    fallbacks: Counter[str] = Counter()
    report = check_file(path, today=UPLOAD_DATE, fallbacks=fallbacks)
    assert (report.rows_total, report.rows_valid) == (3, 3)
    assert fallbacks == {"quote_shape": 1}
