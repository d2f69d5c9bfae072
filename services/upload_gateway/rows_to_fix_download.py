"""Downloading the rows to fix of an upload: the stored file read again, the accepted rows and
stored problems from the database, the file built by `rows_to_fix`, the download audited.

Shared by the API (`GET /v1/uploads/{id}/rows-to-fix.csv` and `.xlsx`) and the ATO's pages.
Every query is scoped to the caller's ATO. The stored file is read once from its start in a
worker thread (range reads on an object store), as the planner reads it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg

from services.core import audit
from services.core.audit import AuditKind
from services.core.logging import get_logger
from services.core.scheme.codes import FileError
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.records import RecordReader, detect_layout
from services.core.scheme.workbook_records import WorkbookEncoding
from services.core.states import UploadState
from services.core.storage import ObjectMissing, Storage, sheet_csv_key
from services.upload_gateway.auth import Principal
from services.upload_gateway.domain_errors import NoRowsToFix, NotFound, StoredFilePurged
from services.upload_gateway.rows_to_fix import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    Problem,
    RowNumbers,
    RowsToFix,
    select_rows,
    to_csv,
    to_workbook,
)

log = get_logger()


class Format(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"

    @property
    def media_type(self) -> str:
        return CSV_MEDIA_TYPE if self is Format.CSV else XLSX_MEDIA_TYPE


@dataclass(frozen=True, slots=True)
class RowsToFixFile:
    content: bytes
    media_type: str
    file_name: str
    rows: int
    duplicates: int

    def attachment_headers(self) -> dict[str, str]:
        """The answer's type and the file's name, as the API and the pages send them."""
        return {
            "Content-Type": self.media_type,
            "Content-Disposition": f'attachment; filename="{self.file_name}"',
        }


@dataclass(frozen=True, slots=True)
class _Source:
    storage_key: str
    encoding: Encoding
    accepted: RowNumbers
    problems: dict[int, list[Problem]]


async def _source(connection: asyncpg.Connection, ato_id: str, upload_id: uuid.UUID) -> _Source:
    upload = await connection.fetchrow(
        "SELECT status, storage_key, encoding, purged_at FROM uploads"
        " WHERE upload_id = $1 AND ato_id = $2",
        upload_id,
        ato_id,
    )
    if upload is None:
        raise NotFound("upload")
    if upload["status"] != UploadState.PARTIALLY_ACCEPTED:
        raise NoRowsToFix(upload["status"])
    if upload["purged_at"] is not None:
        raise StoredFilePurged()
    storage_key, encoding = upload["storage_key"], upload["encoding"]
    if encoding == WorkbookEncoding.XLSX.value:
        # The guided workbook's rows are read from the CSV of its sheet that the planner
        # stored beside it (scheme section 9), in UTF-8, as its chunk tasks read them.
        storage_key, encoding = sheet_csv_key(storage_key), Encoding.UTF_8.value
    # Every accepted row stays in `achievements` (withdrawn ones too): the rest were refused.
    accepted = await connection.fetch(
        "SELECT row_number FROM achievements WHERE upload_id = $1", upload_id
    )
    stored = await connection.fetch(
        "SELECT i.row_number, i.column_name, i.code, i.severity, i.message FROM row_issues i"
        " WHERE i.upload_id = $1 AND NOT EXISTS (SELECT 1 FROM achievements a"
        "   WHERE a.upload_id = i.upload_id AND a.row_number = i.row_number)"
        " ORDER BY i.row_number, i.position",
        upload_id,
    )
    problems: dict[int, list[Problem]] = defaultdict(list)
    for issue in stored:
        problems[issue["row_number"]].append(
            Problem(issue["column_name"], issue["code"], issue["severity"], issue["message"])
        )
    return _Source(
        storage_key,
        Encoding(encoding),
        RowNumbers(record["row_number"] for record in accepted),
        problems,
    )


def _select(storage: Storage, source: _Source) -> RowsToFix:
    """Blocking: reads the stored file once and picks its rows to fix."""
    opener = storage.opener(source.storage_key)
    layout = detect_layout(opener, source.encoding)
    if isinstance(layout, FileError) or isinstance(layout.header, FileError):
        # A partially accepted upload's header read once; its file cannot have changed.
        raise RuntimeError("a validated upload's header no longer reads as it did")
    reader = RecordReader(opener, source.encoding, layout.delimiter)
    records = reader.records(after_row=layout.header_row)
    return select_rows(records, layout.header, source.accepted, source.problems)


def _build(storage: Storage, source: _Source, kind: Format) -> tuple[bytes, RowsToFix]:
    selected = _select(storage, source)
    content = to_csv(selected) if kind is Format.CSV else to_workbook(selected)
    return content, selected


async def download(
    connect: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    storage: Storage,
    who: Principal,
    upload_id: uuid.UUID,
    kind: Format,
) -> RowsToFixFile:
    """The rows to fix of `who`'s ATO's upload as a file, the download recorded in the audit
    trail naming who asked: the API key, or the person signed in through the portal. Raises
    `NotFound`, `NoRowsToFix` (not partially accepted) or `StoredFilePurged`. No connection is
    held while the stored file is read."""
    async with connect() as connection:
        source = await _source(connection, who.ato_id, upload_id)
    try:
        content, selected = await asyncio.to_thread(_build, storage, source, kind)
    except ObjectMissing:
        raise StoredFilePurged() from None
    async with connect() as connection:
        await audit.record(
            connection,
            AuditKind.ROWS_TO_FIX_DOWNLOADED,
            who.ato_id,
            who.key_id,
            upload_id,
            datetime.now(UTC),
            who.person,
        )
    log.info("rows_to_fix_downloaded", upload_id=str(upload_id), format=kind.value)
    return RowsToFixFile(
        content,
        kind.media_type,
        f"upload-{upload_id}-rows-to-fix.{kind.value}",
        len(selected.rows),
        len(selected.duplicates),
    )
