"""One chunk's records through the scheme's rules, into what the database stores: no I/O here.

A chunk is validated in a worker thread (it is CPU-bound and must not hold the event loop),
then its results are written in one transaction (`chunk_queue.complete`). What a row needs
beyond the chunk, DUP_01 across the file and DUP_02 against earlier uploads, is carried as the
row's duplicate keys; DUP_02 is applied here from the row numbers the database found, before
anything is written, so a row it marks never becomes an achievement.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from services.core.masking import mask_value
from services.core.scheme.bulk_rules import (
    VALID_COLUMNS,
    BulkResult,
    BulkValidator,
    warning_issue,
)
from services.core.scheme.codes import Code, FileError
from services.core.scheme.columns import Column, HeaderMap
from services.core.scheme.outcome import issue_position
from services.core.scheme.records import Record
from services.core.scheme.validation import (
    Achievement,
    Issue,
    RowResult,
    duplicate_issue,
    duplicate_key_text,
)
from services.core.states import initial_grant_state

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
# (upload_id, row_number, key, is_valid, has_warning, dup_02)
KeyRecord = tuple[uuid.UUID, int, str, bool, bool, bool]


def achievement_id(upload_id: uuid.UUID, row_number: int) -> uuid.UUID:
    """The upload id's first 12 bytes (92 random bits, with a v4 UUID's version and variant),
    then the row number: unique per (upload, row), the same when a chunk is validated again,
    and increasing with the row, so the primary key's B-tree grows at one edge."""
    return uuid.UUID(bytes=upload_id.bytes[:12] + row_number.to_bytes(4, "big"))


@dataclass
class ChunkResult:
    """What one chunk found, ready to COPY; counts cover every non-blank row of the chunk."""

    upload_id: uuid.UUID
    ato_id: str
    achievements: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    keys: list[KeyRecord] = field(default_factory=list)
    issues: list[IssueRecord] = field(default_factory=list)
    rows_total: int = 0
    rows_invalid: int = 0
    rows_warned: int = 0
    counts_by_code: Counter[str] = field(default_factory=Counter)
    file_error: FileError | None = None
    # Rows that carry keys, with whether they are valid and warned: DUP_02 may change them.
    _keyed_rows: dict[int, tuple[bool, bool]] = field(default_factory=dict)
    _issue_room: int = 0

    @property
    def duplicate_keys(self) -> list[tuple[int, str]]:
        """(row number, key) for every key of the chunk, for the DUP_02 query."""
        return [(record[1], record[2]) for record in self.keys]

    def mark_earlier_upload_duplicates(self, row_numbers: Iterable[int]) -> None:
        """DUP_02 on the rows the database found in this ATO's earlier accepted uploads."""
        marked = sorted(set(row_numbers))
        if not marked:
            return
        for row_number in marked:
            was_valid, was_warned = self._keyed_rows[row_number]
            if was_valid:
                self.rows_invalid += 1
                self.rows_warned -= was_warned
                self.achievements.pop(row_number, None)
            self._keyed_rows[row_number] = (False, was_warned)
            self.counts_by_code[Code.DUP_02.value] += 1
            self._add_issue(duplicate_issue(row_number, Code.DUP_02), None)
        marked_set = set(marked)
        self.keys = [
            (*record[:3], False, record[4], True) if record[1] in marked_set else record
            for record in self.keys
        ]

    def add(self, result: RowResult, cells: list[str], header: HeaderMap) -> None:
        self.rows_total += 1
        is_valid, has_warning = result.is_valid, result.has_warning
        if not is_valid:
            self.rows_invalid += 1
        elif has_warning:
            self.rows_warned += 1
        for issue in result.issues:
            self.counts_by_code[issue.code.value] += 1
            self._add_issue(issue, cells, header)
        if result.duplicate_keys:
            self._keyed_rows[result.row_number] = (is_valid, has_warning)
            self.keys.extend(
                (
                    self.upload_id,
                    result.row_number,
                    duplicate_key_text(key),
                    is_valid,
                    has_warning,
                    False,
                )
                for key in result.duplicate_keys
            )
        if result.achievement is not None:
            self._add_achievement(result.row_number, result.achievement)

    def _add_achievement(self, row_number: int, values: Sequence[Any]) -> None:
        """A valid row's `achievements` record: `values` are the `Achievement` fields, in order
        (the row validator's named tuple, or a bulk pass row's slice of the same columns)."""
        self.achievements[row_number] = (
            achievement_id(self.upload_id, row_number),
            self.upload_id,
            row_number,
            self.ato_id,
            *values,
            initial_grant_state(values[-1]).value,  # the last field is grant_eligible
        )

    def _add_issue(
        self, issue: Issue, cells: list[str] | None, header: HeaderMap | None = None
    ) -> None:
        if len(self.issues) >= self._issue_room:
            return
        masked = None
        if issue.column is not None and cells is not None and header is not None:
            index = header.index(Column(issue.column))
            masked = mask_value(issue.column, cells[index]) if index < len(cells) else None
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

    def add_proven(self, bulk: BulkResult, header: HeaderMap) -> None:
        """The rows the bulk pass proved valid: their values straight from its columns, no
        `RowResult` per row; only their warnings become issues."""
        upload_id = self.upload_id
        fields = len(Achievement._fields)
        for row in bulk.valid.select(VALID_COLUMNS).iter_rows():
            # (row_number, *the Achievement fields, warnings, *the three identifier keys)
            row_number, values = row[0], row[1 : 1 + fields]
            warnings, keys = row[1 + fields], row[2 + fields :]
            warned = bool(warnings)
            self.rows_total += 1
            if warned:
                self.rows_warned += 1
                cells = bulk.cells(row_number)
                for code in warnings:
                    self.counts_by_code[code] += 1
                    self._add_issue(warning_issue(row_number, code), cells, header)
            keyed = [key for key in keys if key is not None]
            if keyed:
                self._keyed_rows[row_number] = (True, warned)
                self.keys.extend((upload_id, row_number, key, True, warned, False) for key in keyed)
            self._add_achievement(row_number, values)


def validate_chunk(
    records: Iterable[Record],
    validator: BulkValidator,
    header: HeaderMap,
    *,
    upload_id: uuid.UUID,
    ato_id: str,
    issue_room: int,
) -> ChunkResult:
    """Every record of the chunk through the scheme's two passes (blank rows skipped, not
    counted): the bulk pass proves most rows valid; the row validator explains the rest.

    At most `issue_room` issues are kept (the upload keeps its first issues by row when the
    outcome is decided); the counts per code stay exact.
    """
    result = ChunkResult(upload_id=upload_id, ato_id=ato_id, _issue_room=issue_room)
    bulk = validator.bulk(records)
    result.add_proven(bulk, header)
    cells = dict(bulk.exact)
    for row in validator.exact(bulk.exact):
        result.add(row, cells[row.row_number], header)
    return result
