"""The folder backend: local disk on one machine, a shared mount (NFS, EFS, a CSI volume) when
validators run elsewhere.

A file is written as `<key>.part`, flushed to disk, then renamed: only a complete file is ever
seen under its key. Every write first checks that the folder is the volume found at start:
after a share is unmounted (or the folder removed), a write would otherwise recreate the folder
on the local disk, out of the validators' reach.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import errno
import io
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from services.core.logging import get_logger
from services.core.scheme.record_scanner import Opener
from services.core.storage.base import (
    HEAD_BYTES,
    Capacity,
    ObjectMissing,
    StorageUnavailable,
    StoredFile,
    StreamDigest,
    upload_key,
)

log = get_logger()

PART_SUFFIX = ".part"


class FolderStorage:
    HEAD_BYTES = HEAD_BYTES
    PROBE_NAME = ".gateway-ready-probe"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        # The device of the folder when it was first found; None until then.
        self.device: int | None = None
        self._probing: asyncio.Future[None] | None = None

    def path(self, storage_key: str) -> Path:
        path = (self.root / storage_key).resolve()
        if self.root not in path.parents:
            raise ValueError("storage key escapes the storage root")
        return path

    key_for = staticmethod(upload_key)

    # --- start and the volume ---------------------------------------------------------------

    async def start(self) -> None:
        """Creates the folder if it is missing and remembers its volume. A folder that cannot
        be made now is learnt the first time it is found."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.check_volume()
        except OSError as error:
            log.warning("storage_unavailable", backend="folder", error=type(error).__name__)

    def check_volume(self) -> None:
        """Raises `StorageUnavailable` unless the folder is there, on the volume found first."""
        try:
            found = os.stat(self.root)
        except FileNotFoundError:
            raise StorageUnavailable(errno.ENOENT, "the storage folder is missing") from None
        if not stat.S_ISDIR(found.st_mode):
            raise StorageUnavailable(errno.ENOTDIR, "the storage path is not a folder")
        if self.device is None:
            self.device = found.st_dev
        elif found.st_dev != self.device:
            raise StorageUnavailable(errno.ENODEV, "the storage folder is not on its volume")

    # --- writing ----------------------------------------------------------------------------

    async def put(
        self, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
    ) -> StoredFile:
        """Writes the stream, hashing as it goes; a body over the limit leaves no file behind."""
        path = self.path(storage_key)
        self.check_volume()
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = StreamDigest(limit_bytes)
        temporary = path.with_name(f"{path.name}{PART_SUFFIX}")
        try:
            writer = _BackgroundWriter(temporary, digest)
            try:
                async for chunk in chunks:
                    digest.count(chunk)  # the limit, at once
                    await writer.write(chunk)
                # Durable before the upload is recorded: one fsync, at the end, off the loop.
                await writer.sync()
            finally:
                writer.close()
            temporary.replace(path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return digest.stored(storage_key)

    # --- reading ----------------------------------------------------------------------------

    def _open(self, storage_key: str, buffering: int) -> IO[bytes]:
        path = self.path(storage_key)
        try:
            return open(path, "rb", buffering=buffering)
        except FileNotFoundError:
            if self.root.is_dir():
                raise ObjectMissing from None
            raise StorageUnavailable(errno.ENOENT, "the storage folder is not reachable") from None

    def opener(self, storage_key: str) -> Opener:
        self._open(storage_key, -1).close()  # a missing file is known before any reading

        def open_binary() -> IO[bytes]:
            return self._open(storage_key, -1)

        return open_binary

    def range_opener(self, storage_key: str) -> Opener:
        self._open(storage_key, 0).close()

        def open_binary() -> IO[bytes]:
            # Unbuffered: each read is one read of the segment, nothing beyond it.
            raw = self._open(storage_key, 0)
            if not isinstance(raw, io.RawIOBase):  # `buffering=0` gives a raw file
                raw.close()
                raise TypeError(f"an unbuffered open gave {type(raw).__name__}")
            return raw

        return open_binary

    async def exists(self, storage_key: str) -> bool:
        return await asyncio.to_thread(self.path(storage_key).exists)

    # --- deleting ---------------------------------------------------------------------------

    async def delete(self, storage_key: str) -> bool:
        return await asyncio.to_thread(self._delete, storage_key)

    def _delete(self, storage_key: str) -> bool:
        try:
            self.path(storage_key).unlink()
        except FileNotFoundError:
            return False
        return True

    async def remove_stale_parts(self, older_than: float, *, delete: bool) -> int:
        return await asyncio.to_thread(_part_files, self.root, older_than, delete=delete)

    # --- health -----------------------------------------------------------------------------

    def probe(self) -> None:
        """Blocking: the volume check, then a probe file written, flushed and removed."""
        self.check_volume()
        probe = self.root / f"{self.PROBE_NAME}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with probe.open("wb") as out:
                out.write(b"ok")
                out.flush()
                os.fsync(out.fileno())
        finally:
            probe.unlink(missing_ok=True)

    async def ready(self, timeout_s: float) -> bool:
        """`probe` off the event loop, one at a time: on a hung mount readiness times out, and
        later checks wait on the same probe instead of piling up blocked threads."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(asyncio.to_thread(self.probe))
            self._probing.add_done_callback(_seen)
        try:
            await asyncio.wait_for(asyncio.shield(self._probing), timeout_s)
        except (OSError, TimeoutError):
            return False
        return True

    async def capacity(self) -> Capacity | None:
        usage = await asyncio.to_thread(_disk_usage, self.root)
        return Capacity(usage.free, usage.total)

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {"backend": "folder", "root": str(self.root)}


def _disk_usage(root: Path) -> shutil._ntuple_diskusage:
    """Usage of the volume that holds `root` (or will: its nearest existing folder)."""
    path = root
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path)


def _seen(probe: asyncio.Future[None]) -> None:
    """A probe's failure is the answer of whichever check awaited it, or of none (it outlived
    its timeout): marked as retrieved either way."""
    if not probe.cancelled():
        probe.exception()


class _BackgroundWriter:
    """A `.part` file written through its raw descriptor by a thread of its own, which also
    hashes each chunk, in stream order. `os.write`, `os.fsync` and `hashlib` (for chunks of more
    than 2 KiB) let go of the GIL, so the event loop receives the next chunks (and serves other
    requests) while earlier ones go to the page cache; one `fsync` at the end makes the file
    durable. At most `QUEUED_CHUNKS` chunks wait for the thread (`write` waits for the oldest
    beyond that), so an upload's memory stays bounded (2 MiB at the default chunk size).

    Flushing to the disk every few MiB while the body still streams in was tried: on the
    shared test machine it was no faster than the one `fsync` at the end (docs/performance.md).
    """

    QUEUED_CHUNKS = 8

    def __init__(self, path: Path, digest: StreamDigest) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._digest = digest
        # One thread: its jobs run in the order they were queued (the digest needs that), and
        # closing the descriptor is queued last, so no job of a cancelled request outlives it.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "storage-write")
        self._queued: collections.deque[concurrent.futures.Future[None]] = collections.deque()

    async def write(self, chunk: bytes) -> None:
        while len(self._queued) >= self.QUEUED_CHUNKS:
            await self._wait_oldest()
        self._queued.append(self._thread.submit(self._write_and_hash, chunk))

    async def sync(self) -> None:
        """Every chunk written and the file durable (data and size)."""
        self._queued.append(self._thread.submit(_flush_to_disk, self._fd))
        while self._queued:
            await self._wait_oldest()

    def close(self) -> None:
        """Closes the file after whatever is still queued, without waiting on the loop."""
        self._thread.submit(os.close, self._fd)
        self._thread.shutdown(wait=False)

    async def _wait_oldest(self) -> None:
        # A failed write (a full disk) raises here, on the loop, into `put`.
        await asyncio.wrap_future(self._queued[0])
        self._queued.popleft()

    def _write_and_hash(self, chunk: bytes) -> None:
        self._digest.hash(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]


def _flush_to_disk(fd: int) -> None:
    os.fsync(fd)


def _part_files(root: Path, older_than: float, *, delete: bool) -> int:
    """`.part` files under `root` last written before `older_than` (epoch seconds): uploads
    whose request died before the file was complete. Symbolic links are never followed."""
    found = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(PART_SUFFIX):
                continue
            path = Path(folder, name)
            try:
                status = path.lstat()
            except FileNotFoundError:
                continue
            if path.is_symlink() or status.st_mtime >= older_than:
                continue
            found += 1
            if delete:
                path.unlink(missing_ok=True)
    return found
