"""Refuse what is plainly not a CSV while it streams in (scheme sections 5 and 8).

The scheme's own `FileInspector` reads the body's chunks as they arrive, so the gateway and the
validator give the same code and message. This module decides what the gateway does with the
findings: a spreadsheet workbook, NUL bytes, or bytes neither UTF-8 nor Windows-1252 can decode
are refused as soon as they show (no later byte changes that), an empty file at the end. The
size limit is the storage's job (413), and the rest (a line too long to be a row, CSV parsing,
headers, the row limit) is recorded and left to the validator, which reports it on the upload.
"""

from __future__ import annotations

from services.core.scheme.codes import Code
from services.core.scheme.file_inspection import FileInspector, Inspection
from services.upload_gateway.domain_errors import FileRefused

__all__ = ["ContentSniffer", "FileRefused"]


class ContentSniffer:
    """Feed the body's chunks in order, then `finish()`; either raises `FileRefused`."""

    def __init__(self, size_limit_bytes: int) -> None:
        self._inspector = FileInspector(size_limit_bytes)

    def feed(self, chunk: bytes) -> None:
        self._inspector.feed(chunk)
        if self._inspector.verdict_known:
            _refuse(self._inspector.finish())

    def finish(self) -> None:
        """Call after the last chunk."""
        _refuse(self._inspector.finish())


def _refuse(inspection: Inspection) -> None:
    error = inspection.error
    if error is None or error.code is Code.FILE_03:
        return
    # No encoding: a workbook or NUL bytes (FILE_01) or undecodable bytes (FILE_06).
    if inspection.encoding is None or error.code is Code.FILE_02:
        raise FileRefused(error)
