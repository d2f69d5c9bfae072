"""The bytes-level pass over a file: section 8's precedence from size down to "empty".

One pass in chunks, bounded memory. The gateway can feed the chunks of an upload as they
arrive; the offline check feeds a stored file. The pass also finds a line far longer than any
valid row (the first of the "unparseable" checks), so the CSV reader never has to hold one.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Final

from services.core.scheme.codes import (
    FILE_01_NUL,
    FILE_01_TOO_LONG,
    FILE_01_WORKBOOK,
    FILE_02_EMPTY,
    MESSAGES,
    Code,
    FileError,
    file_too_large_message,
)
from services.core.scheme.text import WHITE_SPACE

DEFAULT_SIZE_LIMIT_BYTES: Final = 200 * 1024 * 1024
CHUNK_BYTES: Final = 1024 * 1024
# A valid row is a few hundred bytes; a line this long is a quote never closed, or not CSV.
MAX_LINE_BYTES: Final = 1024 * 1024

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_ZIP_SIGNATURE: Final = b"PK\x03\x04"  # .xlsx, .ods
_OLE_SIGNATURE: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls
_SIGNATURE_BYTES: Final = len(_OLE_SIGNATURE)
# Bytes Python's cp1252 codec leaves undefined (section 8), each looked for on its own: five
# `bytes.find`s (memchr) cost far less than one search for a character class.
_CP1252_UNDEFINED_BYTES: Final = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")


class Encoding(StrEnum):
    UTF_8 = "utf-8"
    UTF_8_SIG = "utf-8-sig"  # UTF-8 with a byte-order mark
    WINDOWS_1252 = "windows-1252"


@dataclass(frozen=True, slots=True)
class Inspection:
    """The encoding (once settled: None after FILE_03, FILE_01 for NUL bytes or a workbook, and
    FILE_06) and the file error, if one applies."""

    encoding: Encoding | None
    error: FileError | None


class FileInspector:
    """Feed the file's bytes in order, then `finish()` for the encoding and any file error."""

    def __init__(self, size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES) -> None:
        self._size_limit_bytes = size_limit_bytes
        self.size_bytes = 0
        self._head = b""  # until the signature bytes are in
        self._started = False
        self._workbook = False
        self._nul = False
        self._bom = False
        self._bom_pending = False  # the decoded BOM is not content; drop it once
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._utf8_ok = True
        self._cp1252_ok = True
        # Whether a non-white-space character was seen, for each candidate encoding.
        self._utf8_content = False
        self._cp1252_content = False
        self._line_bytes = 0  # bytes since the last line break
        self._longest_line_bytes = 0

    @property
    def size_exceeded(self) -> bool:
        """True as soon as the limit is passed: the caller may stop reading."""
        return self.size_bytes > self._size_limit_bytes

    @property
    def verdict_known(self) -> bool:
        """True when no later byte can change the outcome except by size (FILE_03)."""
        return self._workbook or self._nul or not (self._utf8_ok or self._cp1252_ok)

    def feed(self, chunk: bytes) -> None:
        self.size_bytes += len(chunk)
        if self.size_exceeded or not chunk:
            return
        if not self._started:
            self._head += chunk
            if len(self._head) < _SIGNATURE_BYTES:
                return
            chunk, self._head = self._head, b""
            self._start(chunk)
        self._scan(chunk, final=False)

    def finish(self) -> Inspection:
        if (too_large := size_error(self.size_bytes, self._size_limit_bytes)) is not None:
            return Inspection(None, too_large)
        if not self._started:
            chunk, self._head = self._head, b""
            self._start(chunk)
            self._scan(chunk, final=True)
        else:
            self._scan(b"", final=True)
        if self._workbook:
            return Inspection(None, FileError(Code.FILE_01, FILE_01_WORKBOOK))
        if self._nul:
            return Inspection(None, FileError(Code.FILE_01, FILE_01_NUL))
        if self._utf8_ok:
            encoding = Encoding.UTF_8_SIG if self._bom else Encoding.UTF_8
            has_content = self._utf8_content
        elif self._cp1252_ok:
            encoding, has_content = Encoding.WINDOWS_1252, self._cp1252_content
        else:
            return Inspection(None, FileError(Code.FILE_06, MESSAGES[Code.FILE_06]))
        if not has_content:
            return Inspection(encoding, FileError(Code.FILE_02, FILE_02_EMPTY))
        if max(self._longest_line_bytes, self._line_bytes) > MAX_LINE_BYTES:
            return Inspection(encoding, FileError(Code.FILE_01, FILE_01_TOO_LONG))
        return Inspection(encoding, None)

    def _start(self, head: bytes) -> None:
        self._started = True
        self._workbook = head.startswith((_ZIP_SIGNATURE, _OLE_SIGNATURE))
        self._bom = self._bom_pending = head.startswith(_UTF8_BOM)

    def _scan(self, chunk: bytes, *, final: bool) -> None:
        if self.verdict_known:
            return
        if b"\x00" in chunk:
            self._nul = True  # UTF-16 text, or some other binary file
            return
        if self._utf8_ok:
            try:
                text = self._utf8.decode(chunk, final)
            except UnicodeDecodeError:
                self._utf8_ok = False
            else:
                if self._bom_pending and text:
                    text, self._bom_pending = text.removeprefix("\ufeff"), False
                if not self._utf8_content:
                    self._utf8_content = bool(text.strip(WHITE_SPACE))
        if self._cp1252_ok:
            if any(map(chunk.__contains__, _CP1252_UNDEFINED_BYTES)):
                self._cp1252_ok = False
            elif not self._cp1252_content:
                self._cp1252_content = bool(chunk.decode("cp1252").strip(WHITE_SPACE))
        self._measure_lines(chunk)

    def _measure_lines(self, chunk: bytes) -> None:
        # \r and \n bytes are line breaks in both UTF-8 and cp1252 (never part of a character).
        # Lines wholly inside a chunk are shorter than the chunk, so only the line running
        # across chunk boundaries needs tracking; chunks are at most CHUNK_BYTES in practice.
        first = _first_break(chunk)
        if first < 0:
            self._line_bytes += len(chunk)
            return
        self._longest_line_bytes = max(self._longest_line_bytes, self._line_bytes + first)
        if len(chunk) > MAX_LINE_BYTES:  # a caller feeding huge chunks: measure every line
            longest = max(map(len, re.split(b"[\r\n]", chunk)))
            self._longest_line_bytes = max(self._longest_line_bytes, longest)
        last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        self._line_bytes = len(chunk) - last - 1


def size_error(size_bytes: int, size_limit_bytes: int) -> FileError | None:
    """FILE_03, the first of the file-level checks (200 MB is 200 x 1024 x 1024 bytes)."""
    if size_bytes > size_limit_bytes:
        return FileError(Code.FILE_03, file_too_large_message(size_limit_bytes))
    return None


def _first_break(chunk: bytes) -> int:
    newline, carriage_return = chunk.find(b"\n"), chunk.find(b"\r")
    if newline < 0:
        return carriage_return
    if carriage_return < 0:
        return newline
    return min(newline, carriage_return)


def inspect_stream(
    stream: IO[bytes],
    *,
    size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
) -> Inspection:
    """Reads a binary stream to the end, or until it passes the size limit."""
    inspector = FileInspector(size_limit_bytes)
    while chunk := stream.read(chunk_bytes):
        inspector.feed(chunk)
        if inspector.size_exceeded:
            break
    return inspector.finish()
