"""Planning an upload: the file-level checks, then chunk tasks cut at record boundaries.

This is what a validator does with an `upload.received` message, and all it does inside the
Kafka poll: the byte-level pass and the record scan run at byte speed in a worker thread, so a
200 MB file is planned in seconds and the event loop (heartbeats, `/healthz`, the relay) keeps
running. The rows themselves are validated by whichever worker leases each chunk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import asyncpg

from services.core.events import Topics
from services.core.logging import get_logger
from services.core.scheme.codes import FILE_02_NO_DATA, Code, FileError
from services.core.scheme.file_inspection import inspect_stream
from services.core.scheme.record_scanner import scan_records
from services.core.scheme.records import detect_layout
from services.core.scheme.workbook_records import (
    SIGNATURE_BYTES,
    WorkbookEncoding,
    has_workbook_signature,
)
from services.core.states import ACCEPTING
from services.core.storage import ObjectMissing, Storage
from services.validator import upload_outcome, workbook_sheet
from services.validator.chunk_queue import Segment
from services.validator.settings import ValidatorSettings
from services.validator.upload_outcome import Upload

log = get_logger()

_FILE_07_MESSAGE = (
    "This exact file was already uploaded and accepted. Withdraw that upload first if you"
    " mean to send it again."
)


# The upload's stored file is gone while the storage itself answers: this upload can never be
# validated (its outcome is `errored`), unlike a storage outage (`StorageUnavailable`, an
# OSError: waited out and retried, never counted).
StoredFileMissing = ObjectMissing


@dataclass(frozen=True, slots=True)
class Plan:
    encoding: str | None
    delimiter: str
    chunks: list[list[Segment]]
    file_error: FileError | None
    workbook: bool = False  # a workbook, to be read as one (`workbook_sheet`) and planned then


def plan_file(
    storage: Storage, storage_key: str, settings: ValidatorSettings, *, workbooks: bool = True
) -> Plan:
    """The byte-level checks, the header and the record scan: blocking, run in a thread. Each
    pass reads the file from its start in large blocks (range reads on an object store). With
    `workbooks`, a file with a workbook signature is left to `workbook_sheet` (section 9)."""
    opener = storage.opener(storage_key)
    with opener() as stream:
        if workbooks and has_workbook_signature(stream.read(SIGNATURE_BYTES)):
            return Plan(None, ",", [], None, workbook=True)
        stream.seek(0)
        inspection = inspect_stream(stream, size_limit_bytes=settings.limits.max_upload_bytes)
    encoding = inspection.encoding
    if inspection.error is not None or encoding is None:
        return Plan(encoding.value if encoding else None, ",", [], inspection.error)
    layout = detect_layout(opener, encoding)
    if isinstance(layout, FileError):
        return Plan(encoding.value, ",", [], layout)
    with opener() as stream:
        scan = scan_records(
            stream,
            layout.delimiter,
            encoding=encoding,
            chunk_bytes=settings.chunk_bytes,
            chunk_rows=settings.chunk_rows,
            # Section 9: the guidance and blank records before the header are in no chunk, and
            # the first data record's number counts them.
            header_row=layout.header_row,
        )
    # Section 8: an unparseable file (FILE_01) outranks a header problem (FILE_04).
    error = scan.error or (layout.header if isinstance(layout.header, FileError) else None)
    chunks = [list(chunk.segments) for chunk in scan.chunks]
    return Plan(encoding.value, layout.delimiter, chunks, error)


async def _plan_stored(storage: Storage, upload: Upload, settings: ValidatorSettings) -> Plan:
    """A CSV is planned as stored. The guided workbook's sheet is first written as a CSV object
    beside it, which is planned and read by the chunk tasks (encoding `xlsx`); any other
    workbook is refused as the offline check refuses it."""
    plan = await asyncio.to_thread(plan_file, storage, upload.storage_key, settings)
    if not plan.workbook:
        return plan
    sheet = await workbook_sheet.store_sheet_csv(
        storage, upload.storage_key, settings.limits.max_upload_bytes
    )
    if isinstance(sheet, FileError):
        return Plan(None, ",", [], sheet)
    # The sheet's records are CSV text whatever their first cell holds.
    plan = await asyncio.to_thread(plan_file, storage, sheet, settings, workbooks=False)
    return replace(plan, encoding=WorkbookEncoding.XLSX.value)


async def plan_upload(
    pool: asyncpg.Pool,
    storage: Storage,
    settings: ValidatorSettings,
    topics: Topics,
    upload_id: object,
) -> None:
    """Plans an upload once; a redelivered message, or an upload planned or decided already,
    changes nothing."""
    async with pool.acquire(timeout=settings.common.postgres.db_acquire_timeout_s) as connection:
        upload = await upload_outcome.load(connection, upload_id)  # type: ignore[arg-type]
        if upload is None or upload.decided or upload.chunks_total is not None:
            log.info("upload_plan_skipped", reason="unknown" if upload is None else "planned")
            return
        await upload_outcome.start_validation(connection, topics, upload)
    try:
        plan = await _plan_stored(storage, upload, settings.for_upload_of(upload.size_bytes))
    except StoredFileMissing:
        async with pool.acquire(
            timeout=settings.common.postgres.db_acquire_timeout_s
        ) as connection:
            await upload_outcome.error_out(
                connection, topics, upload.upload_id, reason="stored_file_missing"
            )
        return
    async with pool.acquire(timeout=settings.common.postgres.db_acquire_timeout_s) as connection:
        await _record(connection, topics, upload, plan)


async def _record(
    connection: asyncpg.Connection, topics: Topics, upload: Upload, plan: Plan
) -> None:
    if plan.file_error is None and await _same_bytes_accepted(connection, upload):
        plan = Plan(plan.encoding, plan.delimiter, [], FileError(Code.FILE_07, _FILE_07_MESSAGE))
    if plan.file_error is not None:
        await upload_outcome.reject(connection, topics, upload, plan.file_error, plan.encoding)
        return
    if not plan.chunks:
        # Only blank records (the scan leaves them out): section 8's "no non-blank data row".
        no_data = FileError(Code.FILE_02, FILE_02_NO_DATA)
        await upload_outcome.reject(connection, topics, upload, no_data, plan.encoding)
        return
    if plan.encoding is None:  # a plan has an encoding once it has chunks
        raise RuntimeError("a plan with chunks but no encoding")
    async with connection.transaction():
        version = await upload_outcome.reference_version_for_planning(connection)
        planned = await upload_outcome.record_plan(
            connection,
            upload,
            encoding=plan.encoding,
            delimiter=plan.delimiter,
            reference_version=version,
            chunks=plan.chunks,
        )
    if planned:
        log.info("upload_planned", chunks=len(plan.chunks))


async def _same_bytes_accepted(connection: asyncpg.Connection, upload: Upload) -> bool:
    """FILE_07: this ATO already has these exact bytes accepted and not withdrawn."""
    found = await connection.fetchval(
        "SELECT 1 FROM uploads WHERE ato_id = $1 AND sha256 = $2 AND upload_id <> $3"
        " AND status = ANY($4::text[]) AND withdrawn_at IS NULL LIMIT 1",
        upload.ato_id,
        upload.sha256,
        upload.upload_id,
        sorted(ACCEPTING),
    )
    return found is not None
