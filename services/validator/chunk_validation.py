"""One chunk's records through the scheme's rules, into what the database stores: no I/O here.

A chunk is validated in a worker thread (it is CPU-bound and must not hold the event loop),
then its results are written in one transaction (`chunk_queue.complete`). What a row needs
beyond the chunk, DUP_01 across the file and DUP_02 against earlier uploads, is carried as the
row's duplicate keys; DUP_02 is applied here from the row numbers the database found, before
anything is written, so a row it marks never becomes an achievement.

The valid rows stay one Polars frame from the bulk pass to the COPY (`VALID_ROWS_SCHEMA`; the few
rows the exact path found valid are added to it): the achievements (as CSV), their duplicate
keys and their `achievements.accepted` arrays are written from its columns, never as a Python
object per row, which cost more than the rules themselves.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import polars as pl

from services.core.masking import mask_value
from services.core.scheme.bulk_rules import (
    KEY_COLUMNS,
    ROW_NUMBER,
    VALID_COLUMNS,
    VALID_SCHEMA,
    WARNINGS,
    BulkResult,
    BulkValidator,
)
from services.core.scheme.codes import Code, FileError, Severity
from services.core.scheme.columns import Column, HeaderMap
from services.core.scheme.outcome import issue_position
from services.core.scheme.record_scanner import Record, SegmentBytes, segment_records
from services.core.scheme.validation import (
    CITB_ID_KIND,
    NI_NUMBER_KIND,
    ULN_KIND,
    Achievement,
    Issue,
    RowResult,
    duplicate_issue,
    duplicate_key_text,
)
from services.core.states import initial_grant_state
from services.validator import binary_copy, duplicate_keys

# The `achievements` columns a chunk COPYs, in this order.
ACHIEVEMENT_COLUMNS: Final = (
    "achievement_id",
    "upload_id",
    "row_number",
    "ato_id",
    *Achievement._fields,
    "grant_state",
)
# (upload_id, row_number, position, column_name, code, severity, message, masked_value)
IssueRecord = tuple[uuid.UUID, int, int, str | None, str, str, str, str | None]
# (row_number, key, has_warning, dup_02) of a row that is not valid
InvalidKey = tuple[int, str, bool, bool]
# (part, first row, last row, achievements, the `achievements` array of the event as JSON)
EventPart = tuple[int, int, int, int, str]
# Stands for the release time in a staged event part: the amendment window starts when the
# outcome is decided, which replaces it.
RELEASE_AT_PLACEHOLDER: Final = "@@RELEASE_AT@@"
_KEY_COLUMN_OF_KIND: Final = dict(
    zip((ULN_KIND, NI_NUMBER_KIND, CITB_ID_KIND), KEY_COLUMNS, strict=True)
)
_HELD, _NOT_ELIGIBLE = initial_grant_state(True).value, initial_grant_state(False).value
# The frame of a chunk's valid rows: the bulk pass's columns, then each row's achievement id.
ACHIEVEMENT_ID: Final = "achievement_id"
VALID_ROWS_SCHEMA: Final = pl.Schema({**dict(VALID_SCHEMA), ACHIEVEMENT_ID: pl.String()})


def achievement_id(upload_id: uuid.UUID, row_number: int) -> uuid.UUID:
    """The upload id's first 12 bytes (92 random bits, with a v4 UUID's version and variant),
    then the row number: unique per (upload, row), the same when a chunk is validated again,
    and increasing with the row, so the primary key's B-tree grows at one edge."""
    return uuid.UUID(bytes=upload_id.bytes[:12] + row_number.to_bytes(4, "big"))


_HEX_BYTES: Final = [f"{byte:02x}" for byte in range(256)]


def achievement_ids(upload_id: uuid.UUID) -> pl.Expr:
    """`achievement_id` of each row (`ROW_NUMBER`), as text: the upload's part, then the row
    number's four bytes in hex, computed by column (not a Python string per row)."""
    prefix = str(achievement_id(upload_id, 0))[:-8]
    row_bytes = (
        (pl.col(ROW_NUMBER) // 256**shift % 256).replace_strict(
            range(256), _HEX_BYTES, return_dtype=pl.String
        )
        for shift in (3, 2, 1, 0)
    )
    return pl.concat_str(pl.lit(prefix), *row_bytes).alias(ACHIEVEMENT_ID)


def _keys_of(valid: pl.DataFrame) -> pl.DataFrame:
    """(row_number, key, has_warning) of every duplicate key of a frame of valid rows."""
    return (
        valid.select(
            ROW_NUMBER,
            pl.concat_list(KEY_COLUMNS).alias("key"),
            (pl.col(WARNINGS).list.len() > 0).alias("has_warning"),
        )
        .explode("key")
        .drop_nulls("key")
    )


@dataclass
class ChunkResult:
    """What one chunk found, ready to COPY; counts cover every non-blank row of the chunk."""

    upload_id: uuid.UUID
    ato_id: str
    # Every valid row, in row order (`VALID_ROWS_SCHEMA`).
    valid: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=VALID_ROWS_SCHEMA))
    # The duplicate keys of the rows that are not valid (a rule's error, or DUP_01/DUP_02).
    invalid_keys: list[InvalidKey] = field(default_factory=list)
    issues: list[IssueRecord] = field(default_factory=list)
    rows_total: int = 0
    rows_invalid: int = 0
    rows_warned: int = 0
    counts_by_code: Counter[str] = field(default_factory=Counter)
    file_error: FileError | None = None
    _issue_room: int = 0

    @property
    def rows_valid(self) -> int:
        return self.valid.height

    def _valid_keys(self) -> pl.DataFrame:
        return _keys_of(self.valid)

    def all_keys(self) -> pl.DataFrame:
        """Every key of the chunk, valid rows' and the others', as `duplicate_keys.KEYS_SCHEMA`
        (what the DUP_02 query reads, and what the chunk stores for DUP_01 across the file)."""
        valid = self._valid_keys().select(
            ROW_NUMBER,
            "key",
            pl.lit(True).alias("is_valid"),
            "has_warning",
            pl.lit(False).alias("dup_02"),
        )
        invalid = pl.DataFrame(
            [(row, key, False, warn, dup) for row, key, warn, dup in self.invalid_keys],
            schema=duplicate_keys.KEYS_SCHEMA,
            orient="row",
        )
        return pl.concat([valid.cast(duplicate_keys.KEYS_SCHEMA), invalid])

    def _invalidate(self, row_numbers: set[int], *, dup_02: bool) -> None:
        """The valid rows among `row_numbers` become invalid (no achievement); their keys are
        kept as the keys of invalid rows, DUP_02-marked with `dup_02`."""
        marked = pl.col(ROW_NUMBER).is_in(list(row_numbers))
        lost = self.valid.filter(marked)
        if lost.height:
            warned = lost.filter(pl.col(WARNINGS).list.len() > 0).height
            self.rows_invalid += lost.height
            self.rows_warned -= warned
            self.valid = self.valid.filter(~marked)
            keys = _keys_of(lost).rows()
            self.invalid_keys.extend((row, key, warn, dup_02) for row, key, warn in keys)
        if dup_02:
            self.invalid_keys = [
                (row, key, warn, True) if row in row_numbers else (row, key, warn, dup)
                for row, key, warn, dup in self.invalid_keys
            ]

    def mark_earlier_upload_duplicates(self, row_numbers: Iterable[int]) -> None:
        """DUP_02 on the rows the database found in this ATO's earlier accepted uploads."""
        marked = sorted(set(row_numbers))
        if not marked:
            return
        self._invalidate(set(marked), dup_02=True)
        for row_number in marked:
            self.counts_by_code[Code.DUP_02.value] += 1
            self._add_issue(duplicate_issue(row_number, Code.DUP_02), None)
        self._keep_first_issues()

    def mark_in_chunk_duplicates(self) -> None:
        """DUP_01 within the chunk, ahead of the outcome: every row after the first with one of
        its keys is invalid and writes no achievement. The code is counted and reported once,
        by the outcome's DUP_01 across the file, which finds these rows again (their keys are
        stored as invalid, so they are not counted invalid twice). Rows whose first occurrence
        is in another chunk are left to the outcome."""
        keys = pl.concat(
            [
                self._valid_keys().select(ROW_NUMBER, "key"),
                pl.DataFrame(
                    [(row, key) for row, key, _, _ in self.invalid_keys],
                    schema={ROW_NUMBER: pl.Int64, "key": pl.String},
                    orient="row",
                ),
            ]
        )
        later = keys.filter(pl.col(ROW_NUMBER) > pl.col(ROW_NUMBER).min().over("key"))
        if later.height:
            self._invalidate(set(later[ROW_NUMBER].to_list()), dup_02=False)

    def achievements_copy(self) -> AsyncIterator[bytes]:
        """The valid rows as `ACHIEVEMENT_COLUMNS`, for `COPY … (FORMAT binary)`: PostgreSQL
        receives uuids, dates and integers as they are stored instead of parsing their text
        (half its cost of a CSV COPY of these rows)."""
        return binary_copy.encode(
            self.valid.select(
                pl.col(ACHIEVEMENT_ID).str.replace_all("-", "", literal=True).str.decode("hex"),
                pl.lit(self.upload_id.bytes).alias("upload_id"),
                pl.col(ROW_NUMBER).cast(pl.Int32),
                pl.lit(self.ato_id).alias("ato_id"),
                *Achievement._fields,
                pl.when(pl.col("grant_eligible"))
                .then(pl.lit(_HELD))
                .otherwise(pl.lit(_NOT_ELIGIBLE))
                .alias("grant_state"),
            )
        )

    def stored_keys(self) -> bytes:
        """`all_keys` as stored with the chunk's task for DUP_01 across the file."""
        return duplicate_keys.to_stored(self.all_keys())

    def event_parts(self, part_size: int) -> list[EventPart]:
        """The chunk's achievements as `achievements.accepted` arrays of at most `part_size`,
        by row, staged with the chunk so that deciding the outcome only stamps the release
        time: JSON for a million achievements costs seconds to build in PostgreSQL, a fraction
        of that here, spread over the chunks."""
        rows = self.valid.select(ROW_NUMBER, ACHIEVEMENT_ID, "grant_eligible")
        if not rows.height:
            return []
        elements = rows.select(
            (pl.int_range(pl.len()) // part_size).alias("part"),
            ROW_NUMBER,
            pl.concat_str(
                pl.lit('{"achievement_id":"'),
                pl.col(ACHIEVEMENT_ID),
                pl.lit('","row_number":'),
                pl.col(ROW_NUMBER).cast(pl.String),
                pl.lit(',"grant_eligible":'),
                pl.when(pl.col("grant_eligible")).then(pl.lit("true")).otherwise(pl.lit("false")),
                pl.lit(f',"release_at":"{RELEASE_AT_PLACEHOLDER}"}}'),
            ).alias("element"),
        )
        parts = elements.group_by("part", maintain_order=True).agg(
            pl.col(ROW_NUMBER).min().alias("first"),
            pl.col(ROW_NUMBER).max().alias("last"),
            pl.len().alias("count"),
            pl.col("element").str.join(",").alias("elements"),
        )
        return [
            (part, first, last, count, f"[{text}]")
            for part, first, last, count, text in parts.iter_rows()
        ]

    def _add_exact(self, result: RowResult, cells: list[str], header: HeaderMap) -> None:
        """A row the bulk pass left to the row validator."""
        self.rows_total += 1
        for issue in result.issues:
            self.counts_by_code[issue.code.value] += 1
            self._add_issue(issue, cells, header)
        has_warning = result.has_warning
        if result.achievement is None:
            self.rows_invalid += 1
            self.invalid_keys.extend(
                (result.row_number, duplicate_key_text(key), has_warning, False)
                for key in result.duplicate_keys
            )
        elif has_warning:
            self.rows_warned += 1

    def _keep_first_issues(self) -> None:
        """Keeps the chunk's first `_issue_room` issues in the report's order (by row, then
        position: scheme sections 7 and 8), not the first ones found: the bulk pass's warnings
        are found before the row validator's errors of earlier rows, and DUP_02 after both.
        The outcome then keeps the upload's first issues of what the chunks kept, so a report
        over its cap is the first issues of the file, the same on every run."""
        self.issues.sort(key=_report_order)
        del self.issues[self._issue_room :]

    def _mask_warnings(self, bulk: BulkResult, warned_rows: set[int], header: HeaderMap) -> None:
        """The masked values of the kept issues of rows the bulk pass proved valid with a
        warning: their cells are taken out of the chunk's columns only for the rows kept."""
        needing = sorted({issue[1] for issue in self.issues if issue[1] in warned_rows})
        if not needing:
            return
        cells = bulk.cells_of(needing)
        self.issues = [
            _with_masked_value(issue, cells[issue[1]], header) if issue[1] in warned_rows else issue
            for issue in self.issues
        ]

    def _add_issue(
        self, issue: Issue, cells: list[str] | None, header: HeaderMap | None = None
    ) -> None:
        masked = None
        if cells is not None and header is not None:
            masked = _masked_value(issue.column, cells, header)
        self.issues.append(
            (
                self.upload_id,
                issue.row,
                issue_position(issue),
                issue.column,
                issue.code.value,
                issue.severity.value,
                issue.message,
                masked,
            )
        )


def _report_order(issue: IssueRecord) -> tuple[int, int]:
    """(row, position): the order of the error report."""
    return issue[1], issue[2]


def _masked_value(column: str | None, cells: list[str], header: HeaderMap) -> str | None:
    """The cell an issue is about, masked for the report; None for a row-level issue."""
    if column is None:
        return None
    index = header.index(Column(column))
    return mask_value(column, cells[index]) if index < len(cells) else None


def _with_masked_value(issue: IssueRecord, cells: list[str], header: HeaderMap) -> IssueRecord:
    upload_id, row, position, column, code, severity, message, _ = issue
    masked = _masked_value(column, cells, header)
    return upload_id, row, position, column, code, severity, message, masked


def _valid_frame(results: Sequence[RowResult]) -> pl.DataFrame:
    """The rows the exact path found valid, as the bulk pass's frame of valid rows."""
    rows = []
    for result in results:
        if result.achievement is None:  # the caller passes the valid rows only
            raise ValueError("a row without an achievement is not a valid row")
        keys: dict[str, str | None] = dict.fromkeys(KEY_COLUMNS)
        for key in result.duplicate_keys:
            keys[_KEY_COLUMN_OF_KIND[key[2]]] = duplicate_key_text(key)
        warnings = [
            issue.code.value for issue in result.issues if issue.severity is Severity.WARNING
        ]
        rows.append((result.row_number, *result.achievement, warnings, *keys.values()))
    return pl.DataFrame(rows, schema=VALID_SCHEMA, orient="row")


# A chunk of fewer lines than this is judged by the row validator alone. The bulk pass costs
# about 30 ms of CPU a chunk whatever its rows (some sixty small Polars queries), the row
# validator about 7 µs a row: a 20-row upload spent most of its chunk's time in Polars.
ROW_VALIDATOR_ONLY_LINES: Final = 1_000


def validate_chunk(
    segments: Sequence[SegmentBytes],
    delimiter: str,
    validator: BulkValidator,
    header: HeaderMap,
    *,
    upload_id: uuid.UUID,
    ato_id: str,
    issue_room: int,
) -> ChunkResult:
    """Every record of the chunk (its segments' bytes, `record_scanner.read_chunk_bytes`) through
    the scheme's two passes (blank rows skipped, not counted): the bulk pass proves most rows
    valid; the row validator explains the rest.
    Then DUP_01 within the chunk.

    The chunk keeps its first `issue_room` issues in the report's order (the upload keeps its
    first issues of those when the outcome is decided); the counts per code stay exact.
    """
    result = ChunkResult(upload_id=upload_id, ato_id=ato_id, _issue_room=issue_room)
    if sum(data.count(b"\n") for data, _ in segments) < ROW_VALIDATOR_ONLY_LINES:
        # A small chunk goes to the row validator whole: the results the bulk pass is proven
        # to give, without its fixed cost.
        bulk = validator.bulk(())
        to_explain: list[Record] = [
            record
            for data, first_row in segments
            if data
            for record in segment_records(data.decode("utf-8"), delimiter, first_row)
        ]
    else:
        bulk = validator.bulk_bytes(segments, delimiter)
        to_explain = bulk.exact
    proven = bulk.valid.select(VALID_COLUMNS)
    result.rows_total = proven.height
    warned, warning_issues = bulk.warning_issues()
    result.rows_warned += len(warned)
    for issue in warning_issues:
        result.counts_by_code[issue.code.value] += 1
        # Masked once the chunk's first issues are known (`_mask_warnings`).
        result._add_issue(issue, None)
    cells_of = dict(to_explain)
    exact = validator.exact(to_explain)
    for row in exact:
        result._add_exact(row, cells_of[row.row_number], header)
    result._keep_first_issues()
    result._mask_warnings(bulk, set(warned), header)
    found_valid = [row for row in exact if row.achievement is not None]
    if found_valid:
        proven = pl.concat([proven, _valid_frame(found_valid)]).sort(ROW_NUMBER)
    result.valid = proven.with_columns(achievement_ids(upload_id))
    result.mark_in_chunk_duplicates()
    return result
