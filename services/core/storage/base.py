"""The storage interface every caller uses, what it returns and the errors it raises.

Two backends implement it (`FolderStorage`, `S3Storage`); `open_storage` picks one from the
settings, so no caller outside this package knows which one it has.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from services.core.scheme.record_scanner import Opener

# The first bytes of a stored file, kept for content sniffing without reading the file again.
HEAD_BYTES = 4096


class UploadTooLarge(Exception):
    """The body passed the size limit while it was being stored."""


class StorageUnavailable(OSError):
    """The storage cannot be reached or answers with a server error just now: an outage, not a
    fault of the upload. Waited out and retried; never counted against an upload.

    An `OSError`, so every loop that waits out a transient error (`TRANSIENT_ERRORS`) treats it
    as one."""


class ObjectMissing(Exception):
    """The stored file is gone while the storage itself answers: the upload can never be read
    again (unlike `StorageUnavailable`). Deliberately not an `OSError`."""


class StorageMisconfigured(Exception):
    """At start: the storage refuses this service for a reason a restart cannot fix (wrong
    credentials, a missing bucket or folder). `setting` names the setting to correct."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True, slots=True)
class StoredFile:
    storage_key: str
    size_bytes: int
    sha256: str
    head: bytes  # the first bytes, for content sniffing without reading the file again


@dataclass(frozen=True, slots=True)
class Capacity:
    free_bytes: int
    total_bytes: int


def upload_key(upload_id: uuid.UUID) -> str:
    """The storage key of an upload's file; never derived from the user's file name."""
    return f"uploads/{upload_id}.csv"


def sheet_csv_key(storage_key: str) -> str:
    """Beside an upload of the guided workbook (whose own file stays the bytes sent): the CSV
    records of its Achievements sheet, which its chunk tasks read by byte range. Written by the
    planner, deleted with the upload's file."""
    return f"{storage_key}.sheet.csv"


class Storage(Protocol):
    """What the pipeline needs from the place uploaded bytes live."""

    async def start(self) -> None:
        """At a service's start: `StorageMisconfigured` when the settings cannot work; an
        outage is only logged (readiness reports it, and every use retries it)."""

    async def put(
        self, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
    ) -> StoredFile:
        """Streams `chunks` to `storage_key`, hashing on the way, with bounded memory. The file
        becomes visible only once complete: a stream that fails (or passes `limit_bytes`, with
        `UploadTooLarge`) leaves nothing under the key and no partial upload behind."""

    def opener(self, storage_key: str) -> Opener:
        """Blocking (for worker threads): opens a seekable stream read ahead in large blocks,
        for a pass from the start. Raises `ObjectMissing` or `StorageUnavailable`."""

    def range_opener(self, storage_key: str) -> Opener:
        """Blocking: opens a seekable stream whose every `read(n)` after a `seek` fetches
        exactly that byte range and nothing more (a chunk's segments)."""

    async def exists(self, storage_key: str) -> bool: ...

    async def delete(self, storage_key: str) -> bool:
        """Removes the file; True when it was there. A missing file is fine."""

    async def remove_stale_parts(self, older_than: float, *, delete: bool) -> int:
        """Leftovers of uploads whose request died mid-way, last written before `older_than`
        (epoch seconds); counted, and removed when `delete`. Object stores expire them with a
        lifecycle rule instead (docs/storage.md) and count none here."""

    async def ready(self, timeout_s: float) -> bool:
        """The readiness probe: True when a file could be stored now."""

    async def capacity(self) -> Capacity | None:
        """Free and total bytes where the backend has a limit (a volume); None otherwise."""

    async def close(self) -> None: ...

    def describe(self) -> dict[str, str]:
        """What an operator needs to find the storage (never a secret)."""


class StreamDigest:
    """Size, SHA-256 and first bytes of a stream, taken as it passes; the limit enforced."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.size = 0
        self.head = b""
        self._digest = hashlib.sha256()

    def take(self, chunk: bytes) -> bytes:
        self.count(chunk)
        self.hash(chunk)
        return chunk

    def count(self, chunk: bytes) -> None:
        """Size, limit and first bytes: at once, as the chunk arrives."""
        self.size += len(chunk)
        if self.size > self.limit_bytes:
            raise UploadTooLarge
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]

    def hash(self, chunk: bytes) -> None:
        """The digest, chunks in stream order; may run in a worker thread (hashlib lets go of
        the GIL for large chunks), one chunk at a time."""
        self._digest.update(chunk)

    def stored(self, storage_key: str) -> StoredFile:
        return StoredFile(storage_key, self.size, self._digest.hexdigest(), self.head)
