"""The one-off copy of a folder's uploads into the configured S3 bucket, for a deployment that
switches from `STORAGE_BACKEND=folder` to `s3` (docs/storage.md):

    STORAGE_BACKEND=s3 STORAGE_S3_... python -m services.core.storage.copy /data/storage

Every `uploads/*.csv` under the folder is streamed to the same key in the bucket, unless the
bucket has it already, and its SHA-256 checked against the file's; nothing is deleted. Safe to
run again: a second run copies only what the first did not. Prints its counts as JSON, and exits
1 when a copy did not match.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from services.core.storage import FolderStorage, Storage, StorageSettings, start_storage

READ_BYTES = 1024 * 1024


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, READ_BYTES):
            yield chunk


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(READ_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


async def copy_folder(root: Path, target: Storage) -> dict[str, int]:
    folder = FolderStorage(root)
    counts = {"copied": 0, "already_there": 0, "mismatched": 0}
    for path in sorted((folder.root / "uploads").glob("*.csv")):
        key = path.relative_to(folder.root).as_posix()
        if await target.exists(key):
            counts["already_there"] += 1
            continue
        size = path.stat().st_size
        stored = await target.put(key, _chunks(path), limit_bytes=size)
        if stored.sha256 != await asyncio.to_thread(_sha256, path):
            counts["mismatched"] += 1  # changed while copied: run again once it is still
            await target.delete(key)
            continue
        counts["copied"] += 1
    return counts


async def _main(root: Path) -> int:
    settings = StorageSettings()
    if settings.backend != "s3":
        print("copy: set STORAGE_BACKEND=s3 and the STORAGE_S3_* settings", file=sys.stderr)
        return 2
    target = await start_storage(settings, "copy")
    counts = await copy_folder(root, target)
    print(json.dumps(counts))
    return 1 if counts["mismatched"] else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m services.core.storage.copy FOLDER", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(asyncio.run(_main(Path(sys.argv[1]))))
