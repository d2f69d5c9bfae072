"""The guided workbook in the pipeline (scheme section 9): its sheet as a CSV object.

Chunk tasks read a stored file by byte range, which a ZIP of XML parts cannot give. So the
planner streams the workbook's Achievements sheet once, through the same reader as the offline
check (`workbook_records`: the ZIP bounds on the bytes actually inflated, then the sheet's rows
in flat memory), into CSV records stored beside the upload (`sheet_csv_key`), and plans and
validates those exactly as an uploaded CSV. The upload's own file stays the bytes sent (its
SHA-256 and FILE_07 are on those); the CSV object is deleted with it (`retention.delete_files`).

An upload read this way has the encoding `xlsx`; its chunks read the CSV object as UTF-8.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Final

from services.core.logging import get_logger
from services.core.scheme.codes import FileError
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.workbook_records import WorkbookEncoding, write_sheet_csv
from services.core.storage import Storage, sheet_csv_key

# Each read of the written records on their way to storage.
COPY_CHUNK_BYTES: Final = 1024 * 1024

log = get_logger()


async def store_sheet_csv(
    storage: Storage, storage_key: str, size_limit_bytes: int
) -> str | FileError:
    """Writes the workbook's sheet as CSV records beside it; returns the CSV object's key, or
    the file error that refuses the workbook (then nothing is stored). The records go through
    a temporary file: memory stays flat, and the storage's `put` is the only writer."""
    with tempfile.TemporaryFile(prefix="achievements-sheet-") as records:
        error = await asyncio.to_thread(
            write_sheet_csv, storage.opener(storage_key), records, size_limit_bytes=size_limit_bytes
        )
        if error is not None:
            return error
        key = sheet_csv_key(storage_key)
        records.seek(0)
        stored = await storage.put(key, _chunks(records), size_limit_bytes)
    log.info("workbook_sheet_stored", size_bytes=stored.size_bytes)
    return key


async def _chunks(records: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(records.read, COPY_CHUNK_BYTES):
        yield chunk


def csv_source(storage_key: str, encoding: str) -> tuple[str, Encoding]:
    """What a chunk task reads: the upload's own file in its encoding, or for the guided
    workbook the CSV object written for its sheet, in UTF-8."""
    if encoding == WorkbookEncoding.XLSX.value:
        return sheet_csv_key(storage_key), Encoding.UTF_8
    return storage_key, Encoding(encoding)
