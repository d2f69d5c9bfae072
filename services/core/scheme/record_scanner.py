"""Record boundaries of a stored file, found once over its bytes, and the records of a chunk.

A planner calls `scan_records` once per upload: it finds where every record starts and ends,
checks section 8's bounds of one record, and cuts the data records into chunk plans that any
worker can parse on its own with `read_chunk`. Both read the file in blocks, so memory stays at
a few MiB whatever the bytes. `read_chunk_bytes` reads a chunk for a columnar engine instead:
its UTF-8 bytes, split into records and cells in Polars (`segment_records`); `quoted_records`
gives the csv module's cells of the records that hold a quote, for the shapes Polars is not
given.

The boundaries are exactly those Python's csv module finds with the scheme's dialect
(`strict=False`, RFC 4180): a `"` opens a quoted field only at the start of a field; inside a
quoted field `""` is a quote and line breaks are content; after the closing quote the rest of
the field up to the delimiter is ordinary; a `"` inside an unquoted field is ordinary; `\\r\\n`,
`\\r` and `\\n` each end a record, and an empty line is a record of its own. The file's bytes are
UTF-8 or Windows-1252, where `"`, `,`, `;`, CR and LF are single bytes that are never part of
another character, so the bytes can be scanned without decoding them.

Speed comes from never parsing an ordinary record field by field in Python:

- a run of blank records (spaces, tabs and delimiters only) is consumed by one regex in C and
  counted by counting line breaks; a long run is left out of the plan altogether, so a file of
  empty rows costs the workers nothing;
- a stretch of quote-free lines too short to reach any bound is measured with `bytes` methods
  (find, count, split) and one regex search for the start of a long blank run, all in C;
- short records holding quoted fields are matched a batch at a time by one regex in C, and
  those among quote-free lines (a quoted field every few dozen lines, as most files have)
  one regex match each inside the same step, the lines around them measured as above; where a
  quote comes every other line (notes a spreadsheet quoted), 64 records, quoted or not, are
  matched by one regex that takes the bytes between two quotes or line breaks in one step
  and leaves counting the cells to a count of the batch's delimiters (`_dense_records`);
- only a record near a bound, at the end of the buffer or at the end of the file is looked at
  on its own in Python.

The bounds of one record (section 8, v1.1) are checked from byte counts alone: no record is
split into cells to find out that it has too many.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import IO, Final, NamedTuple

from services.core.scheme.codes import (
    FILE_01_OPEN_QUOTE,
    Code,
    FileError,
    field_too_long_message,
    record_too_long_message,
    too_many_cells_message,
)
from services.core.scheme.file_inspection import Encoding

# A row number (header = 1) and the record's cells, as the csv module returns them.
Record = tuple[int, list[str]]
# Opens the stored file for reading from the start; called once per pass.
Opener = Callable[[], IO[bytes]]
# Bytes [start, end) of the file holding whole records, and the row number of the first one.
Segment = tuple[int, int, int]

HEADER_ROW: Final = 1

# Section 8, "Bounds of one record" (v1.1). Record bytes exclude the record's own final line
# break but include line breaks inside quoted fields. The field bound is the csv module's
# default `field_size_limit`, so a field the scanner lets through never trips the parser.
MAX_RECORD_BYTES: Final = 1024 * 1024
MAX_RECORD_CELLS: Final = 1000
MAX_FIELD_CHARS: Final = 131_072

DEFAULT_CHUNK_BYTES: Final = 4 * 1024 * 1024
DEFAULT_CHUNK_ROWS: Final = 20_000
DEFAULT_BLOCK_BYTES: Final = 1024 * 1024
# A blank run at least this long is left out of every segment. Counted in bytes, not records:
# a segment boundary costs a plan entry, so the plan of any file has at most one segment per
# this many bytes (about 51,000 for 200 MB). Shorter runs stay; the row validator skips them.
DEFAULT_BLANK_RUN_BYTES: Final = 4096
# Keeps a chunk plan small enough to store as one task whatever the file looks like.
DEFAULT_CHUNK_SEGMENTS: Final = 256

# A line this short has at most MAX_RECORD_CELLS - 1 delimiters and no field or record near its
# bound, so quote-free lines up to it need no further look.
_SHORT_LINE_BYTES: Final = MAX_RECORD_CELLS - 1
# Quote-free stretches are measured in steps that grow while lines stay short and fall back
# when a long one turns up, so the work per step stays proportional to the records it takes.
_MIN_STEP_BYTES: Final = 4096
_MAX_STEP_BYTES: Final = 256 * 1024
# Records with quotes are matched at most this many per regex call.
_QUOTED_BATCH_RECORDS: Final = 64
# A step holding a quote for at least every this many lines (a quoted field every other line)
# is taken in batches (`_dense_records`).
_DENSE_QUOTES_LINES: Final = 2
# Batches with too many delimiters to match without counting cells after which a file's batches
# are matched cell by cell only.
_WIDE_BATCHES_TRIED: Final = 4

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF8_CONTINUATION: Final = bytes(range(0x80, 0xC0))  # not the first byte of a character
_CR: Final = 13
_LF: Final = 10
_QUOTE: Final = 34
_LINE_BREAK: Final = re.compile(rb"\r\n?|\n")
_LONE_RETURN: Final = re.compile(rb"\r(?!\n)")


class _Dialect(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = False  # a space before a quote makes the field unquoted, as in RFC 4180
    strict = False
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL


class _SemicolonDialect(_Dialect):
    delimiter = ";"


DIALECTS: Final[dict[str, type[csv.Dialect]]] = {",": _Dialect, ";": _SemicolonDialect}


class ChunkPlan(NamedTuple):
    """The records one worker parses: `segments` in file order (skipped blank runs fall between
    them), holding `records` records (blank ones included) in `size_bytes` bytes."""

    segments: tuple[Segment, ...]
    records: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The plan of one file, or the FILE_01 that makes it unparseable.

    `header_end` is the offset just after the header record (row 1, or the row after the
    records that section 9 lets stand before it). `records` counts the
    data records read (blank ones included); `blank_records_skipped` those of them left out of
    every segment. With an error, scanning stopped at the record named in its message and
    `chunks` is empty.
    """

    header_end: int
    chunks: tuple[ChunkPlan, ...]
    records: int
    blank_records_skipped: int
    error: FileError | None


@dataclass(frozen=True, slots=True)
class _Patterns:
    """The regexes of one delimiter."""

    delimiter: int
    blank_run: re.Pattern[bytes]
    blank_chars: re.Pattern[bytes]  # the start of a blank line
    blank_bytes: re.Pattern[bytes]  # blank characters and line breaks
    blank_set: bytes  # the same, for bytes.rstrip
    fields: re.Pattern[bytes]
    field_parts: re.Pattern[bytes]
    record_count: re.Pattern[bytes]
    quoted_full_batch: re.Pattern[bytes]  # exactly _QUOTED_BATCH_RECORDS records
    dense_batch: re.Pattern[bytes]  # the same without the look-ahead for blank runs
    dense_loose_batch: re.Pattern[bytes]  # the same records without counting their cells
    quoted_batch: tuple[re.Pattern[bytes], ...]  # index n: 1 to 2**n records


def _all_bytes_but(excluded: bytes) -> bytes:
    """The class of every byte except `excluded`, written as the ranges of bytes it holds: the
    same bytes as `[^...]`, which Python's regex engine tests through a negation step at every
    byte (about twice the time of a plain class, and most of a batch's time is spent in runs of
    such bytes)."""
    ranges: list[bytes] = []
    start: int | None = None
    for byte in range(257):
        if byte < 256 and byte not in excluded:
            start = byte if start is None else start
        elif start is not None:
            ranges.append(b"\\x%02x-\\x%02x" % (start, byte - 1))
            start = None
    return b"[" + b"".join(ranges) + b"]"


@cache
def _patterns(delimiter: str, blank_run_bytes: int) -> _Patterns:
    if delimiter not in DIALECTS:
        raise ValueError(f"unsupported delimiter {delimiter!r}")
    d = re.escape(delimiter.encode("ascii"))
    delimiter_byte = delimiter.encode("ascii")
    separators = str(MAX_RECORD_CELLS - 1).encode()
    short_line = str(_SHORT_LINE_BYTES).encode()
    # Possessive quantifiers and `?+` make every match deterministic, as the csv module is: a
    # quoted field that never closes leaves the field empty at its `"` instead of being re-read
    # as an unquoted field.
    content = rb'(?:[^"]++|"")*+'  # of a quoted field: anything, `""` for a quote
    # After the closing quote, or after an unquoted field's first byte.
    rest = _all_bytes_but(delimiter_byte + b"\r\n") + rb"*+"
    first = _all_bytes_but(b'"' + delimiter_byte + b"\r\n")  # of an unquoted field
    field = rb'(?:"' + content + rb'"' + rest + rb"|" + first + rest + rb")?+"
    # At most MAX_RECORD_CELLS cells: a delimiter right after the match means one more.
    fields = field + rb"(?:" + d + field + rb"){0," + separators + rb"}+"
    blank = rb"[ \t" + d + rb"]"
    blank_line = blank + rb"{0," + short_line + rb"}+"
    # Batches of records stop where a long run of blank records may start (blank_run_bytes
    # blank bytes, or blank bytes to the end of what is matched), so that a long run is always
    # measured, and skipped, from its first record. Short runs cost nothing more.
    blank_byte = rb"[ \t" + d + rb"\r\n]"
    long_run = blank_byte + rb"{" + str(blank_run_bytes).encode() + rb"}|" + blank_byte + rb"*+\Z"
    any_record = fields + rb"(?:\r\n?|\n)"
    record = rb"(?!" + long_run + rb")" + any_record
    # The same records in steps that cost the regex engine less: the bytes up to the next `"`
    # or line break taken at once, delimiters included, instead of field by field. A `"` where
    # a field starts (after a delimiter or a line break, or at the start of the buffer, which is
    # a record's) opens a quoted field; any other `"` is an ordinary character, as in the csv
    # module. Cells are not counted: `_dense_records` counts the delimiters of a batch instead.
    ordinary = _all_bytes_but(b'"\r\n') + rb"*+"
    not_field_start = _all_bytes_but(delimiter_byte + b"\r\n")  # no field starts after it
    quoted_field = rb"(?<!" + not_field_start + rb')"[^"]*+(?:""[^"]*+)*+"'
    other_quote = rb"(?<=" + not_field_start + rb')"'
    loose_record = (
        ordinary + rb"(?:(?:" + quoted_field + rb"|" + other_quote + rb")" + ordinary + rb")*+"
        rb"(?:\r\n?|\n)"
    )
    return _Patterns(
        delimiter=delimiter.encode("ascii")[0],
        # Blank lines, each with its line breaks (an empty line is all line break).
        blank_run=re.compile(rb"(?:" + blank_line + rb"[\r\n]++)*+"),
        blank_chars=re.compile(blank_line),
        blank_bytes=re.compile(rb"[ \t" + d + rb"\r\n]*+"),
        blank_set=b" \t" + delimiter.encode("ascii") + b"\r\n",
        fields=re.compile(fields),
        # Groups: a quoted field's content and rest, or an unquoted field.
        field_parts=re.compile(
            rb'(?:"(' + content + rb')"(' + rest + rb")|(" + first + rest + rb"))?+"
        ),
        # Counts the records of a batch: one empty group per record, so findall costs one list
        # slot per record. Without the look-ahead, which depends on where the match stops.
        record_count=re.compile(any_record + rb"()"),
        dense_batch=re.compile(
            rb"(?:" + any_record + rb"){" + str(_QUOTED_BATCH_RECORDS).encode() + rb"}+"
        ),
        dense_loose_batch=re.compile(
            rb"(?:" + loose_record + rb"){" + str(_QUOTED_BATCH_RECORDS).encode() + rb"}+"
        ),
        quoted_full_batch=re.compile(
            rb"(?:" + record + rb"){" + str(_QUOTED_BATCH_RECORDS).encode() + rb"}+"
        ),
        quoted_batch=tuple(
            re.compile(rb"(?:" + record + rb"){1," + str(1 << n).encode() + rb"}+")
            for n in range(_QUOTED_BATCH_RECORDS.bit_length())
        ),
    )


@cache
def _long_blank_start(delimiter: str, separator: bytes | None, run_bytes: int) -> re.Pattern[bytes]:
    """A line break followed by `run_bytes` blank bytes: where a run of blank records that
    long can start, found by one search in C. The line break is the one the lines are split at
    (see _line_separator): a literal first byte lets the regex engine find candidates at memchr
    speed. With mixed line ends a candidate may be the CR of a CR LF."""
    first = {b"\n": rb"\n", b"\r": rb"\r", None: rb"[\r\n]"}[separator]
    blank = rb"[ \t" + re.escape(delimiter.encode("ascii")) + rb"\r\n]"
    return re.compile(first + blank + rb"{" + str(run_bytes).encode() + rb"}")


def _match_end(pattern: re.Pattern[bytes], data: bytes, start: int, stop: int) -> int:
    """Where a match of `pattern` at `start` ends; `start` when there is none."""
    match = pattern.match(data, start, stop)
    return start if match is None else match.end()


def _line_breaks(data: bytes, start: int, end: int) -> int:
    """Records ending in data[start:end] when no quoted field is in it."""
    newlines = data.count(b"\n", start, end)
    returns = data.count(b"\r", start, end)
    if newlines and returns:
        return newlines + returns - data.count(b"\r\n", start, end)
    return newlines + returns


def _line_separator(data: bytes, start: int, end: int) -> bytes | None:
    """Where to split the lines of data[start:end] (no quote, or whole quoted records) in C:
    at LF when every CR is part of a CR LF (a line then keeps its CR: one byte longer, which
    only makes a length test stricter), at CR when there is no LF, at either (None: a regex)
    for a mix."""
    # One search for a CR that is not part of a CR LF (a CR at `end` is one): as fast as
    # counting the CRs, where comparing their count with that of CR LFs takes three times that.
    if _LONE_RETURN.search(data, start, end) is None:
        return b"\n"
    if data.find(b"\n", start, end) < 0:
        return b"\r"
    return None


def _split_lines(region: bytes, separator: bytes | None, maxsplit: int) -> list[bytes]:
    if separator is None:
        return _LINE_BREAK.split(region, maxsplit)
    return region.split(separator, maxsplit)


class _Scanner:
    def __init__(
        self,
        stream: IO[bytes],
        delimiter: str,
        encoding: Encoding | None,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        blank_run_bytes: int = DEFAULT_BLANK_RUN_BYTES,
        chunk_segments: int = DEFAULT_CHUNK_SEGMENTS,
    ) -> None:
        if min(chunk_bytes, chunk_rows, block_bytes, blank_run_bytes, chunk_segments) < 1:
            raise ValueError("chunk, block and run sizes must be positive")
        self._stream = stream
        self._delimiter = delimiter
        self._patterns = _patterns(delimiter, blank_run_bytes)
        self._encoding = encoding
        self._chunk_bytes = chunk_bytes
        self._chunk_rows = chunk_rows
        self._block_bytes = block_bytes
        self._blank_run_bytes = blank_run_bytes
        self._chunk_segments = chunk_segments
        self._buffer = b""
        self._base = 0  # file offset of _buffer[0]
        self._pos = 0  # index in _buffer of the next record
        self._eof = False
        self._row = HEADER_ROW  # number of the record at _pos
        self._step = _MIN_STEP_BYTES
        self._blank_continues = False  # the last step skipped a blank run up to the buffer end
        self._quoted_streak = 0  # quoted batches taken since the last quote-free lines
        # File offset before which `_lines_with_quotes` is not tried again: the end of the
        # step it last gave up on, so no byte is matched in vain more than once.
        self._quotes_retry = 0
        self._dense_retry = 0  # the same for `_dense_records`
        # Batches of `_dense_records` with too many delimiters to leave their cells uncounted.
        self._wide_batches = 0
        self.blank_skipped = 0
        # The chunk being planned: its closed segments, the open one, its size so far.
        self.chunks: list[ChunkPlan] = []
        self._segments: list[Segment] = []
        self._open_start = -1  # -1: no open segment
        self._open_end = -1
        self._open_row = 0
        self._chunk_used_bytes = 0
        self._chunk_records = 0

    # -- reading ------------------------------------------------------------------------------

    def _read_more(self, size: int) -> None:
        """Appends up to `size` bytes, dropping the bytes before the current record."""
        data = self._stream.read(size)
        if not data:
            self._eof = True
            return
        self._buffer = self._buffer[self._pos :] + data
        self._base += self._pos
        self._pos = 0

    def _refill(self) -> None:
        while not self._eof and len(self._buffer) - self._pos < self._block_bytes:
            self._read_more(self._block_bytes)

    def _safe_end(self, end: int) -> int:
        """`end`, moved back one byte when it would split a CR LF (or the byte after a final
        CR is not read yet): the LF would otherwise look like an empty record of its own."""
        buffer = self._buffer
        if end > self._pos and buffer[end - 1] == _CR:
            if end < len(buffer):
                if buffer[end] == _LF:
                    return end - 1
            elif not self._eof:
                return end - 1
        return end

    def _chars(self, start: int, end: int) -> int:
        """Characters in _buffer[start:end] (whole characters: cut at ASCII bytes only)."""
        if self._encoding is Encoding.WINDOWS_1252:
            return end - start
        return len(self._buffer[start:end].translate(None, _UTF8_CONTINUATION))

    # -- one record, any shape ----------------------------------------------------------------

    def record_end(self) -> int | FileError:
        """The index in _buffer just after the record at _pos (reading more as needed), or
        the FILE_01 it causes. The bounds are checked first, then a quote open at the end."""
        patterns = self._patterns
        while True:
            buffer, start = self._buffer, self._pos
            available = min(len(buffer), start + MAX_RECORD_BYTES + 1)
            end = _match_end(patterns.fields, buffer, start, available)
            if end < available:
                byte = buffer[end]
                if byte == patterns.delimiter:  # a delimiter past the last allowed one
                    return self._error(too_many_cells_message(self._row, MAX_RECORD_CELLS))
                if byte in (_CR, _LF):
                    if byte == _CR and end + 1 == len(buffer) and not self._eof:
                        self._read_more(self._block_bytes)  # a CR alone, or a CR LF?
                        continue
                    if self._field_too_long(start, end):
                        return self._error(field_too_long_message(self._row, MAX_FIELD_CHARS))
                    return end + (2 if buffer[end : end + 2] == b"\r\n" else 1)
                # Otherwise a quoted field opens at `end` and does not close before `available`.
            if available - start > MAX_RECORD_BYTES:
                return self._error(record_too_long_message(self._row, MAX_RECORD_BYTES))
            if not self._eof:
                # Read at least as much again as the record has so far: linear in its length.
                self._read_more(max(self._block_bytes, available - start))
                continue
            if self._field_too_long(start, available):
                return self._error(field_too_long_message(self._row, MAX_FIELD_CHARS))
            if end < available:
                return FileError(Code.FILE_01, FILE_01_OPEN_QUOTE)
            return available  # the last record, without a final line break

    def _field_too_long(self, start: int, end: int) -> bool:
        """Whether a field of the record _buffer[start:end] (no final line break, at most
        MAX_RECORD_CELLS cells) has more than MAX_FIELD_CHARS characters as the csv module
        counts them: the quotes that delimit a field are not counted, `""` counts once."""
        if end - start <= MAX_FIELD_CHARS:
            return False  # no field has more characters than the record has bytes
        buffer, patterns = self._buffer, self._patterns
        position = start
        while True:
            match = patterns.field_parts.match(buffer, position, end)
            if match is None:  # never: every part of the pattern is optional
                raise AssertionError("the field pattern matches the empty string")
            after = match.end()
            if match.start(1) >= 0:  # quoted: content with `""` pairs, then an unquoted rest
                content_start, content_end = match.span(1)
                chars = (
                    self._chars(content_start, content_end)
                    - buffer.count(b'""', content_start, content_end)
                    + self._chars(*match.span(2))
                )
            elif after > position:
                chars = self._chars(position, after)
            elif after < end and buffer[after] == _QUOTE:  # open to the end of the file
                chars = self._chars(after + 1, end) - buffer.count(b'""', after + 1, end)
                after = end
            else:
                chars = 0
            if chars > MAX_FIELD_CHARS:
                return True
            if after >= end or buffer[after] != patterns.delimiter:
                return False
            position = after + 1

    def _error(self, message: str) -> FileError:
        return FileError(Code.FILE_01, message)

    # -- the runs that need no look at single records -----------------------------------------

    def _blank_run_end(self, start: int, limit: int) -> tuple[int, bool]:
        """Where the run of blank records at `start` ends, and whether it may go on past what
        is read: only blank bytes follow it up to `limit` (a blank line not read to its end).
        At the end of the file, a last blank record without a line break is part of the run."""
        patterns = self._patterns
        end = _match_end(patterns.blank_run, self._buffer, start, limit)
        blank_to_limit = _match_end(patterns.blank_chars, self._buffer, end, limit) == limit
        if self._eof:
            return (limit if blank_to_limit else end), False
        return end, blank_to_limit

    def _blank_run(self, limit: int) -> bool:
        """Skips a long run of blank records at _pos; False when there is none."""
        start = self._pos
        end, may_go_on = self._blank_run_end(start, limit)
        if end > start and (end - start >= self._blank_run_bytes or self._blank_continues):
            records = _line_breaks(self._buffer, start, end)
            if self._buffer[end - 1] not in (_CR, _LF):
                records += 1  # the last record of the file, without a line break
            self._close_segment()
            self._row += records
            self.blank_skipped += records
            self._pos = end
            self._blank_continues = may_go_on
            return True
        if may_go_on:  # short so far: read all of it before deciding
            self._read_more(max(self._block_bytes, limit - start))
            return True
        return False

    def _quote_free_lines(self, limit: int) -> bool:
        """Takes the quote-free records at _pos whose lines are short; False when the first
        record is not one of them."""
        buffer, start = self._buffer, self._pos
        step_end = min(limit, start + self._chunk_room_bytes(), start + self._step)
        stop = self._safe_end(step_end)
        quote = buffer.find(b'"', start, stop)
        if quote >= 0:
            if (
                self._base + start >= self._dense_retry
                and self._quotes_dense(start, stop)
                and self._dense_records(limit)
            ):
                return True
            if self._base + start >= self._quotes_retry and self._lines_with_quotes(
                limit, stop, step_end, quote
            ):
                return True
            stop = quote
        last_break = max(buffer.rfind(b"\n", start, stop), buffer.rfind(b"\r", start, stop))
        if last_break < 0:
            return False
        # `stop` never splits a CR LF (see _safe_end; a quote is neither), so this is a record
        # end.
        end = last_break + 1
        separator = _line_separator(buffer, start, end)
        blank_run = self._long_blank_run(separator, start, end, limit)
        if blank_run < end:  # stop before it: the next step skips all of it
            if blank_run == start:
                return False
            end = blank_run
            separator = _line_separator(buffer, start, end)
            self._step = _MIN_STEP_BYTES
        region = buffer[start:end]
        lines = _split_lines(region, separator, self._chunk_rows - self._chunk_records)
        # The region ends with a line break: the last piece is empty, unless the chunk has no
        # room for every record and it holds the ones left over.
        end -= len(lines.pop())
        records = len(lines)
        if max(map(len, lines)) > _SHORT_LINE_BYTES:
            self._step = _MIN_STEP_BYTES
            first_long = next(i for i, line in enumerate(lines) if len(line) > _SHORT_LINE_BYTES)
            if first_long == 0:
                return False
            end = start + len(region) - len(_split_lines(region, separator, first_long)[-1])
            records = first_long
        elif quote < 0 and step_end == start + self._step:  # the step was the limit: grow it
            self._step = min(2 * self._step, _MAX_STEP_BYTES)
        self._include(end, records)
        return True

    def _lines_with_quotes(self, limit: int, stop: int, step_end: int, quote: int) -> bool:
        """Takes the records of _buffer[_pos:stop] in one step when every quote in them is in
        a short record that the quoted records' regex matches on its own (`quote` is the
        first quote): the quote-free lines around those records are counted from their line
        breaks. False, taking nothing, when the step needs a closer look (a long line, a long
        blank run, more records than the chunk has room for, no such record to take): the
        record-by-record paths then take it, in short steps from then on.

        Why: most files quote a field every few dozen lines (a `="…"` cell, a note with a line
        break). Taking the quote-free lines, the quoted record and the blank-run look between
        them one Python step each costs most of the scan; here a quote costs one regex match.
        The bounds hold as in `_quoted_records` (one record within MAX_FIELD_CHARS bytes) and
        `_quote_free_lines` (every line within _SHORT_LINE_BYTES, no long blank run)."""
        buffer, start = self._buffer, self._pos
        match_record = self._patterns.quoted_batch[0].match  # exactly one record
        position = start
        # Line breaks inside the quoted records taken, which end no record.
        inner_breaks = 0
        while quote >= 0:
            # The start of the line holding the quote: the lines before it are quote-free.
            line_start = (
                max(buffer.rfind(b"\n", position, quote), buffer.rfind(b"\r", position, quote)) + 1
                or position
            )
            match = match_record(buffer, line_start, min(stop, line_start + MAX_FIELD_CHARS))
            if match is None:
                break
            position = match.end()
            inner_breaks += _line_breaks(buffer, line_start, position) - 1
            quote = buffer.find(b'"', position, stop)
        if position == start:
            return self._give_up_quotes(stop)
        # Then the quote-free lines up to the next quote (its record was not matched) or the
        # end of the step.
        tail_stop = stop if quote < 0 else quote
        last_break = max(
            buffer.rfind(b"\n", position, tail_stop), buffer.rfind(b"\r", position, tail_stop)
        )
        end = position if last_break < 0 else last_break + 1  # `stop` splits no CR LF
        separator = _line_separator(buffer, start, end)
        # Every line break of the region, as the pieces between them (the last one empty).
        lines = _split_lines(buffer[start:end], separator, -1 if separator else 0)
        records = len(lines) - 1 - inner_breaks
        if (
            records > self._chunk_rows - self._chunk_records
            or max(map(len, lines)) > _SHORT_LINE_BYTES
            or self._long_blank_run(separator, start, end, limit) < end
        ):
            return self._give_up_quotes(stop)
        if step_end == start + self._step:  # the step was the limit: grow it
            self._step = min(2 * self._step, _MAX_STEP_BYTES)
        self._include(end, records)
        return True

    def _quotes_dense(self, start: int, stop: int) -> bool:
        """Whether _buffer[start:stop] holds a quote every few lines (as files do where
        spreadsheets quoted the notes): then whole batches of records by one regex cost less
        than taking the quoted records one match each among the lines around them."""
        buffer, stop = self._buffer, min(stop, start + _MIN_STEP_BYTES)  # a look, not a count
        return buffer.count(b'"', start, stop) * _DENSE_QUOTES_LINES >= buffer.count(
            b"\n", start, stop
        )

    def _dense_records(self, limit: int) -> bool:
        """Takes whole batches of _QUOTED_BATCH_RECORDS records at _pos, quoted or not, by one
        regex each, within MAX_FIELD_CHARS bytes of _pos (so every bound holds, as in
        `_quoted_records`); False, taking nothing, when there is no full batch there or a long
        blank run may start in it (the other paths then take it: the regex of a batch does not
        look for blank runs, which costs a third of its time)."""
        buffer, start = self._buffer, self._pos
        stop = self._safe_end(min(limit, start + self._chunk_room_bytes(), start + MAX_FIELD_CHARS))
        batches = (self._chunk_rows - self._chunk_records) // _QUOTED_BATCH_RECORDS
        patterns = self._patterns
        end, records = start, 0
        for _ in range(batches):
            if self._wide_batches < _WIDE_BATCHES_TRIED:
                batch_end = _match_end(patterns.dense_loose_batch, buffer, end, stop)
                # A batch of fewer delimiters than a record may have holds no record past the
                # bound; another is matched again cell by cell. In a file where that keeps
                # happening (a wide one), only cell by cell: trying both costs more.
                if (
                    batch_end > end
                    and buffer.count(patterns.delimiter, end, batch_end) >= MAX_RECORD_CELLS
                ):
                    self._wide_batches += 1
                    batch_end = _match_end(patterns.dense_batch, buffer, end, stop)
            else:
                batch_end = _match_end(patterns.dense_batch, buffer, end, stop)
            if batch_end == end:
                break
            end = batch_end
            records += _QUOTED_BATCH_RECORDS
        if end == start or (
            self._long_blank_run(_line_separator(buffer, start, end), start, end, limit) < end
        ):
            # Not tried again before what this step could have taken.
            self._dense_retry = self._base + max(end, start + _MIN_STEP_BYTES)
            return False
        self._include(end, records)
        return True

    def _give_up_quotes(self, stop: int) -> bool:
        self._step = _MIN_STEP_BYTES
        self._quotes_retry = self._base + stop
        return False

    def _long_blank_run(self, separator: bytes | None, start: int, end: int, limit: int) -> int:
        """Where the first run of blank records that is long (or may be: it goes on past
        `limit`) starts in the quote-free records _buffer[start:end], after the first one;
        `end` if there is none. Short runs cost nothing here: only a stretch of at least
        blank_run_bytes blank bytes is a candidate. (Among records with quoted fields, blank
        bytes in a field may look like a run: `_lines_with_quotes` then leaves the step.)"""
        buffer, patterns, run_bytes = self._buffer, self._patterns, self._blank_run_bytes
        search = _long_blank_start(self._delimiter, separator, run_bytes).search
        # A candidate line break before end - 1 sees its run_bytes bytes before this.
        search_end = min(limit, end + run_bytes)
        position = start
        while (found := search(buffer, position, search_end)) is not None:
            run_start = found.start() + 1
            if buffer[run_start - 1] == _CR and buffer[run_start] == _LF:
                run_start += 1  # the candidate was the CR of a CR LF
            if run_start >= end:
                break
            run_end, may_go_on = self._blank_run_end(run_start, limit)
            if may_go_on or run_end - run_start >= run_bytes:
                return run_start
            position = found.start() + 1  # blank bytes, but not blank lines all through
        if self._eof or _match_end(patterns.blank_bytes, buffer, end, limit) < limit:
            return end
        # Only blank bytes from `end` to what is read: the blank records at the end of the
        # region may begin a run that goes on. Cut before them; the next step measures it.
        data_end = start + len(buffer[start:end].rstrip(patterns.blank_set))
        if data_end == start:
            return start
        breaks = [
            at for at in (buffer.find(b"\n", data_end), buffer.find(b"\r", data_end)) if at >= 0
        ]
        line_end = min(breaks)
        run_start = line_end + (2 if buffer[line_end : line_end + 2] == b"\r\n" else 1)
        return min(run_start, end)

    def _quoted_records(self, limit: int) -> bool:
        """Takes a batch of records that may hold quoted fields and are short enough (the
        whole batch within MAX_FIELD_CHARS bytes) to be within every bound; False when the
        first record is not one of them."""
        buffer, start = self._buffer, self._pos
        stop = self._safe_end(min(limit, start + self._chunk_room_bytes(), start + MAX_FIELD_CHARS))
        patterns = self._patterns
        room = min(self._chunk_rows - self._chunk_records, _QUOTED_BATCH_RECORDS)
        if not self._quoted_streak:
            # Right after quote-free lines: most files quote a field here and there, and the
            # lines after this record are quote-free again, which bytes methods take far
            # faster than the regex. Batches pay when record after record holds a quote.
            room = 1
        self._quoted_streak += 1
        if room == _QUOTED_BATCH_RECORDS:
            # Usually the full batch is there, and then its count is known without counting.
            end = _match_end(patterns.quoted_full_batch, buffer, start, stop)
            if end > start:
                self._include(end, room)
                return True
        end = _match_end(patterns.quoted_batch[room.bit_length() - 1], buffer, start, stop)
        if end == start:
            return False
        # Line breaks inside quoted fields make counting breaks wrong: count matches instead.
        self._include(end, len(patterns.record_count.findall(buffer, start, end)))
        return True

    # -- the plan -----------------------------------------------------------------------------

    def _chunk_room_bytes(self) -> int:
        return self._chunk_bytes - self._chunk_used_bytes

    def _include(self, end: int, records: int) -> None:
        """Adds the records _buffer[_pos:end] to the chunk being planned."""
        start = self._base + self._pos
        if self._open_end != start:
            self._close_segment()
            if len(self._segments) >= self._chunk_segments:
                self._close_chunk()
            self._open_start, self._open_row = start, self._row
        self._open_end = self._base + end
        self._chunk_used_bytes += end - self._pos
        self._chunk_records += records
        self._row += records
        self._pos = end
        if self._chunk_used_bytes >= self._chunk_bytes or self._chunk_records >= self._chunk_rows:
            self._close_chunk()

    def _close_segment(self) -> None:
        if self._open_start >= 0:
            self._segments.append((self._open_start, self._open_end, self._open_row))
            self._open_start = self._open_end = -1

    def _close_chunk(self) -> None:
        self._close_segment()
        if self._segments:
            self.chunks.append(
                ChunkPlan(tuple(self._segments), self._chunk_records, self._chunk_used_bytes)
            )
        self._segments = []
        self._chunk_used_bytes = self._chunk_records = 0

    # -- the whole file -----------------------------------------------------------------------

    def header(self, header_row: int = HEADER_ROW) -> tuple[int, bytes] | FileError:
        """Reads the records up to the header record (row `header_row`; the records before it,
        guidance or blank records of section 9, are checked against the bounds and passed
        over): the header's end offset in the file and its bytes (the byte-order mark left out
        when the encoding drops it). Past the end of the file, the offset of the end and no
        bytes."""
        last: tuple[int, bytes] | FileError = (0, b"")
        for last in self.leading_records(header_row):
            if isinstance(last, FileError):
                break
        return last

    def leading_records(self, count: int) -> Iterator[tuple[int, bytes] | FileError]:
        """The first `count` records of the file, each as its end offset and its bytes (the
        byte-order mark left out when the encoding drops it); a record past the end of the file
        is the end's offset and no bytes. Stops after the first FILE_01."""
        while not self._eof and len(self._buffer) < max(self._block_bytes, len(_UTF8_BOM)):
            self._read_more(self._block_bytes)
        if self._encoding in (None, Encoding.UTF_8_SIG) and self._buffer.startswith(_UTF8_BOM):
            self._pos = len(_UTF8_BOM)
            self._refill()
        self._row = HEADER_ROW
        for _ in range(count):
            if self._pos >= len(self._buffer):
                self._row += 1
                yield self._base + self._pos, b""
                continue
            end = self.record_end()
            if isinstance(end, FileError):
                yield end
                return
            # record_end may have dropped bytes before the record, never the record itself.
            data = self._buffer[self._pos : end]
            self._pos = end
            self._row += 1
            yield self._base + end, data
            self._refill()

    def data_records(self) -> FileError | None:
        """Plans every record after the header; returns the first FILE_01, if any."""
        while True:
            self._refill()
            size = len(self._buffer)
            if self._pos >= size:
                self._close_chunk()
                return None
            limit = self._safe_end(size)
            if self._blank_run(limit):
                continue
            self._blank_continues = False
            if self._quote_free_lines(limit):
                self._quoted_streak = 0
                continue
            if self._quoted_records(limit):
                continue
            end = self.record_end()
            if isinstance(end, FileError):
                return end
            if self._chunk_records and end - self._pos > self._chunk_room_bytes():
                self._close_chunk()
            self._include(end, 1)

    @property
    def next_row(self) -> int:
        return self._row


def scan_records(
    stream: IO[bytes],
    delimiter: str,
    *,
    encoding: Encoding | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    blank_run_bytes: int = DEFAULT_BLANK_RUN_BYTES,
    chunk_segments: int = DEFAULT_CHUNK_SEGMENTS,
    header_row: int = HEADER_ROW,
) -> ScanResult:
    """Scans a binary stream from its start (a seekable stream is rewound first) and plans its
    data records in chunks: those after the header record, row `header_row` (the records
    before it were found to be guidance or blank records, `records.detect_layout`).

    `encoding` is the file's encoding as `FileInspector` found it: it decides whether a
    leading byte-order mark is part of the first header cell and how characters are counted
    for the field bound. None means UTF-8, with a byte-order mark when the file starts with one.

    Each chunk holds at most `chunk_rows` records and `chunk_bytes` bytes (a single record
    larger than that is a chunk of its own) in at most `chunk_segments` segments. A run of
    blank records spanning at least `blank_run_bytes` is left out of every segment (its rows
    keep their numbers). `block_bytes` is the read size; the buffer holds a few blocks, or up to
    about three times MAX_RECORD_BYTES while a long record is measured.
    """
    if stream.seekable():
        stream.seek(0)
    scanner = _Scanner(
        stream,
        delimiter,
        encoding,
        chunk_bytes=chunk_bytes,
        chunk_rows=chunk_rows,
        block_bytes=block_bytes,
        blank_run_bytes=blank_run_bytes,
        chunk_segments=chunk_segments,
    )
    header = scanner.header(header_row)
    if isinstance(header, FileError):
        return ScanResult(0, (), 0, 0, header)
    header_end, _ = header
    error = scanner.data_records()
    records = scanner.next_row - header_row - 1
    chunks = () if error is not None else tuple(scanner.chunks)
    return ScanResult(header_end, chunks, records, scanner.blank_skipped, error)


def read_header(open_binary: Opener, encoding: Encoding, delimiter: str) -> list[str] | FileError:
    """The cells of the header record split by `delimiter`, or the FILE_01 the header record
    causes (a bound, or a quote open to the end of the file). Reads at most the header record
    and a block, so no header can hold more than the bounds allow in memory."""
    with open_binary() as stream:
        # A header is a few hundred bytes: a small first read, more only for a long one.
        header = _Scanner(stream, delimiter, encoding, block_bytes=64 * 1024).header()
    if isinstance(header, FileError):
        return header
    _, data = header
    # The scanner left a byte-order mark out of `data`: what is left is plain UTF-8.
    codec = Encoding.UTF_8.value if encoding is Encoding.UTF_8_SIG else encoding.value
    return next(csv.reader(io.StringIO(data.decode(codec), newline=""), DIALECTS[delimiter]), [])


def read_leading_records(
    open_binary: Opener, encoding: Encoding, delimiter: str, count: int
) -> tuple[list[list[str]], FileError | None]:
    """The cells of the file's first `count` records split by `delimiter` (fewer when the file
    ends before), and the FILE_01 of the record that stopped the reading, if one did: section
    9's header search. Holds at most those records, each within the bounds of one record."""
    codec = Encoding.UTF_8.value if encoding is Encoding.UTF_8_SIG else encoding.value
    dialect = DIALECTS[delimiter]
    records: list[list[str]] = []
    with open_binary() as stream:
        scanner = _Scanner(stream, delimiter, encoding, block_bytes=64 * 1024)
        for record in scanner.leading_records(count):
            if isinstance(record, FileError):
                return records, record
            _, data = record
            if not data:  # past the end of the file (an empty line is its line break)
                break
            # The scanner left a byte-order mark out of `data`: what is left is plain UTF-8.
            text = data.decode(codec)
            records.append(next(csv.reader(io.StringIO(text, newline=""), dialect), []))
    return records, None


def _codec(encoding: Encoding, *, start: int) -> str:
    # Only the file's first bytes can be a byte-order mark; bytes after it are plain UTF-8.
    if encoding is Encoding.UTF_8_SIG and start > 0:
        return Encoding.UTF_8.value
    return encoding.value


def read_chunk(
    open_binary: Opener, encoding: Encoding, delimiter: str, segments: Iterable[Segment]
) -> Iterator[Record]:
    """Yields `(row_number, cells)` for every record of the segments, in order, parsed by the
    csv module with the scheme's dialect. Blank records are yielded too (the row validator
    skips them). A segment is read and decoded whole: at most a chunk's bytes in memory."""
    dialect = DIALECTS[delimiter]
    with open_binary() as stream:
        for start, end, first_row in segments:
            stream.seek(start)
            data = _read_exactly(stream, end - start)
            text = data.decode(_codec(encoding, start=start))
            del data
            # newline="" hands \r, \n and \r\n to the csv module untranslated, as it requires.
            yield from enumerate(csv.reader(io.StringIO(text, newline=""), dialect), first_row)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    while len(data) < size:  # a raw stream may return less than asked before its end
        more = stream.read(size - len(data))
        if not more:
            raise ValueError("the file is shorter than its chunk plan: was it changed?")
        data += more
    return data


def segment_records(text: str, delimiter: str, first_row: int) -> list[Record]:
    """The records of a segment's text as `read_chunk` yields them, parsed by the csv module."""
    # newline="" hands \r, \n and \r\n to the csv module untranslated.
    reader = csv.reader(io.StringIO(text, newline=""), DIALECTS[delimiter])
    return list(enumerate(reader, first_row))


class SegmentBytes(NamedTuple):
    """The records of one segment, read for a columnar engine, as UTF-8 bytes.

    `data` is the UTF-8 encoding of the segment's text and `first_row` the number of its first
    record. Split at every `\\n` (the empty piece after a final line break dropped), its pieces
    are its lines, each ending with the `\\r` of its CR LF, if any. A line without a `"` that no
    quoted field before it spans is a record of its own: its cells are its text, without that
    `\\r`, split at every delimiter, exactly as the csv module splits them. The records holding
    a `"` are found and split by `segment_records.split_records`. A segment with a lone
    CR (a line break of its own: rare) is for the csv module as a whole (`segment_records`);
    the reader of `data` tells those apart.
    """

    data: bytes
    first_row: int


def read_chunk_bytes(
    open_binary: Opener, encoding: Encoding, segments: Iterable[Segment]
) -> list[SegmentBytes]:
    """The records of the segments as `SegmentBytes`, with no Python object per record. A
    segment is read whole: at most a chunk's bytes in memory.

    Why bytes: a columnar engine takes strings as UTF-8. A decoded text has to be encoded again
    to get there, which costs more than the decoding; a UTF-8 file's bytes (checked whole by
    the file inspection) are that already. Other encodings are re-encoded here."""
    segments_bytes: list[SegmentBytes] = []
    with open_binary() as stream:
        for start, end, first_row in segments:
            stream.seek(start)
            data = _read_exactly(stream, end - start)
            codec = _codec(encoding, start=start)
            if codec != Encoding.UTF_8.value:  # Windows-1252, or a byte-order mark to drop
                data = data.decode(codec).encode(Encoding.UTF_8.value)
            segments_bytes.append(SegmentBytes(data, first_row))
    return segments_bytes


def quoted_records(
    text: str, delimiter: str, quote_lines: Iterable[tuple[int, int]]
) -> list[tuple[int, int, list[str]]]:
    """The records of a segment's text (`SegmentBytes`) that start at a line holding a `"`:
    `(first line, lines spanned, cells)` of each, in order, the cells as the csv module reads
    them.

    `quote_lines` gives `(line index, character offset of its start)` of every line holding a
    `"`, in order; one that a record before it spans is passed over. Every other line is a
    record of its own.
    """
    dialect = DIALECTS[delimiter]
    size = len(text)
    records: list[tuple[int, int, list[str]]] = []
    taken = 0  # the first line no record read so far spans
    for line, offset in quote_lines:
        if line < taken:
            continue
        position, spanned = offset, 0

        def lines() -> Iterator[str]:
            # The record's lines, each with its line break (\r\n and \n untranslated, as the
            # csv module requires), handed over one at a time: the reader asks for a line only
            # while its record is open, so `spanned` counts the record's lines.
            nonlocal position, spanned
            while position < size:
                end = text.find("\n", position) + 1 or size
                spanned += 1
                yield text[position:end]
                position = end

        cells = next(csv.reader(lines(), dialect))
        records.append((line, spanned, cells))
        taken = line + spanned
    return records
