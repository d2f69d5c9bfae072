"""Where uploaded bytes live: one small interface, a folder backend.

The folder is local disk on one machine and a shared mount (NFS, EFS, a CSI volume) when
validators run elsewhere; see docs/storage.md for why this backend was chosen.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


class UploadTooLarge(Exception):
    """The body passed the size limit while it was being stored."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    storage_key: str
    size_bytes: int
    sha256: str
    head: bytes  # the first bytes, for content sniffing without reading the file again


class FolderStorage:
    HEAD_BYTES = 4096

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, storage_key: str) -> Path:
        path = (self.root / storage_key).resolve()
        if self.root not in path.parents:
            raise ValueError("storage key escapes the storage root")
        return path

    @staticmethod
    def key_for(upload_id: uuid.UUID) -> str:
        # Never derived from the user's file name.
        return f"uploads/{upload_id}.csv"

    async def store(
        self, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
    ) -> StoredFile:
        """Writes the stream, hashing as it goes; a body over the limit leaves no file behind."""
        path = self.path(storage_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        head = b""
        temporary = path.with_suffix(".part")
        try:
            with temporary.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit_bytes:
                        raise UploadTooLarge
                    if len(head) < self.HEAD_BYTES:
                        head += chunk[: self.HEAD_BYTES - len(head)]
                    digest.update(chunk)
                    out.write(chunk)  # into the page cache: microseconds
                # Durable before the upload is recorded; the wait for the disk runs off the loop.
                await asyncio.to_thread(_flush_to_disk, out)
            temporary.replace(path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return StoredFile(storage_key, size, digest.hexdigest(), head)

    def delete(self, storage_key: str) -> None:
        self.path(storage_key).unlink(missing_ok=True)


def _flush_to_disk(out: BinaryIO) -> None:
    out.flush()
    os.fsync(out.fileno())
