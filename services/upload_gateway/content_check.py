"""Refuse what is plainly not a CSV while it streams in (scheme section 5: FILE_01, FILE_02).

Pure: fed the body's chunks in order, it raises `FileRefused` as soon as the bytes show a
spreadsheet workbook or binary data, and at the end if there was nothing but a byte-order mark
and white space. Everything subtler (decoding, CSV parsing, headers) is the validator's job.
"""

from __future__ import annotations

from services.core.scheme.codes import Code

ZIP_SIGNATURE = b"PK\x03\x04"  # .xlsx, .ods: a ZIP container
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls: an OLE compound document
UTF8_BOM = b"\xef\xbb\xbf"
_PREFIX_BYTES = len(OLE_SIGNATURE)

EXPORT_HINT = 'In your spreadsheet, use "Save as" / "Export" and choose CSV (Comma delimited).'
WORKBOOK_MESSAGE = (
    "This is a spreadsheet workbook (such as .xlsx or .xls), not a CSV file: "
    "export the sheet as CSV (Comma delimited) and upload that file. " + EXPORT_HINT
)
BINARY_MESSAGE = (
    "This file contains binary data (NUL bytes), so it is not a CSV text file. "
    "A 'Unicode text' (UTF-16) export is refused for the same reason: "
    "export the sheet as CSV (Comma delimited). " + EXPORT_HINT
)
EMPTY_MESSAGE = (
    "This file is empty: it has no header row and no data. Fill in the template "
    "(GET /v1/template.csv) and export the sheet as CSV (Comma delimited)."
)


class FileRefused(Exception):
    """The whole file is refused with a scheme file-level code; nothing is recorded."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


class ContentSniffer:
    def __init__(self) -> None:
        self._prefix = b""
        self._size_bytes = 0
        self._bom_bytes_seen = 0  # how many leading bytes matched the byte-order mark so far
        self._has_content = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if b"\x00" in chunk:
            raise FileRefused(Code.FILE_01, BINARY_MESSAGE)
        if len(self._prefix) < _PREFIX_BYTES:
            self._prefix += chunk[: _PREFIX_BYTES - len(self._prefix)]
            self._check_signatures()
        if not self._has_content:
            self._look_for_content(chunk)
        self._size_bytes += len(chunk)

    def finish(self) -> None:
        """Call after the last chunk."""
        self._check_signatures()
        # A lone fragment of a byte-order mark is not white space.
        if 0 < self._bom_bytes_seen < len(UTF8_BOM) and self._size_bytes == self._bom_bytes_seen:
            self._has_content = True
        if not self._has_content:
            raise FileRefused(Code.FILE_02, EMPTY_MESSAGE)

    def _check_signatures(self) -> None:
        # Until the prefix is long enough a signature simply cannot match yet.
        for signature in (ZIP_SIGNATURE, OLE_SIGNATURE):
            if self._prefix.startswith(signature):
                raise FileRefused(Code.FILE_01, WORKBOOK_MESSAGE)

    def _look_for_content(self, chunk: bytes) -> None:
        rest = chunk
        if self._size_bytes < len(UTF8_BOM) and self._size_bytes == self._bom_bytes_seen:
            # This chunk may continue the byte-order mark that a file may start with.
            expected = UTF8_BOM[self._bom_bytes_seen :]
            matched = 0
            while matched < min(len(expected), len(rest)) and rest[matched] == expected[matched]:
                matched += 1
            if matched == min(len(expected), len(rest)):
                self._bom_bytes_seen += matched
                rest = rest[matched:]
            elif self._bom_bytes_seen:
                # The earlier bytes looked like a mark but were not: they are content.
                self._has_content = True
                return
        if rest.strip():
            self._has_content = True
