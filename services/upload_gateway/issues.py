"""The error report: the issues the validator stored for an upload, as JSON or CSV.

The validator caps the issues it stores per upload while `counts_by_code` stays exact, so the
report says how many there are in all and whether it is truncated. Values are read as the
validator masked them; this module never sees a full identifier.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

CSV_HEADER = ("row", "column", "code", "severity", "message", "value")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_SELECT = (
    "SELECT row_number, column_name, code, severity, message, masked_value FROM row_issues"
    " WHERE upload_id = $1 ORDER BY row_number, position"
)


@dataclass(frozen=True, slots=True)
class Issue:
    row: int
    column: str | None
    code: str
    severity: str
    message: str
    value: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Issue:
        return cls(
            row["row_number"],
            row["column_name"],
            row["code"],
            row["severity"],
            row["message"],
            row["masked_value"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "value": self.value,
        }


def neutralise(cell: str) -> str:
    """Prefix a `'` so a spreadsheet shows the text instead of running it."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_lines(issues: Iterable[Issue], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_HEADER)
    for issue in issues:
        writer.writerow(
            [
                issue.row,
                neutralise(issue.column or ""),
                neutralise(issue.code),
                neutralise(issue.severity),
                neutralise(issue.message),
                neutralise(issue.value or ""),
            ]
        )
    return buffer.getvalue()


async def count_stored(connection: asyncpg.Connection, upload_id: Any) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM row_issues WHERE upload_id = $1", upload_id
    )
    return count


async def page(
    connection: asyncpg.Connection, upload_id: Any, *, limit: int, offset: int
) -> list[Issue]:
    rows = await connection.fetch(f"{_SELECT} LIMIT $2 OFFSET $3", upload_id, limit, offset)
    return [Issue.from_row(row) for row in rows]


async def stream_all(
    connection: asyncpg.Connection, upload_id: Any, batch_rows: int = 2000
) -> AsyncIterator[list[Issue]]:
    """Every stored issue in batches, through a server-side cursor (call inside a transaction)."""
    cursor = await connection.cursor(_SELECT, upload_id)
    while batch := await cursor.fetch(batch_rows):
        yield [Issue.from_row(row) for row in batch]


# Also the pages' wording (texts.RESULT["truncated"] says the same on the page).
LEFT_OUT_MESSAGE = (
    "{left_out} more problems are not listed in this report: it keeps the first ones, by row."
    " Fix these, then upload the file again to see the rest."
)


def left_out_line(left_out: int) -> str:
    """The CSV report's last record when the report was capped: a spreadsheet shows no HTTP
    header, so the file itself says how many more problems there are (no row, no code)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        ["", "", "", "", LEFT_OUT_MESSAGE.format(left_out=left_out), ""]
    )
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class ReportSize:
    """How many issues an upload has in all (`counts_by_code` is exact) and how many were kept
    for its report (the validator keeps the first ones, in the report's order, up to its cap)."""

    total: int
    stored: int

    @property
    def left_out(self) -> int:
        return max(self.total - self.stored, 0)

    @property
    def truncated(self) -> bool:
        return self.left_out > 0


async def report_size(
    connection: asyncpg.Connection, upload_id: uuid.UUID, issues_total: int
) -> ReportSize:
    stored = await count_stored(connection, upload_id)
    return ReportSize(max(issues_total, stored), stored)


async def write_csv_report(
    response: web.StreamResponse,
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    size: ReportSize,
) -> None:
    """The upload's stored issues as the CSV error report, into a prepared response, in one
    read-only transaction (a consistent report however long the client takes), then a last
    record saying how many were left out when the report was capped, then EOF."""
    header = True
    async with connection.transaction(readonly=True):
        async for batch in stream_all(connection, upload_id):
            await response.write(csv_lines(batch, header=header).encode())
            header = False
    if header:
        await response.write(csv_lines([], header=True).encode())
    if size.truncated:
        await response.write(left_out_line(size.left_out).encode())
    await response.write_eof()
