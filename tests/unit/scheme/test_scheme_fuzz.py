"""Fuzzing the offline check: whatever the bytes, `check_file` gives a report, never a crash.

Any encoding (UTF-8 with and without a byte-order mark, Windows-1252, Latin-1, UTF-16, UTF-32,
bytes that are none of them), either delimiter or none, quotes balanced or not, `\\r`, `\\n` and
`\\r\\n`, control and bidirectional characters, spreadsheet damage (`="0123"`, `1.23457E+09`),
blank records, huge fields, huge records and very many columns. For each file:

- the report has a status the offline check can give, and counts and issues that agree with it
  (section 8: a rejected file has one file error, every count 0 and no issues);
- every issue and file error has one of the scheme's codes, with that code's severity and its
  message (messages never echo the file);
- the report serialises to the JSON of section 7;
- memory stays bounded: the Python heap's peak is far below what holding the file would take
  for the huge shapes (see `test_hostile_shapes_are_checked_in_bounded_memory`).

A hang trips the test's timeout. The quick properties run in the main suite; the `tier2` ones
(tens of thousands of examples) run after it. A failing example is kept as a regression file:
run with `SCHEME_FUZZ_KEEP=tests/unit/scheme/corpus/fuzz` and the bytes of every failing example
are written there (see `test_scheme_fuzz_corpus.py`, which replays that folder).
"""

from __future__ import annotations

import gc
import hashlib
import os
import tempfile
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from scheme_builders import HEADERS, UPLOAD_DATE, VALID, VALID_ULNS, csv_line

from services.core.scheme.bulk_rules import BulkValidator
from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import (
    FILE_CODES,
    MESSAGES,
    SEVERITY,
    Code,
    Policy,
    UploadStatus,
    damaged,
)
from services.core.scheme.columns import Column, HeaderMap, match_header
from services.core.scheme.file_inspection import DEFAULT_SIZE_LIMIT_BYTES
from services.core.scheme.outcome import DEFAULT_ROW_LIMIT, decide_status
from services.core.scheme.record_scanner import MAX_FIELD_CHARS, MAX_RECORD_BYTES, MAX_RECORD_CELLS
from services.core.scheme.reference import bundled_reference

REFERENCE = bundled_reference()
KEEP_VARIABLE: Final = "SCHEME_FUZZ_KEEP"
# What the offline check may answer (never `errored`, `received` or `validating`).
CHECK_STATUSES: Final = frozenset(
    {
        UploadStatus.REJECTED,
        UploadStatus.FAILED,
        UploadStatus.PARTIALLY_ACCEPTED,
        UploadStatus.PASSED_WITH_WARNINGS,
        UploadStatus.PASSED,
    }
)
ROW_CODES: Final = frozenset(Code) - set(FILE_CODES) - {Code.DUP_02}
ENCODINGS: Final = (
    "utf-8",
    "utf-8-sig",
    "cp1252",
    "latin-1",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
)
LINE_ENDS: Final = ("\r\n", "\n", "\r")
# Section 8: the bidirectional embedding, override and isolate characters.
BIDI_CONTROLS: Final = tuple(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
CONTROLS: Final = tuple(chr(c) for c in (*range(0x01, 0x20), 0x7F, *range(0x80, 0xA0)))
ODD_CHARACTERS: Final = (
    "\ufeff",  # a byte-order mark inside the text
    "\u200b",
    "\u00a0",
    "\u2028",
    "\u2029",
    "\u3000",
    "\ufdd0",  # a noncharacter
    "\U0001f600",
    "é",
    "ß",
    "Ω",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\uff11",  # FULLWIDTH DIGIT ONE
    "\ud800",  # a lone surrogate: invalid UTF-8 once encoded with surrogatepass
    '"',
    '""',
    ",",
    ";",
    "\r",
    "\n",
    "\r\n",
    " ",
    "\t",
    "|",
    "=",
    *BIDI_CONTROLS,
)
SPREADSHEET_DAMAGE: Final = (
    '="0123"',
    '="1000000043"',
    '="',
    '=""',
    '= "AB123456C" ',
    "1.23457E+09",
    "1.00E+09",
    "45306",
    "=SUM(A1:A9)",
    "+44 20",
    "-1",
    "@cmd",
    "#N/A",
    "#VALUE!",
)
# Values that pass or nearly pass some rule, so generated rows reach the row rules.
PLAUSIBLE: Final = (
    *VALID.values(),
    *VALID_ULNS,
    "9999999999",
    "1234567890",
    "AB123456C",
    "QQ123456C",
    "OO123456A",
    "AB123456E",
    "ABC12345",
    "SD-MSF-102",
    "SMSTS-R",
    "sd-wah-101",
    "NOPE-1",
    "31/02/2026",
    "2026-11-20",
    "2026-11-21",
    "1/1/2000",
    "01/01/1900",
    "79049946",
    "L1234567",
    "a/b-c",
    "",
    " ",
)
TEMPLATE_ROW: Final = tuple(VALID[header] for header in HEADERS)


# --- Strategies --------------------------------------------------------------------------------


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in `n` draws (integers would lean towards their bounds)."""
    return st.sampled_from([True] + [False] * (n - 1))


def _repeat(piece: str, count: int) -> str:
    return piece * count


cell_text = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(SPREADSHEET_DAMAGE),
    st.lists(st.sampled_from(ODD_CHARACTERS + CONTROLS), max_size=6).map("".join),
    st.text(max_size=12),
    st.tuples(st.sampled_from(PLAUSIBLE), st.sampled_from(ODD_CHARACTERS + CONTROLS)).map("".join),
    # Long values: past the column limits, and now and then past the field bound.
    st.builds(
        _repeat,
        st.sampled_from(["x", "é", "\n", '"', ",", " ", "\u202e"]),
        st.sampled_from([False] * 7 + [True]).flatmap(
            lambda huge: (
                st.sampled_from([MAX_FIELD_CHARS, MAX_FIELD_CHARS + 1])
                if huge
                else st.integers(50, 300)
            )
        ),
    ),
)


@st.composite
def written_cell(draw: st.DrawFn, value: st.SearchStrategy[str], delimiter: str) -> str:
    """A cell as a spreadsheet writes it, always quoted, or as is (which may break framing)."""
    text = draw(value)
    how = draw(st.sampled_from(["minimal"] * 6 + ["quoted", "raw"]))
    if how == "raw":
        return text
    if how == "quoted" or any(char in text for char in (delimiter, '"', "\r", "\n")):
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def record(draw: st.DrawFn, delimiter: str) -> str:
    """A data record: the template row with some cells changed, or any list of cells."""
    if draw(st.booleans()):
        cells = list(TEMPLATE_ROW)
        for index in draw(st.lists(st.integers(0, len(cells) - 1), max_size=4)):
            cells[index] = draw(cell_text)
        cells += draw(st.lists(cell_text, max_size=2))  # extra cells: ROW_01 when not empty
        if draw(one_in(10)):
            cells = cells[: draw(st.integers(0, len(cells)))]  # a short record, padded
    else:
        cells = draw(st.lists(cell_text, max_size=14))
    return delimiter.join(draw(written_cell(st.just(cell), delimiter)) for cell in cells)


def _spelled(header: str, style: int) -> str:
    """A header as a user may spell it; section 1 matches them all but the last style."""
    return [
        header,
        header.upper(),
        f"  {header.lower()} ",
        "_".join(header),
        header.replace("Learner", "Learner "),
        header + "x",
    ][style]


@st.composite
def header_row(draw: st.DrawFn, delimiter: str) -> str:
    kind = draw(st.sampled_from(range(10)))
    if kind <= 5:
        headers = list(HEADERS)
    elif kind == 6:
        headers = list(draw(st.permutations(HEADERS)))
    elif kind == 7:
        headers = [_spelled(h, draw(st.integers(0, 5))) for h in HEADERS]
    elif kind == 8:
        headers = list(HEADERS)
        for _ in range(draw(st.integers(1, 3))):
            change = draw(st.sampled_from(["drop", "duplicate", "add", "empty"]))
            at = draw(st.integers(0, len(headers) - 1))
            if change == "drop" and len(headers) > 1:
                del headers[at]
            elif change == "duplicate":
                headers.insert(at, headers[at])
            elif change == "add":
                headers.insert(at, draw(cell_text))
            else:
                headers.insert(at, "")
        headers += [""] * draw(st.integers(0, 2))  # trailing empty cells are ignored
    else:
        headers = draw(st.lists(cell_text, max_size=12))
    return delimiter.join(draw(written_cell(st.just(h), delimiter)) for h in headers)


blank_record = st.builds(
    _repeat, st.sampled_from(["", ",", ";", " ", "\t", ", ,", '""', '"",""']), st.integers(0, 12)
)


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    # Hypothesis leans towards both ends of a list: the template's delimiter sits at both.
    delimiter = draw(st.sampled_from([",", ";", ",", "\t", ",", "|", ",", ";", ","]))
    ends = draw(st.sampled_from([[end] for end in LINE_ENDS] + [list(LINE_ENDS)]))
    lines = [draw(header_row(delimiter))]
    for _ in range(draw(st.sampled_from(range(9)))):
        lines.append(draw(record(delimiter) | blank_record))
    text = "".join(line + draw(st.sampled_from(ends)) for line in lines)
    if draw(one_in(5)):
        text = text.rstrip("\r\n")  # no line break after the last record
    return text


@st.composite
def rows_file(draw: st.DrawFn) -> bytes:
    """The template header and 1 to 12 records, as a spreadsheet could save them: files that
    reach the row rules."""
    delimiter = draw(st.sampled_from([",", ";"]))
    end = draw(st.sampled_from(LINE_ENDS))
    header = delimiter.join(HEADERS)
    lines = [header, *draw(st.lists(record(delimiter) | blank_record, min_size=1, max_size=12))]
    text = "".join(line + end for line in lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    return text.encode(encoding, "surrogatepass" if encoding != "cp1252" else "replace")


@st.composite
def encoded(draw: st.DrawFn, text: st.SearchStrategy[str]) -> bytes:
    value = draw(text)
    # Mostly what spreadsheets write, so that most files reach the row rules.
    encoding = draw(
        st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "cp1252"] * 2) | st.sampled_from(ENCODINGS)
    )
    errors = "surrogatepass" if encoding.startswith("utf-8") else "replace"
    try:
        return value.encode(encoding, errors)
    except UnicodeEncodeError:  # a lone surrogate in UTF-16/32: no such text on a disk
        return value.encode(encoding, "replace")


# Byte damage after encoding: what a broken export, a transfer or an attacker adds.
damage_bytes = st.one_of(
    st.sampled_from(
        [
            b"\x00",
            b"\xff",
            b"\xfe",
            b"\x81",
            b"\x8d",
            b"\xc3",
            b"\xe2\x80",
            b"\xef\xbb\xbf",
            b"\xff\xfe",
            b"PK\x03\x04",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            b'"',
            b"\r",
            b"\n",
            b"\x1a",
        ]
    ),
    st.binary(min_size=1, max_size=8),
)


@st.composite
def damaged_bytes(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> bytes:
    result = bytearray(draw(data))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(result)))
        result[at:at] = draw(damage_bytes)
    if result and draw(one_in(6)):
        del result[draw(st.integers(0, len(result) - 1)) :]  # a truncated transfer
    if draw(one_in(8)):
        result[0:0] = draw(st.sampled_from([b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"\xef\xbb\xbf"]))
    return bytes(result)


HEADER_BYTES: Final = ",".join(HEADERS).encode()
VALID_RECORD_BYTES: Final = ",".join(TEMPLATE_ROW).encode()


def _line_end() -> st.SearchStrategy[bytes]:
    return st.sampled_from([b"\r\n", b"\n", b"\r"])


def _shape(
    build: Callable[..., bytes], *parts: st.SearchStrategy[object]
) -> st.SearchStrategy[bytes]:
    return st.builds(build, *parts)


# The shapes of issue 9's hostile files, scaled to a few MB at most: a file of line breaks, of
# empty records, one record of quoted cells holding line breaks, wide rows, a huge header, very
# many columns, a huge field, a quote never closed, a valid file with blank records between rows.
hostile_shape = st.one_of(
    _shape(lambda end, n: end * n, _line_end(), st.integers(0, 2_000_000)),
    _shape(
        lambda end, cells, n: HEADER_BYTES + end + (b"," * cells + end) * n,
        _line_end(),
        st.integers(0, 12),
        st.integers(0, 200_000),
    ),
    _shape(
        lambda end, n, close: HEADER_BYTES + end + b'"a\nb",' * n + (end if close else b""),
        _line_end(),
        st.integers(1, 400_000),
        st.booleans(),
    ),
    _shape(
        lambda end, width, rows: HEADER_BYTES + end + (b"x" * width + end) * rows,
        _line_end(),
        st.sampled_from([999, 1000, MAX_RECORD_BYTES - 1, MAX_RECORD_BYTES, MAX_RECORD_BYTES + 1]),
        st.integers(1, 3),
    ),
    _shape(
        lambda end, cells: b"h," * cells + b"h" + end + VALID_RECORD_BYTES + end,
        _line_end(),
        st.integers(MAX_RECORD_CELLS - 2, 70_000),
    ),
    _shape(
        lambda end, cells, quoted: HEADER_BYTES + end + (b'"",' if quoted else b",") * cells + end,
        _line_end(),
        st.one_of(
            st.integers(MAX_RECORD_CELLS - 12, MAX_RECORD_CELLS + 2),
            st.integers(MAX_RECORD_CELLS, 1_100_000),
        ),
        st.booleans(),
    ),
    _shape(
        lambda end, size, char: (
            HEADER_BYTES
            + end
            + b'R1,"'
            + char * size
            + b'"'
            + VALID_RECORD_BYTES[VALID_RECORD_BYTES.index(b",") :]
            + end
        ),
        _line_end(),
        st.integers(MAX_FIELD_CHARS - 2, MAX_FIELD_CHARS + 2),
        st.sampled_from([b"x", b"\n", b"\xc3\xa9", b'""']),
    ),
    _shape(
        lambda end, rows: HEADER_BYTES + end + (VALID_RECORD_BYTES + end) * rows + b'"open' + end,
        _line_end(),
        st.integers(0, 3),
    ),
    _shape(
        lambda end, rows, blanks: (
            HEADER_BYTES + end + (VALID_RECORD_BYTES + end + (b",,,," + end) * blanks) * rows
        ),
        _line_end(),
        st.integers(1, 20),
        st.integers(0, 5000),
    ),
    _shape(
        lambda prefix, size: prefix + bytes(range(256)) * size,
        st.sampled_from([b"", b"PK\x03\x04", b"\xff\xfe", b"\xef\xbb\xbf"]),
        st.integers(0, 4),
    ),
)

# Weighted towards text a spreadsheet could write, so that most files reach the row rules.
any_file = st.one_of(
    rows_file(),
    encoded(csv_text()),
    rows_file(),
    encoded(csv_text()),
    damaged_bytes(encoded(csv_text())),
    st.binary(max_size=600),
    damaged_bytes(
        st.builds(lambda n: HEADER_BYTES + b"\r\n" + b"\xff,\x00" * n, st.integers(0, 9))
    ),
)


# --- The invariants ----------------------------------------------------------------------------


def _keep_failure(data: bytes) -> None:
    """With SCHEME_FUZZ_KEEP set, a failing example's bytes are written to that folder, named by
    their hash, for `test_scheme_fuzz_corpus.py` to replay."""
    folder = os.environ.get(KEEP_VARIABLE)
    if folder:
        path = Path(folder) / f"fuzz-{hashlib.sha256(data).hexdigest()[:16]}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def assert_sound(report: CheckReport, policy: Policy, row_limit: int = DEFAULT_ROW_LIMIT) -> None:
    """What any report of the offline check must satisfy, whatever the file."""
    assert report.status in CHECK_STATUSES
    counts = (report.rows_total, report.rows_valid, report.rows_invalid, report.rows_warned)
    if report.status is UploadStatus.REJECTED:
        assert len(report.file_errors) == 1
        error = report.file_errors[0]
        assert error.code in FILE_CODES
        assert error.code not in (Code.FILE_07,)  # needs the database
        assert error.message
        assert counts == (0, 0, 0, 0)
        assert report.issues == []
    else:
        assert report.file_errors == []
        assert report.encoding is not None
        assert 0 < report.rows_total <= row_limit
        assert report.rows_valid + report.rows_invalid == report.rows_total
        assert 0 <= report.rows_warned <= report.rows_valid
        expected = decide_status(
            policy, report.rows_total, report.rows_invalid, report.rows_warned, None
        )
        assert report.status is expected
        invalid_rows = set()
        for issue in report.issues:
            assert issue.code in ROW_CODES
            assert issue.severity is SEVERITY[issue.code]
            assert issue.row >= 2
            if issue.column is None:
                assert issue.code in (Code.ID_01, Code.ROW_01, Code.DUP_01)
                assert issue.message == MESSAGES[issue.code]
            else:
                assert issue.column in set(Column)
                assert issue.message in (MESSAGES[issue.code], damaged(issue.column.value))
            if issue.severity.value == "error":
                invalid_rows.add(issue.row)
        assert len(invalid_rows) == report.rows_invalid
        keys = [(issue.row, issue.code) for issue in report.issues]
        assert [row for row, _ in keys] == sorted(row for row, _ in keys)
    report.to_json()  # the JSON of section 7 can always be written


# One folder for the whole run (removed at exit): a folder per example costs more than most
# checks.
_SCRATCH = tempfile.TemporaryDirectory(prefix="scheme-fuzz-")


@contextmanager
def _scratch_file(data: bytes) -> Iterator[Path]:
    path = Path(_SCRATCH.name) / "fuzz.csv"
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.unlink()


def check_bytes(
    data: bytes,
    policy: Policy = Policy.ALL_OR_NOTHING,
    *,
    size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> CheckReport:
    """`check_file` on the bytes, with the invariants asserted (and the bytes kept on failure)."""
    try:
        with _scratch_file(data) as path:
            report = check_file(
                path,
                today=UPLOAD_DATE,
                policy=policy,
                reference=REFERENCE,
                size_limit_bytes=size_limit_bytes,
                row_limit=row_limit,
            )
        assert_sound(report, policy, row_limit)
    except BaseException:
        _keep_failure(data)
        raise
    # Shown by --hypothesis-show-statistics: how far into the rules the examples get.
    if currently_in_test_context():
        event(report.file_errors[0].code.value if report.file_errors else report.status.value)
    return report


# Mostly the defaults; now and then limits small enough to reach FILE_03 and FILE_05.
limits = st.sampled_from([False] * 9 + [True]).flatmap(
    lambda small: (
        st.just((DEFAULT_SIZE_LIMIT_BYTES, DEFAULT_ROW_LIMIT))
        if not small
        else st.tuples(st.sampled_from([0, 1, 64, 4096]), st.sampled_from([1, 2, 5]))
    )
)

FUZZ_SETTINGS: Final = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
}


def _check_any(data: bytes, policy: Policy, limit: tuple[int, int]) -> None:
    size_limit_bytes, row_limit = limit
    check_bytes(data, policy, size_limit_bytes=size_limit_bytes, row_limit=row_limit)


# --- The properties ----------------------------------------------------------------------------


@pytest.mark.timeout(240)
@settings(max_examples=200, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(data=any_file, policy=st.sampled_from(list(Policy)), limit=limits)
def test_any_bytes_give_a_sound_report(data: bytes, policy: Policy, limit: tuple[int, int]) -> None:
    _check_any(data, policy, limit)


@pytest.mark.timeout(240)
@settings(max_examples=30, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(data=damaged_bytes(hostile_shape) | hostile_shape, policy=st.sampled_from(list(Policy)))
def test_hostile_shapes_give_a_sound_report(data: bytes, policy: Policy) -> None:
    check_bytes(data, policy)


# Ten runs of 1,000 examples rather than one of 10,000: Hypothesis keeps every example's
# choices for the length of a run, which grows to gigabytes over 10,000 of these files.
TIER2_SHARDS: Final = 10


@pytest.mark.tier2
@pytest.mark.timeout(600)
@pytest.mark.parametrize("shard", range(TIER2_SHARDS))
@settings(max_examples=1_000, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(
    data=st.one_of(any_file, any_file, any_file, any_file, any_file, any_file, hostile_shape),
    policy=st.sampled_from(list(Policy)),
    limit=limits,
)
def test_any_bytes_give_a_sound_report_at_length(
    shard: int, data: bytes, policy: Policy, limit: tuple[int, int]
) -> None:
    _check_any(data, policy, limit)


# Far below what holding any of these files whole (as text, or as cells) would take.
MAX_TRACED_PEAK_BYTES: Final = 48 * 1024 * 1024


@pytest.mark.timeout(240)
@settings(max_examples=12, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(data=hostile_shape)
def test_hostile_shapes_are_checked_in_bounded_memory(data: bytes) -> None:
    with _scratch_file(data) as path:
        tracemalloc.start()
        try:
            report = check_file(path, today=UPLOAD_DATE, reference=REFERENCE)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert_sound(report, Policy.ALL_OR_NOTHING)
    assert peak < MAX_TRACED_PEAK_BYTES, f"{peak:,} bytes traced for a {len(data):,}-byte file"


def test_a_bulk_validator_is_freed_once_dropped() -> None:
    """Found by the tier2 fuzz: the process grew by about 370 KB per file validated."""
    header = match_header(HEADERS)
    assert isinstance(header, HeaderMap)
    validator = BulkValidator(header, UPLOAD_DATE, REFERENCE, values=False)
    alive = weakref.ref(validator)
    del validator
    gc.collect()
    assert alive() is None


# --- Names with bidirectional controls (section 8) --------------------------------------------

_NAME_TEXT = st.text(
    alphabet=st.characters(categories=["Lu", "Ll", "Zs", "Mn"], include_characters="'-. "),
    max_size=20,
)


@st.composite
def bidi_name(draw: st.DrawFn) -> str:
    """A name with at least one embedding, override or isolate character somewhere in it."""
    pieces = [draw(_NAME_TEXT)]
    for _ in range(draw(st.integers(1, 3))):
        pieces += [draw(st.sampled_from(BIDI_CONTROLS)), draw(_NAME_TEXT)]
    return "".join(pieces)


@pytest.mark.timeout(240)
@settings(max_examples=200, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(
    name=bidi_name(),
    column=st.sampled_from([Column.LEARNER_FORENAME, Column.LEARNER_SURNAME]),
    other=st.sampled_from(["Amelia", "Hartley", "Zoë", "O'Neill"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig"]),
    end=st.sampled_from(LINE_ENDS),
)
def test_a_name_with_a_bidirectional_control_is_name_01_or_name_02(
    name: str, column: Column, other: str, encoding: str, end: str
) -> None:
    row = dict(VALID)
    row[Column.LEARNER_FORENAME.value] = other
    row[Column.LEARNER_SURNAME.value] = other
    row[column.value] = name
    text = csv_line(HEADERS) + end + csv_line([row[h] for h in HEADERS]) + end
    report = check_bytes(text.encode(encoding))
    expected = Code.NAME_01 if column is Column.LEARNER_FORENAME else Code.NAME_02
    assert report.status is UploadStatus.FAILED
    assert [(issue.column, issue.code) for issue in report.issues] == [(column, expected)]


def test_every_bidirectional_control_of_section_8_is_refused_in_a_name() -> None:
    for char in BIDI_CONTROLS:
        for column, code in (
            (Column.LEARNER_FORENAME, "NAME_01"),
            (Column.LEARNER_SURNAME, "NAME_02"),
        ):
            row = dict(VALID, **{column.value: f"Am{char}elia"})
            text = csv_line(HEADERS) + "\r\n" + csv_line([row[h] for h in HEADERS]) + "\r\n"
            report = check_bytes(text.encode())
            assert [issue.code.value for issue in report.issues] == [code], hex(ord(char))
