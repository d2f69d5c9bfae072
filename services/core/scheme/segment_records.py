"""A segment's lines into records, in Polars: quoted records included, exactly as the csv module
reads them.

`record_scanner.read_chunk_bytes` gives a segment as UTF-8 bytes, and the bulk pass splits them
into lines at every LF. A quote-free line that starts a record is that record. A line holding a
`"` that starts a record is a record of its own exactly when the csv module, starting there,
reaches the line's end outside a quoted field: one regex for every such line at once, in
Polars (`_complete_line`, the scanner's reading of a record: a field is quoted only from its
first character; after its closing quote the rest is ordinary text; a `"` elsewhere is an
ordinary character). Only a line that opens a quoted field it does not close (a note with a
line break, in most files one line in dozens) starts a record of several lines: those are
walked in order in Python, each spanning the lines up to where its quotes balance again.

The cells of a quoted record come from Polars' CSV reader when the record is in the *strict
shape* spreadsheets write (RFC 4180 without its leniencies: each field either holds no `"`,
or is wholly quoted, with `""` for a quote inside) and has exactly the header's number of
cells: in that shape both readers give the text between the quotes with `""` made `"`. In that
shape too the quotes balance exactly where the record ends, so a record of several lines in it
spans what the walk above gave it. What the fast path cannot prove exact goes to the csv
module, counted by reason (`FALLBACK_REASONS`):

- `quote_shape`: a record with a `"` outside the strict shape (a `"` inside an unquoted field,
  text after a closing quote, a space before an opening quote);
- `after_misread_record`: a record of several lines outside the strict shape whose end the
  quotes did not tell: it and the rest of its segment are read as before this fast path (every
  line holding a `"` starts a record parsed by the csv module);
- `quoted_cell_count`: a quoted record in the strict shape with more or fewer cells than the
  header, or starting with a byte-order mark (which Polars' reader could drop);
- `lone_return`: a segment with a CR that is not part of a CR LF (the bulk pass hands the
  whole segment to the csv module; counted there).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import polars as pl

from services.core.scheme.record_scanner import DIALECTS, quoted_records

QUOTE_SHAPE: Final = "quote_shape"
AFTER_MISREAD_RECORD: Final = "after_misread_record"
QUOTED_CELL_COUNT: Final = "quoted_cell_count"
LONE_RETURN: Final = "lone_return"
FALLBACK_REASONS: Final = (QUOTE_SHAPE, AFTER_MISREAD_RECORD, QUOTED_CELL_COUNT, LONE_RETURN)

# Wider headers get no pattern of their own: their quoted records go to the csv module.
_MAX_EXACT_WIDTH: Final = 64

ROW_NUMBER: Final = "row_number"
_LINE: Final = "_line"


@dataclass(frozen=True, slots=True)
class _Patterns:
    """Rust regexes (Polars) for one delimiter and header width."""

    complete_line: str  # a line the csv module reads to its end outside a quoted field
    exact: str | None  # a record in the strict shape with exactly the header's cells


def _patterns(delimiter: str, width: int) -> _Patterns:
    d = re.escape(delimiter)
    # The csv module's fields (strict=False). Rust regex has no possessive quantifiers, so the
    # closing quote is the one not followed by another `"`: the text after it starts with
    # anything else, which makes the reading unique, as the csv module's is.
    ordinary = f"[^{d}\\r\\n]*"
    quoted = f'"(?:[^"]|"")*"(?:[^"{d}\\r\\n]{ordinary})?'
    unquoted = f'[^"{d}\\r\\n]{ordinary}'
    lenient = f"(?:{quoted}|{unquoted})?"
    # The strict shape. No NUL: the records path joins cells with one.
    strict = f'(?:"(?:[^"\\x00]|"")*"|[^"{d}\\r\\n\\x00]*)'
    exact = None
    if width <= _MAX_EXACT_WIDTH:
        exact = f"^{strict}(?:{d}{strict}){{{width - 1}}}$"
    return _Patterns(complete_line=f"^{lenient}(?:{d}{lenient})*$", exact=exact)


@dataclass(slots=True)
class SegmentRecords:
    """The records of a segment's lines.

    `plain`: the quote-free records (`ROW_NUMBER`, `_line` as it came, with the CR of its CR
    LF). `quoted`: the records Polars' CSV reader parsed (`ROW_NUMBER`, then `field_0`... one
    per header cell), or None. `parsed`: the records the csv module read, in order.
    `fallbacks`: how many records went to the csv module, by reason.
    """

    plain: pl.DataFrame
    quoted: pl.DataFrame | None = None
    parsed: list[tuple[int, list[str]]] = field(default_factory=list)
    fallbacks: Counter[str] = field(default_factory=Counter)


def split_records(
    pieces: pl.Series,
    first_row: int,
    delimiter: str,
    width: int,
    *,
    text: Callable[[], str],
    has_quote: bool,
    has_return: bool,
) -> SegmentRecords:
    """The records of a segment's lines (`pieces`, split at LF, each keeping the CR of a CR LF),
    the first numbered `first_row`. `text` gives the segment's decoded text, asked for only
    when a record of several lines has to be read the old way; `has_quote`: whether the
    segment holds a `"`; `has_return`: whether it holds a CR (of a CR LF: no other)."""
    lines = pl.DataFrame(pieces.alias(_LINE))
    # Each line's quotes, counted once: whether any line holds one, and the walk of `_spans`.
    quotes = pieces.str.count_matches('"', literal=True) if has_quote else None
    if quotes is None or not quotes.max():
        rows = pl.int_range(first_row, first_row + lines.height, dtype=pl.Int64, eager=True)
        return SegmentRecords(lines.select(rows.alias(ROW_NUMBER), _LINE))
    return _Splitter(lines, quotes, first_row, delimiter, width, text, has_return).split()


class _Splitter:
    def __init__(
        self,
        lines: pl.DataFrame,
        quotes: pl.Series,
        first_row: int,
        delimiter: str,
        width: int,
        text: Callable[[], str],
        has_return: bool,
    ) -> None:
        self._delimiter = delimiter
        self._width = width
        self._text_of = text
        self._patterns = _patterns(delimiter, width)
        self._first_row = first_row
        self._has_return = has_return
        self._lines = lines.with_row_index("_index").with_columns(quotes.alias("_quotes"))
        self.fallbacks: Counter[str] = Counter()

    def _quoted_lines(self) -> pl.DataFrame:
        """The lines holding a quote (`_index`, `_quotes`, `_body`: without the CR of a CR LF),
        whether each is a record in the strict shape with the header's width (`_readable`:
        then the csv module reads it to its end outside a quoted field too) and whether the csv
        module, starting there, reads it to its end outside a quoted field (`_complete`). Only
        these lines meet a regex, and the second one only those the first did not take."""
        body = pl.col(_LINE).str.strip_suffix("\r") if self._has_return else pl.col(_LINE)
        lines = self._lines.filter(pl.col("_quotes") > 0).select(
            "_index", "_quotes", body.alias("_body")
        )
        readable = self._readable(lines["_body"])
        others = readable.not_().arg_true()
        complete = readable
        if others.len():
            complete_others = (
                lines["_body"].gather(others).str.contains(self._patterns.complete_line)
            )
            # `scatter` changes the series it is called on: `readable` stays as it is.
            complete = readable.clone().scatter(others, complete_others)
        return lines.with_columns(readable.alias("_readable"), complete.alias("_complete"))

    def split(self) -> SegmentRecords:
        quoted_lines = self._quoted_lines()
        starts, parsed, several, limit = self._starts(self._spans(quoted_lines))
        rows = (starts.cast(pl.Int64).cum_sum() - 1 + self._first_row).alias(ROW_NUMBER)
        plain = (
            self._lines.with_columns(rows, starts.alias("_start"))
            .filter(pl.col("_start") & (pl.col("_quotes") == 0))
            .select(ROW_NUMBER, _LINE)
        )
        # The quoted records: of one line (a starting line holding a quote that the csv module
        # reads to its end), and of several (their texts joined by `_starts`); those from
        # `limit` on were read the old way.
        at = quoted_lines["_index"]
        one_line = quoted_lines.with_columns(
            rows.gather(at), starts.gather(at).alias("_start")
        ).filter(pl.col("_start") & pl.col("_complete") & (pl.col("_index") < limit))
        several = several.select(rows.gather(several["_first"]), "_text")
        several_readable = self._readable(several["_text"])
        as_text = pl.col("_body").alias("_text")
        readable = pl.concat(
            [
                one_line.filter("_readable").select(ROW_NUMBER, as_text),
                several.filter(several_readable),
            ]
        )
        others = pl.concat(
            [
                one_line.filter(~pl.col("_readable")).select(ROW_NUMBER, as_text),
                several.filter(~several_readable),
            ]
        )
        quoted = self._read(readable)
        dialect = DIALECTS[self._delimiter]
        row_cells = [(int(rows[first]), cells) for first, cells in parsed]
        if others.height:
            in_shape = others["_text"].str.contains(_strict_any(self._delimiter))
            for (row_number, text), strict in zip(
                others.iter_rows(), in_shape.to_list(), strict=True
            ):
                cells = next(csv.reader(_lines_of(text), dialect))
                row_cells.append((row_number, cells))
                self.fallbacks[QUOTED_CELL_COUNT if strict else QUOTE_SHAPE] += 1
        row_cells.sort(key=lambda record: record[0])
        return SegmentRecords(plain, quoted, row_cells, self.fallbacks)

    def _spans(self, quoted_lines: pl.DataFrame) -> list[tuple[int, int]]:
        """(first line, lines spanned) of each record of several lines: from each line that
        opens a quoted field it does not close (and no earlier record spans), to the line where
        its quotes balance. Walks the lines holding a quote (`_quoted_lines`) only: the others
        leave the count as it is."""
        opening = quoted_lines["_complete"].not_().arg_true().to_list()
        if not opening:
            return []
        indices = quoted_lines["_index"].to_list()
        quotes = quoted_lines["_quotes"].to_list()
        total, held = self._lines.height, len(indices)
        spans: list[tuple[int, int]] = []
        taken = 0
        for position in opening:
            first = indices[position]
            if first < taken:
                continue
            count, after = quotes[position], position + 1
            while count % 2 and after < held:
                count += quotes[after]
                after += 1
            end = total if count % 2 else indices[after - 1] + 1
            spans.append((first, end - first))
            taken = end
        return spans

    def _starts(
        self, spans: list[tuple[int, int]]
    ) -> tuple[pl.Series, list[tuple[int, list[str]]], pl.DataFrame, int]:
        """Which lines start a record, given the records of several lines; the records the csv
        module read (by first line); the texts of the records of several lines in the strict
        shape (`_first` line, `_text`); and the line from which the records were read the old
        way (the first record of several lines outside the strict shape, or the end)."""
        total = self._lines.height
        starts = pl.repeat(True, total, eager=True, dtype=pl.Boolean)
        several = pl.DataFrame(schema={"_first": pl.Int64, "_text": pl.String})
        if not spans:
            return starts, [], several, total
        firsts = pl.Series([first for first, _ in spans], dtype=pl.Int64)
        lengths = pl.Series([spanned for _, spanned in spans], dtype=pl.Int64)
        joined = pl.select(
            pl.int_ranges(firsts, firsts + lengths).alias("_lines"), firsts.alias("_first")
        ).explode("_lines")
        # A record's text: its lines as they came (a CR LF inside a quoted field is content),
        # without the CR of its own final CR LF.
        several = (
            joined.with_columns(self._lines[_LINE].gather(joined["_lines"]).alias("_text"))
            .group_by("_first", maintain_order=True)
            .agg(pl.col("_text").str.join("\n").str.strip_suffix("\r"))
        )
        strict = several["_text"].str.contains(_strict_any(self._delimiter))
        misread_at = total
        if not strict.all():
            misread_at = int(several["_first"].filter(~strict)[0])
            spans = [(first, spanned) for first, spanned in spans if first < misread_at]
            several = several.filter(pl.col("_first") < misread_at)
        inner = [line for first, spanned in spans for line in range(first + 1, first + spanned)]
        if inner:
            starts = starts.scatter(inner, False)
        if misread_at == total:
            return starts, [], several, total
        starts, parsed = self._the_old_way(starts, misread_at)
        return starts, parsed, several, misread_at

    def _the_old_way(
        self, starts: pl.Series, start: int
    ) -> tuple[pl.Series, list[tuple[int, list[str]]]]:
        """The lines from `start` on read as before the fast path: a line holding a quote
        starts a record the csv module reads; every other line not spanned is one of its own."""
        lines = self._lines
        offsets = (
            (pl.col(_LINE).str.len_chars().cast(pl.Int64) + 1).cum_sum().shift(1, fill_value=0)
        )
        quote_lines = (
            lines.select("_index", offsets.alias("_at"))
            .filter((pl.col("_index") >= start) & (lines["_quotes"] > 0))
            .iter_rows()
        )
        found = quoted_records(self._text_of(), self._delimiter, quote_lines)
        inner = [line for first, spanned, _ in found for line in range(first + 1, first + spanned)]
        if inner:
            starts = starts.scatter(inner, False)
        self.fallbacks[AFTER_MISREAD_RECORD] += len(found)
        return starts, [(first, cells) for first, _, cells in found]

    def _readable(self, texts: pl.Series) -> pl.Series:
        """Whether each record's text is in the strict shape with the header's width, and so
        read by Polars' CSV reader (`_read`) as the csv module reads it."""
        exact = self._patterns.exact
        if exact is None:
            return pl.repeat(False, texts.len(), eager=True, dtype=pl.Boolean)
        return texts.str.contains(exact) & ~texts.str.starts_with("\ufeff")

    def _read(self, records: pl.DataFrame) -> pl.DataFrame | None:
        """The cells of records in the strict shape with the header's width, by Polars' CSV
        reader."""
        if not records.height:
            return None
        names = [f"field_{index}" for index in range(self._width)]
        data = records["_text"].str.join("\n").cast(pl.Binary).item()
        cells = pl.read_csv(
            data,
            has_header=False,
            separator=self._delimiter,
            quote_char='"',
            infer_schema=False,
            new_columns=names,
        )
        if cells.height != records.height:  # never: each text is one record in that shape
            raise AssertionError("Polars' CSV reader read another number of records")
        return cells.select(pl.all().fill_null("")).insert_column(0, records[ROW_NUMBER])


def _strict_any(delimiter: str) -> str:
    d = re.escape(delimiter)
    cell = f'(?:"(?:[^"]|"")*"|[^"{d}\\r\\n]*)'
    return f"^{cell}(?:{d}{cell})*$"


def _lines_of(text: str) -> Iterator[str]:
    """A record's text as the csv module asks for it: line by line, each with its LF."""
    position = 0
    while (end := text.find("\n", position)) >= 0:
        yield text[position : end + 1]
        position = end + 1
    yield text[position:]
