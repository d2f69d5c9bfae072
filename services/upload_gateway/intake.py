"""Reading an upload request: a raw CSV body or multipart/form-data, streamed to storage.

The body is never held in memory: chunks go through the content sniffer and the size limit into
`FolderStorage.store`, which hashes as it writes and removes the partial file on any refusal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from services.core.scheme.codes import Policy
from services.core.storage import FolderStorage, StoredFile, UploadTooLarge
from services.upload_gateway.content_check import ContentSniffer, FileRefused
from services.upload_gateway.errors import ApiError

POLICIES = tuple(policy.value for policy in Policy)
RAW_CONTENT_TYPES = frozenset(
    {
        "text/csv",
        "application/csv",
        "text/plain",
        # What Windows browsers send for a .csv file; the sniffer still refuses real workbooks.
        "application/vnd.ms-excel",
        "application/octet-stream",
    }
)
FORM_FIELDS = ("file_name", "policy", "terms_accepted")
MAX_FIELD_BYTES = 1024
MAX_FILE_NAME_CHARS = 255
DEFAULT_FILE_NAME = "upload.csv"
# A multipart body is a little larger than the file it carries.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})


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
        raise ApiError(
            422,
            "TERMS_NOT_ACCEPTED",
            "The terms and conditions must be accepted: send terms_accepted=true.",
        )
    if form.policy is not None and form.policy not in POLICIES:
        raise ApiError(400, "INVALID_POLICY", "policy must be 'all_or_nothing' or 'valid_rows'.")


def too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        413,
        "FILE_03",
        f"The file is larger than the limit of {limit_bytes} bytes"
        f" ({limit_bytes / (1024 * 1024):g} MB); split it into smaller files.",
    )


async def _sniffed(chunks: AsyncIterator[bytes], sniffer: ContentSniffer) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        sniffer.feed(chunk)
        yield chunk


async def _store(
    storage: FolderStorage, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
) -> StoredFile:
    sniffer = ContentSniffer()
    try:
        stored = await storage.store(storage_key, _sniffed(chunks, sniffer), limit_bytes)
        sniffer.finish()
    except UploadTooLarge:
        raise too_large(limit_bytes) from None
    except FileRefused as refusal:
        storage.delete(storage_key)
        raise ApiError(422, refusal.code, refusal.message) from None
    return stored


async def _request_chunks(request: web.Request, chunk_bytes: int) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(chunk_bytes):
        yield chunk


async def _part_chunks(part: BodyPartReader, chunk_bytes: int) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(chunk_bytes):
        yield chunk


async def _read_field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise ApiError(400, "BAD_REQUEST", f"Form field '{part.name}' is too long.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "BAD_REQUEST", f"Form field '{part.name}' is not UTF-8.") from None


def is_multipart(request: web.Request) -> bool:
    return request.content_type == "multipart/form-data"


async def receive_raw(
    request: web.Request,
    storage: FolderStorage,
    storage_key: str,
    *,
    limit_bytes: int,
    chunk_bytes: int,
) -> tuple[UploadForm, StoredFile]:
    if request.content_type not in RAW_CONTENT_TYPES:
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the CSV as a text/csv body or as multipart/form-data with a 'file' part.",
        )
    # Everything about the request is known before its body: refuse without reading it.
    form = form_from(request.query)
    check_form(form)
    if request.content_length is not None and request.content_length > limit_bytes:
        raise too_large(limit_bytes)
    stored = await _store(storage, storage_key, _request_chunks(request, chunk_bytes), limit_bytes)
    return form, stored


async def receive_multipart(
    request: web.Request,
    storage: FolderStorage,
    storage_key: str,
    *,
    limit_bytes: int,
    chunk_bytes: int,
) -> tuple[UploadForm, StoredFile]:
    if (
        request.content_length is not None
        and request.content_length > limit_bytes + MULTIPART_OVERHEAD_BYTES
    ):
        raise too_large(limit_bytes)
    fields: dict[str, str] = {}
    stored: StoredFile | None = None
    part_file_name: str | None = None
    try:
        reader = await request.multipart()
        # Fields may come before or after the file part, so the file is stored as it comes
        # and the form checked once every part has been read.
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "BAD_REQUEST", "Nested multipart bodies are not supported.")
            if part.name == "file":
                if stored is not None:
                    raise ApiError(400, "MULTIPLE_FILES", "Send one file per upload.")
                part_file_name = part.filename
                stored = await _store(
                    storage, storage_key, _part_chunks(part, chunk_bytes), limit_bytes
                )
            elif part.name in FORM_FIELDS:
                fields[part.name] = await _read_field(part)
        if stored is None:
            raise ApiError(400, "FILE_MISSING", "The multipart body has no 'file' part.")
        form = form_from({**request.query, **fields}, part_file_name)
        check_form(form)
    except BaseException as error:
        storage.delete(storage_key)
        if isinstance(error, ValueError | AssertionError | HttpProcessingError):
            # aiohttp's multipart reader reports a malformed body (or part header) this way.
            raise ApiError(400, "BAD_REQUEST", "The multipart body could not be read.") from None
        raise
    return form, stored
