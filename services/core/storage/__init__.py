"""Where uploaded bytes live: one interface (`Storage`), two backends.

The folder (`STORAGE_BACKEND=folder`, the default) needs nothing but a folder; S3
(`STORAGE_BACKEND=s3`) any S3-compatible object store (docs/storage.md). Callers get a backend
from `open_storage` and use only the interface.
"""

from __future__ import annotations

import sys

from services.core.storage.base import (
    HEAD_BYTES,
    Capacity,
    ObjectMissing,
    Storage,
    StorageMisconfigured,
    StorageUnavailable,
    StoredFile,
    StreamDigest,
    UploadTooLarge,
    sheet_csv_key,
    upload_key,
)
from services.core.storage.folder import FolderStorage
from services.core.storage.settings import StorageSettings

__all__ = [
    "HEAD_BYTES",
    "Capacity",
    "FolderStorage",
    "ObjectMissing",
    "Storage",
    "StorageMisconfigured",
    "StorageSettings",
    "StorageUnavailable",
    "StoredFile",
    "StreamDigest",
    "UploadTooLarge",
    "open_storage",
    "sheet_csv_key",
    "start_storage",
    "upload_key",
]


def open_storage(settings: StorageSettings) -> Storage:
    """The configured backend; S3's client is loaded only when it is the one chosen."""
    if settings.backend == "s3":
        from services.core.storage.s3 import S3Storage

        return S3Storage(settings)
    return FolderStorage(settings.root)


async def start_storage(settings: StorageSettings, process: str) -> Storage:
    """The configured backend, checked: settings that cannot work end the process with one
    line naming the setting (exit status 2), as invalid settings do."""
    storage = open_storage(settings)
    try:
        await storage.start()
    except StorageMisconfigured as refused:
        print(f"{process}: storage: {refused.setting}: {refused.problem}", file=sys.stderr)
        raise SystemExit(2) from None
    return storage
