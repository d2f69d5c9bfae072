"""The bulk pass: a chunk of records through the scheme's rules in Polars, which can only say
"valid".

For each row of a chunk the bulk pass computes, column-wise, whether the row is certainly
valid, and for those rows exactly what `RowValidator` would give: the normalised
`Achievement` values, the warnings (ACHDATE_03, LEVY_02, LEVY_03, NOTES_02) and the duplicate
keys. Every other row goes to the exact path, `RowValidator`, which explains it (codes,
columns, messages). So the bulk pass must be sound and need not be complete: a row it cannot
judge exactly (a name with a character outside the alphabets it knows, a non-ASCII character
in a code or an identifier, a non-empty cell beyond the header) is not proven valid, and the
exact path decides it. Rows with errors are rare in real files, so most rows never meet
per-row Python code once their chunk is in Polars.

The scheme's constants (patterns, limits, prefixes, the catalogue and the register, messages)
are the ones in `rules`, `text`, `codes` and `reference`: nothing is copied here. Where a set
is derived (the characters a name may hold, the NI number prefixes that are issued) it is
derived by asking the exact rule about every candidate, once, at import.

A chunk reaches Polars in one of two ways. The offline check and the validators hand over its
UTF-8 bytes (`record_scanner.read_chunk_bytes`, `BulkValidator.bulk_bytes`): a record without a
`"` is a line, split into lines and cells by Polars itself, so such a record never becomes a Python
object; records holding a quote are found and split in Polars too (`segment_records`), and only
the shapes spreadsheets never write are parsed by the csv module. Records already parsed
(`BulkValidator.bulk`) are handed over one string each, their cells joined by a NUL (no
decoded CSV file holds one; a record that does goes to the exact path), and split again in
Polars. Either way the chunk is kept as Polars columns of cells, not Python lists (a chunk of
live lists makes the garbage collector's full passes cost more than the parsing itself), and
a record that the exact path needs is taken from them (`BulkResult.records_at`).
"""

from __future__ import annotations

import itertools
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

import polars as pl

from services.core.scheme.codes import MESSAGES, SEVERITY, Code
from services.core.scheme.columns import COLUMN_OF_CODE, COLUMNS, HeaderMap
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import Record, SegmentBytes, segment_records
from services.core.scheme.reference import InMemoryReference
from services.core.scheme.rules import (
    ACHIEVEMENT_MAX_AGE_DAYS,
    CITB_ID_PATTERN,
    CONTROL_CLASS,
    COURSE_CODE_PATTERN,
    FORMULA_STARTS,
    LEVY_NUMBER_PATTERN,
    MAX_AGE_YEARS,
    MIN_AGE_YEARS,
    NAME_MAX_CHARS,
    NINO_PATTERN,
    NOTES_BREAKS,
    NOTES_MAX_CHARS,
    PROVIDER_REFERENCE_MAX_CHARS,
    TEMPORARY_ULN,
    ULN_PATTERN,
    ULN_WEIGHTS,
    check_name,
    check_ni_number,
    parse_date,
)
from services.core.scheme.segment_records import LONE_RETURN, split_records
from services.core.scheme.text import LEVY_SEPARATORS, WHITE_SPACE, normalise_levy_number
from services.core.scheme.validation import (
    CITB_ID_KIND,
    NI_NUMBER_KIND,
    ULN_KIND,
    Achievement,
    DuplicateKey,
    Issue,
    RowResult,
    RowValidator,
)

# 50,000 records are about 10 MB of strings in Python and a few times that in Polars while
# the chunk is judged; enough that planning a chunk's queries (a few milliseconds each,
# whatever their rows) costs a few percent of its work.
CHUNK_RECORDS: Final = 50_000

# The columns of `BulkResult.valid`, in order: the row number, `Achievement`'s fields, the
# warning codes (template column order), then the row's duplicate key of each identifier kind
# as its `duplicate_key_text` (null when that identifier is not given), ULN, NI, CITB: the
# order of `RowResult.duplicate_keys`.
ROW_NUMBER: Final = "row_number"
WARNINGS: Final = "warnings"
KEY_COLUMNS: Final = (f"{ULN_KIND}_key", f"{NI_NUMBER_KIND}_key", f"{CITB_ID_KIND}_key")
VALID_COLUMNS: Final = (ROW_NUMBER, *Achievement._fields, WARNINGS, *KEY_COLUMNS)
VALID_SCHEMA: Final = pl.Schema(
    {
        ROW_NUMBER: pl.Int64(),
        "provider_reference": pl.String(),
        "course_code": pl.String(),
        "achievement_date": pl.Date(),
        "forename": pl.String(),
        "surname": pl.String(),
        "date_of_birth": pl.Date(),
        "uln": pl.String(),
        "ni_number": pl.String(),
        "citb_individual_id": pl.String(),
        "levy_number": pl.String(),
        "notes": pl.String(),
        "grant_eligible": pl.Boolean(),
        WARNINGS: pl.List(pl.String()),
        **dict.fromkeys(KEY_COLUMNS, pl.String()),
    }
)
if tuple(VALID_SCHEMA.names()) != VALID_COLUMNS:  # pragma: no cover - Achievement changed
    raise RuntimeError("the bulk pass's columns must follow Achievement's fields")

_SEPARATOR: Final = "\x00"
# The text of a record the Python side already leaves to the exact path (a non-empty cell
# beyond the header, a NUL in a cell): any other record's text has `width - 1` separators.
_UNPROVEN: Final = ""
_KEY_SEPARATOR: Final = "|"  # as `validation.duplicate_key_text`
# Distinct date texts remembered per column: every birth date of a century in two formats.
_DATE_CACHE_ENTRIES: Final = 1 << 17
# Rows of a chunk's full pass without `="` that are worth a query of their own, spared the
# unwrapping (about a microsecond a row) at the cost of planning one more query.
_SEPARATE_UNWRAPPING_ROWS: Final = 4000
# The full pass runs on the first rows left by the clean pass, then only while it proves at
# least this share of them, and on every few chunks whatever it proved before.
_FULL_PASS_TRIAL_ROWS: Final = 2000
_FULL_PASS_MIN_SHARE: Final = 0.4
_FULL_PASS_RETRY: Final = 8
# Any fixed seed: the hashes only need to agree within one file's check.
_HASH_SEED: Final = 0x5EED


def _char_class(characters: Iterable[str]) -> str:
    """A regex character class for Polars (Rust regex) of exactly `characters`, as `\\x{...}`
    escapes and ranges, so that no character can be read as syntax."""
    points = sorted({ord(character) for character in characters})
    parts: list[str] = []
    index = 0
    while index < len(points):
        end = index
        while end + 1 < len(points) and points[end + 1] == points[end] + 1:
            end += 1
        first, last = points[index], points[end]
        parts.append(f"\\x{{{first:X}}}" if first == last else f"\\x{{{first:X}}}-\\x{{{last:X}}}")
        index = end + 1
    return "[" + "".join(parts) + "]"


def _full(pattern: str) -> str:
    """`re.fullmatch` in Rust regex (whose `$` matches only at the very end, like `\\Z`)."""
    return f"^(?:{pattern})$"


def _removed(text: pl.Expr, characters: str) -> pl.Expr:
    """`text` with every one of `characters` removed, as one pass of literal single-character
    patterns (Aho-Corasick: about half the time of a regex character class; a single one is
    a literal search, faster again)."""
    if len(characters) == 1:
        return text.str.replace_all(characters, "", literal=True)
    return text.str.replace_many(list(characters), [""] * len(characters))


_NOTES_BREAK_CLASS: Final = _char_class(NOTES_BREAKS)
# `CONTROL_CLASS` is a class body of literal characters and ranges, which Rust regex reads as
# Python's `re` does (a unit test runs every character through both).
_CONTROL_PATTERN: Final = f"[{CONTROL_CLASS}]"

# The characters a learner's name may hold that the bulk pass judges itself: printable ASCII,
# the Latin, IPA, Greek and Cyrillic blocks with the combining marks, Latin Extended
# Additional, and the dashes and quotes of General Punctuation. A candidate is kept only when
# the exact rule accepts it as a name on its own, so a digit, a control character, `|` or `"`
# never is. The exact rule forbids single characters (a one-character class searched through
# the name), so a name of accepted characters within the length limit is valid. Any other
# character (a digit of another script, a bidirectional control, an emoji) sends the row to
# the exact path.
_NAME_CANDIDATES: Final = (
    range(0x20, 0x7F),
    range(0xA0, 0x530),
    range(0x1E00, 0x1F00),
    range(0x2010, 0x2028),
)
NAME_CHARACTERS: Final = frozenset(
    chr(point)
    for block in _NAME_CANDIDATES
    for point in block
    if check_name(chr(point), Code.NAME_01) is None
)
_NAME_PATTERN: Final = f"^{_char_class(NAME_CHARACTERS)}+$"

# The NI number prefixes the exact rule accepts. Once the format holds, `check_ni_number` looks
# only at the two prefix letters (section 3.2: there is no check digit), so asking it about
# each of the 676 prefixes with any fixed digits and suffix gives exactly those it accepts.
_NINO_SAMPLE_TAIL: Final = "123456A"
ISSUED_NINO_PREFIXES: Final = tuple(
    first + second
    for first in map(chr, range(ord("A"), ord("Z") + 1))
    for second in map(chr, range(ord("A"), ord("Z") + 1))
    if check_ni_number(first + second + _NINO_SAMPLE_TAIL) is None
)

# The ULN check digit's weighted sum (section 3.1) as three table look-ups, one per group of
# three digits of d1..d9: ten times fewer column operations than digit by digit.
_ULN_GROUP_TABLES: Final = tuple(
    pl.Series(
        [
            sum(
                weight * int(digit)
                for weight, digit in zip(
                    ULN_WEIGHTS[group : group + 3], f"{value:03d}", strict=True
                )
            )
            for value in range(1000)
        ],
        dtype=pl.Int64,
    )
    for group in (0, 3, 6)
)
if len(ULN_WEIGHTS) != 9:  # pragma: no cover - the tables cover d1..d9 exactly
    raise RuntimeError("the ULN check digit weighs nine digits")

# Every combination of the warnings in template column order, indexed by a bit set of
# ACHDATE_03, LEVY_03, LEVY_02 and NOTES_02 (bits 0 to 3).
_WARNING_BITS: Final = (Code.ACHDATE_03, Code.LEVY_03, Code.LEVY_02, Code.NOTES_02)
_WARNING_LISTS: Final = pl.Series(
    [
        [code.value for bit, code in enumerate(_WARNING_BITS) if bits >> bit & 1]
        for bits in range(1 << len(_WARNING_BITS))
    ],
    dtype=pl.List(pl.String),
)
_WARNING_ISSUE_PARTS: Final = {
    code: (COLUMN_OF_CODE[code], code, SEVERITY[code], MESSAGES[code])
    for code in (Code.ACHDATE_03, Code.LEVY_02, Code.LEVY_03, Code.NOTES_02)
}
# The issue parts of each list of warnings `_WARNING_LISTS` holds, keyed by its codes joined by
# a comma: a row's warnings become issues without a Python list or a `Code` per warning.
_WARNING_PARTS_OF_CODES: Final = {
    ",".join(codes): tuple(_WARNING_ISSUE_PARTS[Code(code)] for code in codes)
    for codes in _WARNING_LISTS.to_list()
}


def warning_issue(row_number: int, code: str) -> Issue:
    """The Issue `RowValidator` reports for a warning on a row."""
    column, issue_code, severity, message = _WARNING_ISSUE_PARTS[Code(code)]
    return Issue(row_number, column, issue_code, severity, message)


def duplicate_key(text: str) -> DuplicateKey:
    """A duplicate key from its `duplicate_key_text` (no part can hold a `|`)."""
    course_code, iso_date, kind, identifier = text.split(_KEY_SEPARATOR)
    return course_code, iso_date, kind, identifier


@dataclass(frozen=True, slots=True)
class BulkResult:
    """One chunk after the bulk pass.

    `valid`: the rows proven valid, in row order, with `VALID_SCHEMA` (Date columns give
    Python `date`s; an empty optional value is null; `grant_eligible` as `Achievement`), or
    only `ROW_NUMBER`, `WARNINGS` and `KEY_COLUMNS` from a validator made with `values=False`.
    `exact`: the records the bulk pass did not prove valid, in row order, for `RowValidator`
    (which may still find one blank). `records`: how many records the chunk took; the rest
    are blank rows (`rows_blank`), which are skipped and not counted.
    """

    valid: pl.DataFrame
    exact: list[Record]
    records: int
    rows_blank: int
    # The chunk's cells (`ROW_NUMBER` and `_cell_0`...), one row per record in `_position`
    # order, and the records those cells cannot stand for, as they came, by position.
    _cells: pl.DataFrame = field(repr=False)
    _originals: dict[int, Record] = field(repr=False)

    @property
    def rows_valid(self) -> int:
        return self.valid.height

    def record(self, position: int) -> Record:
        """The chunk's `position`th record, cells as `RowValidator` reads them (a short record
        padded with empty cells, empty cells beyond the header dropped)."""
        return self.records_at([position])[0]

    def records_at(self, positions: Sequence[int]) -> list[Record]:
        """`record` of each position, taken from the columns in one step."""
        originals = self._originals
        taken = self._cells[list(positions)].rows()
        return [
            originals.get(position) or (row[0], list(row[1:]))
            for position, row in zip(positions, taken, strict=True)
        ]

    def cells_of(self, row_numbers: Iterable[int]) -> dict[int, list[str]]:
        """The cells of the chunk's rows among `row_numbers`, in file order (for the masked
        values of issues in an error report). Only those rows leave the columns: every row of
        a chunk as Python objects cost a sixth of a validator's time."""
        wanted = pl.Series(list(row_numbers), dtype=self._cells.schema[ROW_NUMBER])
        if not wanted.len():
            return {}
        positions = (
            self._cells.select(ROW_NUMBER)
            .with_row_index("_position")
            .filter(pl.col(ROW_NUMBER).is_in(wanted.implode()))
            .get_column("_position")
            .to_list()
        )
        return dict(self.records_at(positions))

    def valid_results(self) -> list[RowResult]:
        """The proven rows as the `RowResult`s `RowValidator` gives for them. One Python object
        per row: for tests and the combined `validate_chunk`; a COPY reads `valid` instead."""
        fields = len(Achievement._fields)
        return [
            RowResult(
                row[0],
                tuple(warning_issue(row[0], code) for code in row[fields + 1]),
                Achievement(*row[1 : fields + 1]),
                tuple(duplicate_key(key) for key in row[fields + 2 :] if key is not None),
            )
            for row in self.valid.select(VALID_COLUMNS).iter_rows()
        ]

    def warning_issues(self) -> tuple[list[int], list[Issue]]:
        """The row numbers of the proven rows that carry a warning, in row order, and the
        issues of those warnings (`warning_issue` of each), in the same order."""
        warned = self.valid.filter(pl.col(WARNINGS).list.len() > 0)
        rows = warned[ROW_NUMBER].to_list()
        codes = warned[WARNINGS].list.join(",").to_list()
        parts_of = _WARNING_PARTS_OF_CODES
        issues = [
            Issue(row, *parts)
            for row, joined in zip(rows, codes, strict=True)
            for parts in parts_of[joined]
        ]
        return rows, issues

    def key_frame(self) -> pl.DataFrame:
        """Every duplicate key of the proven rows: `row_number` and `key` (the text), the ULN
        keys in row order, then the NI number keys, then the CITB ID keys."""
        return pl.concat(
            self.valid.select(ROW_NUMBER, pl.col(column).alias("key")) for column in KEY_COLUMNS
        ).drop_nulls("key")


class DateReader:
    """The dates of a column by `rules.parse_date` itself, as a struct of `day` (the date),
    `number` (year * 10000 + month * 100 + day, for comparing days of the year and counting
    years) and, when asked for, `iso` (`date.isoformat`, as duplicate keys spell it): each
    null where it finds no date.

    Dates repeat: a file holds a few hundred distinct achievement dates and some tens of
    thousands of birth dates, so the exact rule on each distinct text, remembered for the
    file, costs less than parsing every row in Polars, and cannot read a date otherwise. What
    it remembers is kept as Polars columns (the texts, and a row of the fields for each), so
    a chunk whose texts are all known costs one look-up in Polars and no Python object per
    text; the fields, computed once per text, spare the plans taking every row's date apart.
    Use one reader per column: each look-up hashes every text the reader knows.

    (Polars may call this from its threads: a call reads what is known as one tuple and
    stores a new tuple; two calls at once can only lose what the other learnt.)

    An object of its own, not a method of `BulkValidator`: the plans hold it inside Polars,
    where Python's collector cannot see, and a bound method would hold the validator in a
    cycle nothing frees.
    """

    def __init__(self, *, iso: bool = False) -> None:
        self._iso = iso
        fields = {"day": pl.Date(), "number": pl.Int32()} | ({"iso": pl.String()} if iso else {})
        self.dtype: Final = pl.Struct(fields)
        self._known = (pl.Series([], dtype=pl.String), pl.DataFrame(schema=fields))

    def __call__(self, texts: pl.Series) -> pl.Series:
        known_texts, known = self._known
        # Each text's row among the known ones (null: not known yet, or a null text).
        rows = pl.int_range(known_texts.len(), dtype=pl.UInt32, eager=True)
        index = texts.replace_strict(known_texts, rows, default=None, return_dtype=pl.UInt32)
        new = texts.filter(index.is_null()).drop_nulls().unique()
        if new.len():
            if known_texts.len() + new.len() > _DATE_CACHE_ENTRIES:  # start over: this column
                known_texts, known = known_texts.clear(), known.clear()
                new = texts.drop_nulls().unique()
                index = pl.repeat(None, texts.len(), dtype=pl.UInt32, eager=True)
            added = pl.DataFrame(
                [self._fields(parse_date(text)) for text in new.to_list()],
                schema=known.schema,
                orient="row",
            )
            first = known_texts.len()
            new_rows = pl.int_range(first, first + new.len(), dtype=pl.UInt32, eager=True)
            known_texts = pl.concat([known_texts, new], rechunk=True)
            known = pl.concat([known, added], rechunk=True)
            self._known = (known_texts, known)
            # Only the new texts looked up again: the rest keep the rows found above.
            index = texts.replace_strict(new, new_rows, default=index, return_dtype=pl.UInt32)
        return known.select(pl.all().gather(index)).to_struct(texts.name)

    def _fields(self, day: date | None) -> tuple[Any, ...]:
        if day is None:
            return (None, None, None) if self._iso else (None, None)
        number = day.year * 10000 + day.month * 100 + day.day
        return (day, number, day.isoformat()) if self._iso else (day, number)


class BulkValidator:
    """Both passes for the records of one file: one header, one upload date, one reference
    snapshot. Keeps the Polars plans and the exact path's caches across chunks.

    `values=False` leaves the `Achievement` values out of `BulkResult.valid` (what the offline
    check does: it needs validity, warnings and duplicate keys only), which saves their work.
    """

    def __init__(
        self,
        header_map: HeaderMap,
        today: date,
        reference: InMemoryReference,
        *,
        values: bool = True,
    ) -> None:
        self.exact_validator = RowValidator(header_map, today, reference)
        self._width = header_map.width
        # The cells of a record in header order, padded to the header's width.
        self._cell_columns = tuple(f"_cell_{index}" for index in range(header_map.width))
        self._columns = VALID_COLUMNS if values else (ROW_NUMBER, WARNINGS, *KEY_COLUMNS)
        self._schema = pl.Schema({name: VALID_SCHEMA[name] for name in self._columns})
        # One reader a column (see DateReader), shared by the passes.
        self._dates = (DateReader(iso=True), DateReader())
        # Chunks judged, and the rows the full pass judged and proved (`_full_pass_pays`).
        self._chunks = self._full_rows = self._full_proven = 0
        # Records the reading of `bulk_bytes` left to the csv module, by reason
        # (`segment_records.FALLBACK_REASONS`): what the benchmarks report per file.
        self.fallbacks: Counter[str] = Counter()
        self._clean = _plan(header_map, today, reference, self._dates, clean=True)
        self._full = _plan(header_map, today, reference, self._dates, clean=False)
        self._full_unwrapping = _plan(
            header_map, today, reference, self._dates, clean=False, wrapped=True
        )

    def bulk(self, records: Iterable[Record]) -> BulkResult:
        """The bulk pass over one chunk: takes every record of `records` (so pass a bounded
        iterable, such as `itertools.islice(records, CHUNK_RECORDS)`)."""
        frame, originals = self._cells_of(records)
        return self._judge(frame, originals)

    def bulk_bytes(self, segments: Sequence[SegmentBytes], delimiter: str) -> BulkResult:
        """The bulk pass over a chunk read by `record_scanner.read_chunk_bytes` with
        `delimiter`: the result of `bulk` over the same records, without a Python object per
        record that has no quote (Polars splits their lines into cells, from the UTF-8 bytes as
        they are)."""
        parts: list[pl.DataFrame] = []
        by_row: dict[int, Record] = {}
        for data, first_row in segments:
            if not data:
                continue
            pieces = _lines_of_bytes(data)
            returns = data.count(b"\r")
            # Every CR is part of a CR LF when as many lines (split at LF) end with one as
            # there are CRs, and the data does not end with one. Otherwise the csv module reads
            # the segment's records.
            if returns and (data.endswith(b"\r") or returns != pieces.str.ends_with("\r").sum()):
                records = segment_records(data.decode(Encoding.UTF_8.value), delimiter, first_row)
                self.fallbacks[LONE_RETURN] += len(records)
                parts.append(self._record_cells(records, by_row))
                continue
            parts.extend(
                self._line_cells(
                    pieces,
                    first_row,
                    delimiter,
                    by_row,
                    data=data,
                    has_quote=b'"' in data,
                    has_return=returns > 0,
                )
            )
        return self._judge_parts(parts, by_row)

    def _record_cells(self, records: list[Record], by_row: dict[int, Record]) -> pl.DataFrame:
        """`_cells_of` the records; adds the records that cells cannot stand for to `by_row`."""
        cells, originals = self._cells_of(records)
        by_row.update((record[0], record) for record in originals.values())
        return cells

    def _judge_parts(self, parts: list[pl.DataFrame], by_row: dict[int, Record]) -> BulkResult:
        """`_judge` over the cells of a chunk's segments, `by_row` the records that cells
        cannot stand for."""
        if not parts:
            return self.bulk(())
        frame = pl.concat(parts).sort(ROW_NUMBER) if len(parts) > 1 else parts[0]
        by_position: dict[int, Record] = {}
        if by_row:
            rows = frame[ROW_NUMBER]
            for position in rows.is_in(list(by_row)).arg_true().to_list():
                by_position[position] = by_row[rows[position]]
        return self._judge(frame, by_position)

    def _line_cells(
        self,
        pieces: pl.Series,
        first_row: int,
        delimiter: str,
        originals: dict[int, Record],
        *,
        data: bytes,
        has_quote: bool,
        has_return: bool,
    ) -> list[pl.DataFrame]:
        """The cells of a segment's records (`_cells_of`) from its lines (`_lines_of_bytes`),
        the lines without a quote split in Polars; adds the records that cells cannot stand for
        to `originals`, by row number. `data` is the segment's UTF-8 bytes (decoded only when
        it `has_quote`); `has_return`: whether it holds a CR (of a CR LF: no other)."""
        width = self._width
        split = split_records(
            pieces,
            first_row,
            delimiter,
            width,
            text=lambda: data.decode(Encoding.UTF_8.value),
            has_quote=has_quote,
            has_return=has_return,
        )
        self.fallbacks.update(split.fallbacks)
        parts: list[pl.DataFrame] = []
        if split.parsed:
            parts.append(self._record_cells(split.parsed, originals))
        if split.quoted is not None:
            parts.append(
                split.quoted.select(
                    ROW_NUMBER,
                    pl.lit(True).alias("_takeable"),
                    *(
                        pl.col(f"field_{index}").alias(name)
                        for index, name in enumerate(self._cell_columns)
                    ),
                )
            )
        lines = split.plain
        line = pl.col("_line")
        if has_return:
            line = line.str.strip_suffix("\r")
        # A line is its record: its cells split at every delimiter. `splitn` leaves the cells
        # beyond the header, still joined by the delimiter, in one more field. (Split in a step
        # of its own: an expression naming the split's fields one by one splits every time.)
        split_lines = lines.select(
            ROW_NUMBER, line.str.splitn(delimiter, width + 1).alias("_fields")
        ).unnest("_fields")
        extra = pl.col(f"field_{width}")
        # A short line lacks its last fields: padded with empty cells, as RowValidator pads.
        short = split_lines[f"field_{width - 1}"].null_count() > 0
        plain = split_lines.select(
            ROW_NUMBER,
            (extra.is_null() | (extra.str.strip_chars(WHITE_SPACE + delimiter) == "")).alias(
                "_takeable"
            ),
            *(
                (
                    pl.col(f"field_{index}").fill_null("") if short else pl.col(f"field_{index}")
                ).alias(name)
                for index, name in enumerate(self._cell_columns)
            ),
            extra.alias("_extra"),
        )
        for row in plain.filter(~pl.col("_takeable")).drop("_takeable").iter_rows():
            originals[row[0]] = (row[0], [*row[1:-1], *row[-1].split(delimiter)])
        parts.append(plain.drop("_extra"))
        return parts

    def _cells_of(self, records: Iterable[Record]) -> tuple[pl.DataFrame, dict[int, Record]]:
        """`ROW_NUMBER`, `_takeable` and the cells of `records` (padded to the header's width)
        in their order, and the records the cells cannot stand for, by position."""
        rows, texts, originals = self._take(records)
        try:
            frame = pl.DataFrame(
                {
                    ROW_NUMBER: pl.Series(rows, dtype=pl.Int64),
                    "_record": pl.Series(texts, dtype=pl.String),
                }
            )
        except UnicodeError:  # a lone surrogate: never decoded from a file; the exact path copes
            for position, (row, text) in enumerate(zip(rows, texts, strict=True)):
                originals.setdefault(position, (row, text.split(_SEPARATOR)))
            frame = pl.DataFrame({ROW_NUMBER: pl.Series(rows, dtype=pl.Int64)})
            return frame.with_columns(
                pl.lit(False).alias("_takeable"),
                *(pl.lit("", dtype=pl.String).alias(name) for name in self._cell_columns),
            ), originals
        record = pl.col("_record")
        split = frame.select(
            ROW_NUMBER,
            (record != _UNPROVEN).alias("_takeable"),
            record.str.split_exact(_SEPARATOR, self._width - 1).alias("_fields"),
        ).unnest("_fields")
        return split.select(
            ROW_NUMBER,
            "_takeable",
            *(
                pl.col(f"field_{index}").fill_null("").alias(name)
                for index, name in enumerate(self._cell_columns)
            ),
        ), originals

    def _judge(self, cells: pl.DataFrame, originals: dict[int, Record]) -> BulkResult:
        """Both engines' work on a chunk's cells (`_cells_of`): proves what it can, hands the
        rest to the exact path."""
        frame = cells.with_row_index("_position")
        cells = cells.drop("_takeable")
        rows = frame.height
        empty = pl.DataFrame(schema=self._schema)
        if not rows:
            return BulkResult(empty, [], 0, 0, cells, originals)
        # First the clean pass: cells as they are, nothing trimmed or unwrapped (codes and
        # identifiers are still normalised), so it proves only rows whose free text and dates
        # are already in normal form (most rows of most files) with the least work a row. The
        # rows it leaves go through the full pass, which reads every cell as the scheme does.
        clean = self._clean(frame.lazy()).select("_position", "_proven", *self._columns)
        judged = clean.collect()
        proven = judged["_proven"]
        rows_blank = 0
        unproven: list[int] = []
        if proven.all():  # the usual chunk: nothing left for the full pass
            return BulkResult(judged.select(self._columns), [], rows, 0, cells, originals)
        valid = judged.filter(proven).drop("_proven")
        rest = frame.filter(~proven)
        self._chunks += 1
        if not self._full_pass_pays():
            unproven = rest["_position"].to_list()
        else:
            # A wrapped cell `="…"` leaves `="` in a cell: only such records need the
            # unwrapping of every cell. A query costs milliseconds to plan, so the others are
            # spared it only when there are many.
            wrapped = rest.select(
                pl.any_horizontal(
                    pl.col(name).str.contains('="', literal=True) for name in self._cell_columns
                )
            ).to_series()
            columns = ("_position", "_proven", "_blank", *self._columns)
            wrapped_count = int(wrapped.sum())
            if not wrapped_count:
                parts = [(self._full, rest)]
            elif rest.height - wrapped_count < _SEPARATE_UNWRAPPING_ROWS:
                parts = [(self._full_unwrapping, rest)]
            else:
                parts = [
                    (self._full, rest.filter(~wrapped)),
                    (self._full_unwrapping, rest.filter(wrapped)),
                ]
            judged = pl.concat(
                pl.collect_all([plan(part.lazy()).select(columns) for plan, part in parts])
            )
            full_proven = judged.filter("_proven")
            self._full_rows += rest.height
            self._full_proven += full_proven.height
            valid = pl.concat([valid, full_proven.drop("_proven", "_blank")]).sort("_position")
            rows_blank = int(judged["_blank"].sum())
            unproven = (
                judged.filter(~pl.col("_proven") & ~pl.col("_blank"))["_position"].sort().to_list()
            )
        result = BulkResult(valid.select(self._columns), [], rows, rows_blank, cells, originals)
        result.exact.extend(result.records_at(unproven))
        return result

    def _full_pass_pays(self) -> bool:
        """Whether the full pass is worth running on the rows the clean pass left.

        It costs about half the row validator's time a row, so it pays only while most of
        those rows are valid; in a file where they mostly have errors (they go to the row
        validator anyway) it is skipped, and tried again every few chunks in case the file
        changes. Either way every row ends with the same result.
        """
        if self._full_rows < _FULL_PASS_TRIAL_ROWS or self._chunks % _FULL_PASS_RETRY == 0:
            return True
        return self._full_proven >= self._full_rows * _FULL_PASS_MIN_SHARE

    def chunks(self, records: Iterable[Record], size: int = CHUNK_RECORDS) -> Iterator[BulkResult]:
        """The bulk pass over `records` chunk by chunk, `size` records at a time."""
        if size < 1:
            raise ValueError("a chunk holds at least one record")
        iterator = iter(records)
        while (result := self.bulk(itertools.islice(iterator, size))).records:
            yield result

    def exact(self, records: Iterable[Record]) -> list[RowResult]:
        """The exact path: `RowValidator` over `records`, blank rows dropped."""
        validate = self.exact_validator.validate
        return [result for record in records if (result := validate(record)) is not None]

    def validate_chunk(self, records: Iterable[Record]) -> list[RowResult]:
        """Both passes over one chunk: exactly `RowValidator`'s results for the records, blank
        rows dropped, in row order. DUP_01 and DUP_02 (cross-row) are the caller's."""
        bulk = self.bulk(records)
        results = bulk.valid_results()
        exact = self.exact(bulk.exact)
        if exact:
            results += exact
            results.sort(key=operator.itemgetter(0))
        return results

    def _take(self, records: Iterable[Record]) -> tuple[list[int], list[str], dict[int, Record]]:
        """Each record as one string of exactly `width` cells, cells as `RowValidator` reads
        them. The csv module's list is kept only for a record whose string cannot stand for it
        (a non-empty cell beyond the header, a NUL in a cell): those go to the exact path."""
        width = self._width
        separators = width - 1
        join = _SEPARATOR.join
        rows: list[int] = []
        texts: list[str] = []
        originals: dict[int, Record] = {}
        add_row, add_text = rows.append, texts.append
        for record in records:
            row, cells = record
            count = len(cells)
            if count == width:
                text = join(cells)
            elif count < width:  # padded with empty cells, as RowValidator pads
                text = join(itertools.chain(cells, itertools.repeat("", width - count)))
            elif any(cell.strip(WHITE_SPACE) for cell in cells[width:]):
                text = _UNPROVEN  # ROW_01
            else:  # empty cells beyond the header change nothing
                text = join(cells[:width])
            if text.count(_SEPARATOR) != separators:  # ROW_01 above, or a NUL in a cell
                originals[len(texts)] = record
                text = _UNPROVEN
            add_row(row)
            add_text(text)
        return rows, texts, originals


def validate_records(
    records: Iterable[Record], header: HeaderMap, today: date, reference: InMemoryReference
) -> BulkResult:
    """The bulk pass over one chunk. A file's chunks should share one `BulkValidator`, which
    keeps the plans and the exact path's caches."""
    return BulkValidator(header, today, reference).bulk(records)


def validate_chunk(
    records: Iterable[Record], header: HeaderMap, today: date, reference: InMemoryReference
) -> list[RowResult]:
    """Both passes over one chunk: exactly `RowValidator(header, today, reference)`'s results
    for `records`, blank rows dropped."""
    return BulkValidator(header, today, reference).validate_chunk(records)


class InFileDuplicateKeys:
    """DUP_01 in memory over both passes: the rule of `validation.InFileDuplicates`, chunk by
    chunk.

    A row is a duplicate when one of its keys belongs to an earlier row of the file (valid or
    not). Within a chunk that is "a key whose first row is earlier", so the keys of the two
    passes need not be merged into row order. Across chunks, the keys of the earlier chunks
    are kept in Polars with their 64-bit hashes (about 70 bytes a key, no Python object); a
    chunk's hashes are looked for among them in one pass (a hash table of the chunk's hashes,
    probed by every earlier one: a few nanoseconds a key), and only the keys of a hash seen
    before are compared as text.
    """

    def __init__(self) -> None:
        # The hashes and the texts of the earlier chunks' keys, each chunk appended as a chunk
        # of its own: a chunk's look costs one pass over the hashes, and no copy of the texts.
        self._hashes = pl.Series("hash", [], dtype=pl.UInt64)
        self._keys = pl.Series("key", [], dtype=pl.String)

    def find(self, bulk: BulkResult, exact: Sequence[RowResult]) -> set[int]:
        """The row numbers of this chunk, of either pass, that get DUP_01. Call once per chunk,
        chunks in file order; `exact` are the results of `bulk.exact`."""
        keys = bulk.key_frame()
        exact_keys = [
            (result.row_number, _KEY_SEPARATOR.join(key))
            for result in exact
            for key in result.duplicate_keys
        ]
        if exact_keys:
            keys = pl.concat([keys, pl.DataFrame(exact_keys, schema=keys.schema, orient="row")])
        keys = keys.with_columns(pl.col("key").hash(_HASH_SEED).alias("hash"))
        # The keys of earlier chunks with one of this chunk's hashes.
        earlier = self._keys.filter(self._hashes.is_in(keys["hash"].implode()))
        self._hashes.append(keys["hash"])
        self._keys.append(keys["key"])
        repeats = keys["hash"].is_duplicated()  # computed once: it hashes every key
        if not earlier.len() and not repeats.any():
            return set()  # the usual chunk: every key new, and once
        # Only a key whose hash repeats, in this chunk or from an earlier one, can be a
        # duplicate; every row holding such a key text holds its hash too.
        candidates = keys.filter(repeats | pl.col("key").is_in(earlier.implode()))
        repeated = candidates.filter(
            (pl.col(ROW_NUMBER) > pl.col(ROW_NUMBER).min().over("key"))
            | pl.col("key").is_in(earlier.implode())
        )
        return set(repeated[ROW_NUMBER].to_list())


def _lines_of_bytes(data: bytes) -> pl.Series:
    """The lines of the text whose UTF-8 encoding is `data` (split at LF: a CR of a CR LF
    stays), as `_line`, without that text: Polars checks the bytes are UTF-8 (raising if not)
    and splits them itself."""
    text = pl.Series("_line", [data], dtype=pl.Binary).cast(pl.String)
    pieces = text.str.split("\n").explode()
    if data.endswith(b"\n"):
        pieces = pieces.head(pieces.len() - 1)  # the empty piece after the last break
    return pieces


def _ascii(text: pl.Expr) -> pl.Expr:
    """Whether every character is ASCII. Upper-casing then agrees with Python's `str.upper`;
    outside ASCII it need not (Python upper-cases the dotless i, U+0131, to `I`, and the two
    engines may follow different Unicode versions)."""
    return text.str.len_bytes() == text.str.len_chars()


def _free_text() -> str:
    """A free-text cell already in normal form (for the clean pass): empty, or no control
    character (so no line break to replace) and no white space at either end."""
    edge = _negated_class([*_CONTROL_CHARACTERS, *WHITE_SPACE])
    inner = _negated_class(_CONTROL_CHARACTERS)
    return f"^(?:{edge}(?:{inner}*{edge})?)?$"


def _negated_class(characters: Iterable[str]) -> str:
    return "[^" + _char_class(characters)[1:]


# Cc, as `CONTROL_CLASS` lists it, one character at a time (for negated classes).
_CONTROL_CHARACTERS: Final = tuple(
    character for character in map(chr, range(0x100)) if re.fullmatch(_CONTROL_PATTERN, character)
)
_NAME_EDGE: Final = _char_class(NAME_CHARACTERS - frozenset(WHITE_SPACE))
_CLEAN_NAME_PATTERN: Final = f"^{_NAME_EDGE}(?:{_char_class(NAME_CHARACTERS)}*{_NAME_EDGE})?$"
_CLEAN_FREE_TEXT_PATTERN: Final = _free_text()

# Internal column names of the cells, template order.
_CELL_NAMES: Final = tuple(f"_{spec.column.value}" for spec in COLUMNS)


def _plan(
    header_map: HeaderMap,
    today: date,
    reference: InMemoryReference,
    dates: tuple[DateReader, DateReader],
    *,
    clean: bool,
    wrapped: bool = False,
) -> Callable[[pl.LazyFrame], pl.LazyFrame]:
    """The Polars plan of the bulk pass over `row_number`, `_position`, `_takeable` (whether
    the cells stand for the record) and the cells `_cell_0`... (`BulkValidator._cells_of`);
    gives `_position`, `_proven`, `_blank` and `VALID_COLUMNS`, one row per record, in order.

    `clean`: the cells are taken as they are, so only rows whose free-text cells and dates
    are already in normal form can be proven (nothing to trim or unwrap). Otherwise every cell
    is read as the scheme reads it; `wrapped` says whether a record may hold a `="…"` cell.

    The expressions are built once, in stages that each name their results: a later stage
    reads columns, not the expressions again, which keeps the plan small. Planning a query
    costs a few milliseconds whatever its rows, so its size matters as much as its work.
    """
    courses = list(reference.courses())
    # COURSE_02 holds for a code in the catalogue when every code there has the format (the
    # bulk pass proves only rows whose course is in it): the usual reference spares the look.
    catalogue_codes_valid = all(
        course.code.isascii() and re.fullmatch(COURSE_CODE_PATTERN, course.code.upper())
        for course in courses
    )
    course_codes = pl.Series([course.code.upper() for course in courses], dtype=pl.String)
    valid_from = pl.Series([course.valid_from for course in courses], dtype=pl.Date)
    valid_to = pl.Series([course.valid_to for course in courses], dtype=pl.Date)
    # The register as `InMemoryReference.employer` reads it: keyed by the normalised number.
    eligible = pl.Series(
        sorted(
            normalise_levy_number(employer.levy_number)
            for employer in reference.employers()
            if employer.grant_eligible
        ),
        dtype=pl.String,
    ).implode()
    issued_prefixes = pl.Series(ISSUED_NINO_PREFIXES, dtype=pl.String).implode()
    try:
        stale_before: date | None = today - timedelta(days=ACHIEVEMENT_MAX_AGE_DAYS)
    except OverflowError:  # no date is more than 10 days before an upload date in year 1
        stale_before = None
    takeable = pl.col("_takeable")
    (ref, course, achieved, forename, surname, born, uln, nino, citb, levy, notes) = (
        pl.col(name) for name in _CELL_NAMES
    )
    cells = tuple(zip(_CELL_NAMES, header_map.indices, strict=True))
    stages: list[list[pl.Expr]] = []

    # The cells, as they are (clean) or trimmed (section 8) and maybe unwrapped.
    if clean:
        stages.append(
            [
                *(pl.col(f"_cell_{index}").alias(name) for name, index in cells),
                pl.lit(False).alias("_blank"),
            ]
        )
    else:
        stages.append(
            [
                pl.col(f"_cell_{index}").str.strip_chars(WHITE_SPACE).alias(name)
                for name, index in cells
            ]
        )
        # Blank: every cell empty once trimmed, before unwrapping, as `RowValidator` decides.
        blank = takeable & pl.all_horizontal(pl.col(name) == "" for name in _CELL_NAMES)
        stages.append([blank.fill_null(False).alias("_blank")])
        if wrapped:
            stages.append([_unwrapped(pl.col(name)).alias(name) for name in _CELL_NAMES])

    # The course code and the identifiers normalised. Removing every white-space character
    # ("spaces removed", `text.remove_white_space`) trims too: no trimmed cell needed. The
    # clean pass removes the space only (a literal search, about half the time): any other
    # white space left fails the identifier's pattern, so that row is not proven here, and a
    # row proven holds no other white space, so its values are the same.
    white_space = " " if clean else WHITE_SPACE
    stages.append(
        [
            course.str.to_uppercase().alias("_course_code"),
            _removed(uln, white_space).alias("_uln"),
            _removed(nino, white_space).alias("_nino_raw"),
            _removed(citb, white_space).alias("_citb_raw"),
            _removed(levy, white_space + LEVY_SEPARATORS).alias("_levy_raw"),
            (notes if clean else notes.str.replace_all(_NOTES_BREAK_CLASS, " ")).alias("_notes"),
        ]
    )
    nino_raw, citb_raw, levy_raw = pl.col("_nino_raw"), pl.col("_citb_raw"), pl.col("_levy_raw")
    stages.append(
        [
            nino_raw.str.to_uppercase().alias("_nino"),
            citb_raw.str.to_uppercase().alias("_citb"),
            levy_raw.str.to_uppercase().alias("_levy"),
            pl.col("_uln").str.contains(_full(ULN_PATTERN)).alias("_uln_format"),
        ]
    )
    course_code, uln_number = pl.col("_course_code"), pl.col("_uln")
    nino_value, citb_value = pl.col("_nino"), pl.col("_citb")
    levy_value, notes_value = pl.col("_levy"), pl.col("_notes")

    # `_shape`: every rule about the characters and formats of the cells holds (REF_01 but
    # its length, COURSE_01, COURSE_02, NAME_01 and NAME_02 but their lengths, ULN_01,
    # NINO_01, CITBID_01, LEVY_01, NOTES_01 but its length).
    codes_ok = (
        _ascii(course)
        & (
            pl.lit(True)
            if catalogue_codes_valid
            else course_code.str.contains(_full(COURSE_CODE_PATTERN))
        )
        & ((uln == "") | pl.col("_uln_format"))
        & ((nino == "") | (_ascii(nino_raw) & nino_value.str.contains(_full(NINO_PATTERN))))
        & ((citb == "") | (_ascii(citb_raw) & citb_value.str.contains(_full(CITB_ID_PATTERN))))
        & (
            (levy_value == "")
            | (_ascii(levy_raw) & levy_value.str.contains(_full(LEVY_NUMBER_PATTERN)))
        )
    )
    if clean:
        text_ok = (
            # No `="…"` to unwrap; no white space to trim. Only a free-text cell can hold
            # one and pass its rule (the other cells' patterns and formats have no `=` and
            # no `"`), and with no white space to trim it would start the cell.
            ~ref.str.starts_with('="')
            & ~notes.str.starts_with('="')
            & ref.str.contains(_CLEAN_FREE_TEXT_PATTERN)
            & forename.str.contains(_CLEAN_NAME_PATTERN)
            & surname.str.contains(_CLEAN_NAME_PATTERN)
            & notes.str.contains(_CLEAN_FREE_TEXT_PATTERN)
        )
    else:
        text_ok = (
            ~ref.str.contains(_CONTROL_PATTERN)
            & forename.str.contains(_NAME_PATTERN)
            & surname.str.contains(_NAME_PATTERN)
            & ~notes_value.str.contains(_CONTROL_PATTERN)
        )
    stages.append(
        [
            (codes_ok & text_ok).alias("_shape"),
            achieved.map_batches(dates[0], return_dtype=dates[0].dtype, is_elementwise=True).alias(
                "_achieved"
            ),
            born.map_batches(dates[1], return_dtype=dates[1].dtype, is_elementwise=True).alias(
                "_born"
            ),
            # The course's place in the catalogue (null when it is not there).
            course_code.replace_strict(
                course_codes, pl.int_range(course_codes.len(), dtype=pl.UInt32), default=None
            ).alias("_course"),
            # Only ULNs of the right format (ten digits) reach the look-ups, which stay in range.
            pl.when("_uln_format").then(uln_number.cast(pl.Int64, strict=False)).alias("_uln_int"),
            # The identifiers given, each null when its cell is empty.
            pl.when(uln != "").then(uln_number).alias("_uln_given"),
            pl.when(nino != "").then(nino_value).alias("_nino_given"),
            pl.when(citb != "").then(citb_value).alias("_citb_given"),
            (levy_value != "").alias("_levy_given"),
        ]
    )
    achieved_fields, born_fields = pl.col("_achieved"), pl.col("_born")
    stages.append(
        [
            achieved_fields.struct.field("day").alias("_achieved_date"),
            achieved_fields.struct.field("number").alias("_achieved_number"),
            achieved_fields.struct.field("iso").alias("_achieved_iso"),
            born_fields.struct.field("day").alias("_born_date"),
            born_fields.struct.field("number").alias("_born_number"),
        ]
    )
    achieved_date = pl.col("_achieved_date")
    levy_given = pl.col("_levy_given")
    born_date = pl.col("_born_date")

    stages.append(
        [
            pl.lit(valid_from).gather(pl.col("_course")).alias("_from"),
            pl.lit(valid_to).gather(pl.col("_course")).alias("_to"),
            # DOB_02: completed years, rising on the birthday (`rules.check_age`): the year
            # difference less one before the birthday is the floor of the difference of the
            # YYYYMMDD numbers over 10000 (the month and day part differ by less than that).
            ((pl.col("_achieved_number") - pl.col("_born_number")) // 10000).alias("_age"),
            _uln_check_digit(pl.col("_uln_int")).alias("_uln_check_digit"),
            (levy_given & levy_value.is_in(eligible)).fill_null(False).alias("_grant_eligible"),
            pl.concat_str(course_code, pl.col("_achieved_iso"), separator=_KEY_SEPARATOR).alias(
                "_key_prefix"
            ),
        ]
    )
    age, grant_eligible = pl.col("_age"), pl.col("_grant_eligible")
    uln_given = pl.col("_uln_given").is_not_null()
    nino_given = pl.col("_nino_given").is_not_null()
    citb_given = pl.col("_citb_given").is_not_null()
    proven = (
        takeable
        & ~pl.col("_blank")
        & pl.col("_shape")
        # A: REF_01's length.
        & (ref.str.len_chars() <= PROVIDER_REFERENCE_MAX_CHARS)
        # B: COURSE_03 and COURSE_04: in the catalogue, approved on the achievement date.
        & pl.col("_course").is_not_null()
        & (pl.col("_from") <= achieved_date)
        & (pl.col("_to").is_null() | (achieved_date <= pl.col("_to")))
        # C: ACHDATE_01, ACHDATE_02.
        & achieved_date.is_not_null()
        & (achieved_date <= today)
        # D, E: NAME_01 and NAME_02's lengths (`_shape` holds their characters, one or more).
        & (forename.str.len_chars() <= NAME_MAX_CHARS)
        & (surname.str.len_chars() <= NAME_MAX_CHARS)
        # F: DOB_01, DOB_02.
        & born_date.is_not_null()
        & (age >= MIN_AGE_YEARS)
        & (age < MAX_AGE_YEARS)
        # G, H: ULN_02, ULN_03, NINO_02, NINO_03 (the formats are in `_shape`).
        & (~uln_given | ((uln_number != TEMPORARY_ULN) & pl.col("_uln_check_digit")))
        & (~nino_given | nino_value.str.slice(0, 2).is_in(issued_prefixes))
        # ID_01.
        & (uln_given | nino_given | citb_given)
        # K: NOTES_01's length.
        & (notes_value.str.len_chars() <= NOTES_MAX_CHARS)
    ).fill_null(False)
    stale = pl.lit(False) if stale_before is None else achieved_date < stale_before
    formula = pl.any_horizontal(notes_value.str.starts_with(start) for start in FORMULA_STARTS)
    # The row's warnings as a bit set, then its list from the table of every combination: a
    # look-up costs far less than building a list per row.
    warning_bits = sum(
        (
            flag.cast(pl.Int64) * (1 << bit)
            for bit, flag in enumerate((stale, ~levy_given, levy_given & ~grant_eligible, formula))
        ),
        start=pl.lit(0, dtype=pl.Int64),
    )

    def optional(value: pl.Expr) -> pl.Expr:
        return pl.when(value != "").then(value)

    def key(kind: str, identifier: str) -> pl.Expr:
        # Null when the identifier is not given: concatenating a null gives null.
        return pl.concat_str(
            pl.col("_key_prefix"), pl.lit(kind), pl.col(identifier), separator=_KEY_SEPARATOR
        )

    outputs = [
        pl.col("_position"),
        proven.alias("_proven"),
        pl.col("_blank"),
        pl.col(ROW_NUMBER),
        optional(ref).alias("provider_reference"),
        course_code.alias("course_code"),
        achieved_date.alias("achievement_date"),
        forename.alias("forename"),
        surname.alias("surname"),
        born_date.alias("date_of_birth"),
        pl.col("_uln_given").alias("uln"),
        pl.col("_nino_given").alias("ni_number"),
        pl.col("_citb_given").alias("citb_individual_id"),
        optional(levy_value).alias("levy_number"),
        optional(notes_value).alias("notes"),
        grant_eligible.alias("grant_eligible"),
        pl.lit(_WARNING_LISTS).gather(warning_bits).alias(WARNINGS),
        key(ULN_KIND, "_uln_given").alias(KEY_COLUMNS[0]),
        key(NI_NUMBER_KIND, "_nino_given").alias(KEY_COLUMNS[1]),
        key(CITB_ID_KIND, "_citb_given").alias(KEY_COLUMNS[2]),
    ]

    def plan(frame: pl.LazyFrame) -> pl.LazyFrame:
        for stage in stages:
            frame = frame.with_columns(stage)
        return frame.select(outputs)

    return plan


def _unwrapped(cell: pl.Expr) -> pl.Expr:
    """`text.clean_cell` after trimming: `="…"` unwrapped, then trimmed again."""
    wrapped = cell.str.starts_with('="') & cell.str.ends_with('"') & (cell.str.len_chars() >= 3)
    inner = cell.str.strip_prefix('="').str.strip_suffix('"').str.strip_chars(WHITE_SPACE)
    return pl.when(wrapped).then(inner).otherwise(cell)


def _uln_check_digit(number: pl.Expr) -> pl.Expr:
    """Section 3.1 for a ULN as a ten-digit integer (null for any other ULN): the remainder of
    the weighted sum of d1..d9 is not 0, and d10 is 10 minus it (so 10 gives 0)."""
    stem = number // 10  # d1..d9
    weighted = (
        pl.lit(_ULN_GROUP_TABLES[0]).gather(stem // 1_000_000)
        + pl.lit(_ULN_GROUP_TABLES[1]).gather(stem // 1000 % 1000)
        + pl.lit(_ULN_GROUP_TABLES[2]).gather(stem % 1000)
    )
    remainder = weighted % 11
    return (remainder != 0) & (number % 10 == 10 - remainder)
