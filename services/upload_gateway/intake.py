"""Reading an upload request: a raw CSV body or multipart/form-data, streamed to storage.

The body is never held in memory: chunks go through the scheme's file inspection (see
`content_check`) and the size limit into the storage's streaming `put`, which hashes as it
writes and leaves nothing visible on any refusal (a partial file removed, a multipart upload
aborted). Every refusal is a `DomainError` (domain_errors.py), answered by the API and the
pages alike.
"""

from __future__ import annotations

import asyncio
import errno
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from services.core.logging import get_logger
from services.core.scheme.codes import Policy
from services.core.storage import Storage, StorageUnavailable, StoredFile, UploadTooLarge
from services.upload_gateway.content_check import (
    ContentSniffer,
    FileRefused,
    screen_stored_workbook,
)
from services.upload_gateway.domain_errors import (
    BodyTimedOut,
    FileMissing,
    FileTooLarge,
    InvalidPolicy,
    MalformedBody,
    MultipleFiles,
    StorageFull,
    TermsNotAccepted,
    TooManyParts,
    UnsupportedMediaType,
)

POLICIES = tuple(policy.value for policy in Policy)
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RAW_CONTENT_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "text/plain",
        # What Windows browsers send for a .csv file; the sniffer still refuses real workbooks.
        "application/vnd.ms-excel",
        "application/octet-stream",
        # The guided workbook, read as it is (scheme section 9); other workbooks are refused.
        XLSX_CONTENT_TYPE,
    }
)
FORM_FIELDS = ("file_name", "policy", "terms_accepted")
MAX_FIELD_BYTES = 1024
MAX_FILE_NAME_CHARS = 255
DEFAULT_FILE_NAME = "upload.csv"
# A multipart body is a little larger than the file it carries.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
# A full disk (or quota) while writing: the service's problem, not the file's.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

T = TypeVar("T")

log = get_logger()


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much of a request body is read, and how patiently."""

    file_bytes: int  # FILE_03: the file itself
    chunk_bytes: int  # the size of each read into storage
    max_parts: int  # multipart parts, ignored ones included
    read_timeout_s: float  # the longest wait for the next bytes of the body


@dataclass(frozen=True, slots=True)
class UploadForm:
    file_name: str
    policy: str | None
    terms_accepted: bool


def parse_terms(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUE_WORDS


def clean_file_name(value: str | None) -> str:
    """A display name only (never a path): last path segment, no control characters."""
    if not value:
        return DEFAULT_FILE_NAME
    name = value.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:MAX_FILE_NAME_CHARS] or DEFAULT_FILE_NAME


def form_from(values: Mapping[str, str], fallback_file_name: str | None = None) -> UploadForm:
    return UploadForm(
        file_name=clean_file_name(values.get("file_name") or fallback_file_name),
        policy=values.get("policy") or None,
        terms_accepted=parse_terms(values.get("terms_accepted")),
    )


def check_form(form: UploadForm) -> None:
    if not form.terms_accepted:
        raise TermsNotAccepted()
    if form.policy is not None and form.policy not in POLICIES:
        raise InvalidPolicy()


async def discard(storage: Storage, storage_key: str) -> None:
    """Removes a file that will not be recorded. During an outage it stays: a stored file with
    no upload row is never read (docs/storage.md)."""
    try:
        await storage.delete(storage_key)
    except (StorageUnavailable, OSError) as error:
        log.warning("stored_file_not_discarded", error=type(error).__name__)


async def timed(read: Awaitable[T], timeout_s: float) -> T:
    """One read from the body: a client that stops sending is cut off with 408."""
    try:
        async with asyncio.timeout(timeout_s):
            return await read
    except TimeoutError:
        raise BodyTimedOut(timeout_s) from None


class BoundedBody:
    """The request body as aiohttp's multipart reader reads it (the `StreamReader` methods it
    calls): every read timed, and the whole body, whatever its framing and whichever parts are
    skipped, capped; a body over the cap is refused with FILE_03 as soon as the cap is passed."""

    def __init__(self, content: StreamReader, *, cap_bytes: int, limits: BodyLimits) -> None:
        self._content = content
        self._cap_bytes = cap_bytes
        self._limits = limits
        self.consumed_bytes = 0

    def _count(self, data: bytes) -> bytes:
        self.consumed_bytes += len(data)
        if self.consumed_bytes > self._cap_bytes:
            raise FileTooLarge(self._limits.file_bytes)
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._count(await timed(self._content.read(n), self._limits.read_timeout_s))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        line = self._content.readline(max_line_length=max_line_length)
        return self._count(await timed(line, self._limits.read_timeout_s))

    def at_eof(self) -> bool:
        return self._content.at_eof()

    def unread_data(self, data: bytes) -> None:
        self._content.unread_data(data)
        self.consumed_bytes -= len(data)


async def _sniffed(chunks: AsyncIterator[bytes], sniffer: ContentSniffer) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        sniffer.feed(chunk)
        yield chunk


async def _store(
    storage: Storage, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
) -> StoredFile:
    sniffer = ContentSniffer(limit_bytes)
    try:
        stored = await storage.put(storage_key, _sniffed(chunks, sniffer), limit_bytes)
        sniffer.finish()
        if sniffer.workbook:
            await screen_stored_workbook(storage, storage_key, limit_bytes)
    except UploadTooLarge:
        raise FileTooLarge(limit_bytes) from None
    except StorageUnavailable:
        raise  # the handler answers 503 STORAGE_UNAVAILABLE
    except OSError as error:
        if error.errno in DISK_FULL_ERRNOS:
            raise StorageFull() from None  # put() has removed the partial file
        raise
    except FileRefused:
        await discard(storage, storage_key)
        raise
    return stored


async def _whole_chunks(
    read: Callable[[int], Awaitable[bytes]], chunk_bytes: int
) -> AsyncIterator[bytes]:
    """The body in chunks of `chunk_bytes` (the last one shorter). A read hands over what the
    socket brought, often a few dozen KiB, and every chunk costs a pass of the sniffer, a hand-
    over to the writing thread and a write: gathered, they are paid once per `chunk_bytes`."""
    pieces: list[bytes] = []
    gathered = 0
    while piece := await read(chunk_bytes - gathered):
        pieces.append(piece)
        gathered += len(piece)
        if gathered >= chunk_bytes:
            yield b"".join(pieces)
            pieces, gathered = [], 0
    if pieces:
        yield b"".join(pieces)


def _request_chunks(request: web.Request, limits: BodyLimits) -> AsyncIterator[bytes]:
    def read(n: int) -> Awaitable[bytes]:
        return timed(request.content.read(n), limits.read_timeout_s)

    return _whole_chunks(read, limits.chunk_bytes)


def _part_chunks(part: BodyPartReader, chunk_bytes: int) -> AsyncIterator[bytes]:
    return _whole_chunks(part.read_chunk, chunk_bytes)


async def _read_field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise MalformedBody("field_too_long", part.name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("field_not_utf8", part.name) from None


def is_multipart(request: web.Request) -> bool:
    return request.content_type == "multipart/form-data"


async def receive_raw(
    request: web.Request,
    storage: Storage,
    storage_key: str,
    limits: BodyLimits,
) -> tuple[UploadForm, StoredFile]:
    limit_bytes = limits.file_bytes
    if request.content_type not in RAW_CONTENT_TYPES:
        raise UnsupportedMediaType()
    # Everything about the request is known before its body: refuse without reading it.
    form = form_from(request.query)
    check_form(form)
    if request.content_length is not None and request.content_length > limit_bytes:
        raise FileTooLarge(limit_bytes)
    stored = await _store(storage, storage_key, _request_chunks(request, limits), limit_bytes)
    return form, stored


async def receive_multipart(
    request: web.Request,
    storage: Storage,
    storage_key: str,
    limits: BodyLimits,
) -> tuple[UploadForm, StoredFile]:
    limit_bytes, chunk_bytes = limits.file_bytes, limits.chunk_bytes
    cap_bytes = limit_bytes + MULTIPART_OVERHEAD_BYTES
    if request.content_length is not None and request.content_length > cap_bytes:
        raise FileTooLarge(limit_bytes)
    fields: dict[str, str] = {}
    stored: StoredFile | None = None
    part_file_name: str | None = None
    parts = 0
    try:
        # Every byte the reader takes, skipped parts and preamble included, goes through the
        # cap and the read timeout (a chunked body declares no length to refuse up front).
        body = BoundedBody(request.content, cap_bytes=cap_bytes, limits=limits)
        reader = MultipartReader(
            request.headers, cast(StreamReader, body), client_max_size=cap_bytes
        )
        # Fields may come before or after the file part, so the file is stored as it comes
        # and the form checked once every part has been read.
        while (part := await reader.next()) is not None:
            parts += 1
            if parts > limits.max_parts:
                raise TooManyParts(limits.max_parts)
            if not isinstance(part, BodyPartReader):
                raise MalformedBody("nested")
            if part.name == "file":
                if stored is not None:
                    raise MultipleFiles()
                part_file_name = part.filename
                stored = await _store(
                    storage, storage_key, _part_chunks(part, chunk_bytes), limit_bytes
                )
            elif part.name in FORM_FIELDS:
                fields[part.name] = await _read_field(part)
        if stored is None:
            raise FileMissing()
        form = form_from({**request.query, **fields}, part_file_name)
        check_form(form)
    except BaseException as error:
        await discard(storage, storage_key)
        if isinstance(error, ValueError | AssertionError | HttpProcessingError):
            # aiohttp's multipart reader reports a malformed body (or part header) this way.
            raise MalformedBody("unreadable") from None
        raise
    return form, stored
