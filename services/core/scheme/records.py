"""The layout of a stored file (its delimiter and header), and its records in one stream.

Python's `csv` module (C, fast) does the RFC 4180 work with `strict=False`: a quoted field may
hold delimiters, `""` and line breaks; a `"` inside an unquoted field is an ordinary character.
The header row decides the delimiter (section 8 "Semicolons"); up to 10 guidance or blank
records may stand before it (section 9). They are read through the record scanner
(`record_scanner`), so no record, however hostile, is held beyond the bounds of one record.

Records are read through `record_scanner`: one scan checks the bounds of section 8 and plans
chunks that any process can read on its own. `RecordReader` is the plain one-pass reading of
the whole file by the csv module, kept as the reference the scanner is tested against. In
non-strict mode the csv module silently accepts a quoted field still open at the end of the
file, which the scheme calls unparseable (FILE_01): a sentinel line is chained after the file;
if the parser is between records it becomes a record of its own; if a quoted field is open it is
swallowed into that field. Only the final record is inspected, so this costs nothing per row.
Run `FileInspector` first: it guarantees the encoding and that no line is absurdly long (the
csv module also caps a field at `csv.field_size_limit()` characters; passing it is FILE_01 too).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from services.core.scheme.codes import (
    FILE_01_OPEN_QUOTE,
    FILE_01_TOO_LONG,
    GUIDANCE_MARK,
    MAX_RECORDS_BEFORE_HEADER,
    Code,
    FileError,
    rows_above_header_message,
    too_many_rows_above_header_message,
)
from services.core.scheme.columns import HeaderMap, match_header
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import DIALECTS as _DIALECTS
from services.core.scheme.record_scanner import HEADER_ROW as HEADER_ROW
from services.core.scheme.record_scanner import Opener as Opener
from services.core.scheme.record_scanner import Record as Record
from services.core.scheme.record_scanner import read_leading_records
from services.core.scheme.text import trim

# A noncharacter then a quote: as a record of its own it is exactly this one cell; swallowed by
# an open quoted field, the quote closes that field and the record ends with _SENTINEL_CHAR.
_SENTINEL_CHAR: Final = "\ufdd0"
_SENTINEL_LINE: Final = _SENTINEL_CHAR + '"'
_SENTINEL_RECORD: Final = [_SENTINEL_LINE]


def path_opener(path: Path | str) -> Opener:
    def open_binary() -> IO[bytes]:
        return open(path, "rb")

    return open_binary


@dataclass(frozen=True, slots=True)
class Layout:
    """How to read the records: the delimiter, the header map or the FILE_04 error, and the
    header's row number (above 1 when guidance or blank records stand before it, section 9).

    A FILE_04 here is provisional: an unparseable file (FILE_01) ranks above it, and that is
    only known once the records have been read to the end.
    """

    delimiter: str
    header: HeaderMap | FileError
    header_row: int = HEADER_ROW


@dataclass(frozen=True, slots=True)
class _Candidate:
    """The header record found with one delimiter: its index among the file's records (row
    number - 1) and its cells, or the FILE_01 that stopped the reading before it."""

    delimiter: str
    index: int
    cells: list[str] | FileError

    @property
    def header(self) -> HeaderMap | FileError:
        return self.cells if isinstance(self.cells, FileError) else match_header(self.cells)


def is_skipped_before_header(cells: Sequence[str]) -> bool:
    """A guidance record (its first cell, trimmed, begins with `#`) or a blank record: what
    may stand before the header row (section 9)."""
    if cells and trim(cells[0]).startswith(GUIDANCE_MARK):
        return True
    return not any(map(trim, cells))


def _find_header(open_binary: Opener, encoding: Encoding, delimiter: str) -> _Candidate:
    """The first record that is neither a guidance nor a blank record, read with `delimiter`;
    the 11th record when the first 10 all are (it stands where the header must be). At the end
    of the file, no cells: the header is missing."""
    records, error = read_leading_records(
        open_binary, encoding, delimiter, MAX_RECORDS_BEFORE_HEADER + 1
    )
    for index, cells in enumerate(records):
        if index == MAX_RECORDS_BEFORE_HEADER or not is_skipped_before_header(cells):
            return _Candidate(delimiter, index, cells)
    return _Candidate(delimiter, len(records), [] if error is None else error)


def detect_layout(open_binary: Opener, encoding: Encoding) -> Layout | FileError:
    """Finds the header record with `,` and with `;` and picks the delimiter (section 9: the
    guidance and blank records before the header skipped in each reading).

    Semicolons are chosen only when the `;` header matches the template and the `,` header
    does not. Returns FILE_01 when the records up to the header read with `,` are unparseable
    (past a bound of section 8, or a quote open to the end of the file) and the `;` reading does
    not match: a record that is unparseable as read with `;` simply does not match.
    """
    comma = _find_header(open_binary, encoding, ",")
    comma_header = comma.header
    if isinstance(comma_header, HeaderMap):
        return Layout(",", comma_header, comma.index + 1)
    semicolon = _find_header(open_binary, encoding, ";")
    semicolon_header = semicolon.header
    if isinstance(semicolon_header, HeaderMap):
        return Layout(";", semicolon_header, semicolon.index + 1)
    if isinstance(comma.cells, FileError):
        return comma.cells
    lower = _header_further_down(open_binary, encoding, comma) or _header_further_down(
        open_binary, encoding, semicolon
    )
    return Layout(",", lower or comma_header, comma.index + 1)


def _header_further_down(
    open_binary: Opener, encoding: Encoding, candidate: _Candidate
) -> FileError | None:
    """The FILE_04 saying which rows to delete, when one of the 10 records after the header
    record that did not match is the template's header (read with the same delimiter)."""
    if isinstance(candidate.cells, FileError):
        return None
    count = candidate.index + 1 + MAX_RECORDS_BEFORE_HEADER
    records, _ = read_leading_records(open_binary, encoding, candidate.delimiter, count)
    for index in range(candidate.index + 1, len(records)):
        if isinstance(match_header(records[index]), HeaderMap):
            header_row = index + 1
            not_guidance = [
                row
                for row, cells in enumerate(records[:index], 1)
                if not is_skipped_before_header(cells)
            ]
            if not_guidance:
                return FileError(Code.FILE_04, rows_above_header_message(header_row, not_guidance))
            return FileError(Code.FILE_04, too_many_rows_above_header_message(header_row))
    return None


def _open_text(open_binary: Opener, encoding: Encoding) -> io.TextIOWrapper:
    # newline="" hands \r, \n and \r\n to the csv module untranslated, as it requires.
    return io.TextIOWrapper(open_binary(), encoding=encoding.value, newline="")


class RecordReader:
    """The data records of a file, after the header, in order, blank records included.

    `error` is FILE_01 when the file turned out to be unparseable; it is known once `records()`
    has been read to the end (records already yielded then belong to a refused file).
    """

    def __init__(self, open_binary: Opener, encoding: Encoding, delimiter: str = ",") -> None:
        self._open_binary = open_binary
        self._encoding = encoding
        self._dialect = _DIALECTS[delimiter]
        self.error: FileError | None = None
        self.finished = False

    def records(self, after_row: int = HEADER_ROW) -> Iterator[Record]:
        """Yields `(row_number, cells)` for every record numbered above `after_row`.

        A worker resuming after a crash passes the last row it stored; the rows before it are
        parsed by the C reader but never reach Python code.
        """
        self.error, self.finished = None, False
        with _open_text(self._open_binary, self._encoding) as text:
            reader = csv.reader(itertools.chain(text, (_SENTINEL_LINE,)), self._dialect)
            numbered = enumerate(reader, start=HEADER_ROW)
            try:
                # Keep the last skipped record: it is the sentinel if the file ends here.
                skipped = deque(itertools.islice(numbered, max(after_row, 0)), maxlen=1)
                pending = next(numbered, None)
                if pending is None:
                    self._finish(skipped[0][1] if skipped else _SENTINEL_RECORD)
                    return
                for record in numbered:
                    yield pending
                    pending = record
            except csv.Error:
                # Only "field larger than field limit" can happen once the file is inspected.
                self.error, self.finished = FileError(Code.FILE_01, FILE_01_TOO_LONG), True
                return
            self._finish(pending[1])

    def _finish(self, last_cells: list[str]) -> None:
        if last_cells != _SENTINEL_RECORD:
            self.error = FileError(Code.FILE_01, FILE_01_OPEN_QUOTE)
        self.finished = True

    def drain(self, records: Iterator[Record]) -> FileError | None:
        """Reads the rest of `records` without looking at them; returns `error`."""
        for _ in records:
            pass
        return self.error
