"""Refuse what is plainly not a CSV while it streams in (scheme sections 5 and 8).

The scheme's own `FileInspector` reads the body's chunks as they arrive, so the gateway and the
validator give the same code and message. This module decides what the gateway does with the
findings: an old `.xls` workbook, NUL bytes, or bytes neither UTF-8 nor Windows-1252 can decode
are refused as soon as they show (no later byte changes that), an empty file at the end. The
size limit is the storage's job (413), and the rest (a line too long to be a row, CSV parsing,
headers, the row limit) is recorded and left to the validator, which reports it on the upload.

A ZIP body may be the guided workbook (scheme section 9), which only its end can tell: it is
stored as it comes, then screened from storage (`screen_stored_workbook`: the ZIP bounds on the
bytes actually inflated, macros, external links, the template's marker) before the upload is
recorded, so any other workbook is still refused at once with FILE_01 (or FILE_03).
"""

from __future__ import annotations

import asyncio

from services.core.scheme.codes import Code
from services.core.scheme.file_inspection import FileInspector, Inspection
from services.core.scheme.workbook_records import ZIP_SIGNATURE, screen_workbook
from services.core.storage import Storage
from services.upload_gateway.domain_errors import FileRefused

__all__ = ["ContentSniffer", "FileRefused", "screen_stored_workbook"]


class ContentSniffer:
    """Feed the body's chunks in order, then `finish()`; either raises `FileRefused`.

    `workbook` is True once the body shows the ZIP signature: it is then only stored, and
    screened once stored (`screen_stored_workbook`)."""

    def __init__(self, size_limit_bytes: int) -> None:
        self._inspector = FileInspector(size_limit_bytes)
        self._head = b""  # until the ZIP signature's bytes are in
        self._decided = False
        self.workbook = False

    def feed(self, chunk: bytes) -> None:
        if not self._decided:
            self._head += chunk
            if len(self._head) < len(ZIP_SIGNATURE):
                return
            chunk, self._head, self._decided = self._head, b"", True
            self.workbook = chunk.startswith(ZIP_SIGNATURE)
        if self.workbook:
            return
        self._inspector.feed(chunk)
        if self._inspector.verdict_known:
            _refuse(self._inspector.finish())

    def finish(self) -> None:
        """Call after the last chunk."""
        if not self._decided:
            self._inspector.feed(self._head)
        if not self.workbook:
            _refuse(self._inspector.finish())


async def screen_stored_workbook(storage: Storage, storage_key: str, size_limit_bytes: int) -> None:
    """Raises `FileRefused` unless the stored ZIP is the guided workbook within the ZIP bounds.
    In a worker thread: every entry is inflated once (a second for 200 MB), in flat memory."""
    opener = storage.opener(storage_key)
    error = await asyncio.to_thread(screen_workbook, opener, size_limit_bytes=size_limit_bytes)
    if error is not None:
        raise FileRefused(error)


def _refuse(inspection: Inspection) -> None:
    error = inspection.error
    if error is None or error.code is Code.FILE_03:
        return
    # No encoding: a workbook or NUL bytes (FILE_01) or undecodable bytes (FILE_06).
    if inspection.encoding is None or error.code is Code.FILE_02:
        raise FileRefused(error)
