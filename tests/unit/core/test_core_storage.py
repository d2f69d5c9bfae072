"""FolderStorage on a temporary folder: streamed writes hashed on the way, the size limit
enforced while streaming, keys that can never reach outside the storage root, reads by byte
range, and a missing file told apart from a missing folder."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from services.core.storage import (
    FolderStorage,
    ObjectMissing,
    StorageSettings,
    StorageUnavailable,
    UploadTooLarge,
    open_storage,
)


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def test_a_stored_file_has_its_bytes_size_hash_and_head(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    chunks = [b"ProviderReference,CourseCode\r\n", b"x" * 5000, b"tail\r\n"]
    body = b"".join(chunks)

    stored = await storage.put("uploads/a.csv", stream(chunks), limit_bytes=len(body))

    assert stored.storage_key == "uploads/a.csv"
    assert stored.size_bytes == len(body)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.head == body[: FolderStorage.HEAD_BYTES]
    assert (tmp_path / "uploads" / "a.csv").read_bytes() == body
    assert files_under(tmp_path) == [tmp_path / "uploads" / "a.csv"]  # no .part left over


async def test_chunks_beyond_the_writing_queue_are_stored_in_their_order(tmp_path: Path) -> None:
    # More chunks than wait for the writing thread at once, each different: a chunk written or
    # hashed out of order would change the bytes or the digest.
    chunks = [bytes([i]) * (3000 + i) for i in range(40)]
    body = b"".join(chunks)

    stored = await FolderStorage(tmp_path).put("big.csv", stream(chunks), limit_bytes=len(body))

    assert (tmp_path / "big.csv").read_bytes() == body
    assert (stored.size_bytes, stored.sha256) == (len(body), hashlib.sha256(body).hexdigest())


async def test_a_write_the_disk_refuses_is_raised_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def full_after_a_while(fd: int, data: bytes | memoryview) -> int:
        if fd == written[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    written: list[int] = [-1]
    real_open = os.open

    def remember(path: Any, flags: int, mode: int = 0o777) -> int:
        fd = real_open(path, flags, mode)
        if str(path).endswith(".part"):
            written[0] = fd
        return fd

    monkeypatch.setattr(os, "open", remember)
    monkeypatch.setattr(os, "write", full_after_a_while)
    with pytest.raises(OSError, match="No space left"):
        await FolderStorage(tmp_path).put("uploads/e.csv", stream([b"a" * 9000] * 3), 100_000)

    assert files_under(tmp_path) == []


async def test_an_empty_stream_stores_an_empty_file(tmp_path: Path) -> None:
    stored = await FolderStorage(tmp_path).put("e.csv", stream([]), limit_bytes=10)
    assert (stored.size_bytes, stored.head) == (0, b"")
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert (tmp_path / "e.csv").read_bytes() == b""


async def test_a_body_over_the_limit_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    chunks_sent: list[bytes] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            chunks_sent.append(b"y" * 1024)
            yield chunks_sent[-1]

    with pytest.raises(UploadTooLarge):
        await storage.put("uploads/big.csv", endless(), limit_bytes=10 * 1024)

    assert len(chunks_sent) == 11  # stopped at the first chunk past the limit, not after
    assert files_under(tmp_path) == []


async def test_a_body_exactly_at_the_limit_is_stored(tmp_path: Path) -> None:
    stored = await FolderStorage(tmp_path).put("f.csv", stream([b"ab", b"cd"]), limit_bytes=4)
    assert stored.size_bytes == 4


async def test_a_stream_that_fails_midway_leaves_no_file(tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await FolderStorage(tmp_path).put("uploads/c.csv", broken(), limit_bytes=1000)
    assert files_under(tmp_path) == []


async def test_a_refused_body_keeps_the_file_already_stored_under_that_key(
    tmp_path: Path,
) -> None:
    # The bytes go to a temporary file first, so a failed retry cannot damage the original.
    storage = FolderStorage(tmp_path)
    await storage.put("d.csv", stream([b"original"]), limit_bytes=100)
    with pytest.raises(UploadTooLarge):
        await storage.put("d.csv", stream([b"z" * 101]), limit_bytes=100)
    assert (tmp_path / "d.csv").read_bytes() == b"original"


@pytest.mark.parametrize(
    "key",
    ["../outside.csv", "uploads/../../outside.csv", "/etc/passwd", ".", "", "uploads/.."],
)
def test_keys_cannot_reach_outside_the_storage_root(tmp_path: Path, key: str) -> None:
    storage = FolderStorage(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes the storage root"):
        storage.path(key)


async def test_storing_under_an_escaping_key_writes_nothing(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path / "root")
    with pytest.raises(ValueError, match="escapes the storage root"):
        await storage.put("../outside.csv", stream([b"data"]), limit_bytes=100)
    assert files_under(tmp_path) == []


def test_a_symlink_inside_the_root_cannot_lead_outside_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes the storage root"):
        FolderStorage(root).path("link/file.csv")


def test_keys_come_from_the_upload_id_and_stay_under_the_root(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    upload_id = uuid.uuid4()
    key = FolderStorage.key_for(upload_id)
    assert key == f"uploads/{upload_id}.csv"
    assert storage.path(key) == tmp_path.resolve() / "uploads" / f"{upload_id}.csv"


async def test_delete_removes_the_file_and_tolerates_a_missing_one(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    await storage.put("g.csv", stream([b"bytes"]), limit_bytes=100)
    assert await storage.delete("g.csv") is True
    assert await storage.delete("g.csv") is False
    assert files_under(tmp_path) == []
    with pytest.raises(ValueError, match="escapes the storage root"):
        await storage.delete("../g.csv")


async def test_a_range_read_returns_exactly_the_bytes_asked_for(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    await storage.put("r.csv", stream([b"0123456789"]), limit_bytes=100)

    with storage.range_opener("r.csv")() as reader:
        reader.seek(3)
        assert reader.read(4) == b"3456"
    with storage.opener("r.csv")() as whole:
        assert whole.read() == b"0123456789"


async def test_a_missing_file_is_told_apart_from_a_missing_folder(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path / "root")
    await storage.start()  # creates the folder
    with pytest.raises(ObjectMissing):
        storage.range_opener("uploads/gone.csv")
    (tmp_path / "root").rmdir()
    with pytest.raises(StorageUnavailable):
        storage.opener("uploads/gone.csv")
    assert not isinstance(ObjectMissing(), OSError)  # never waited out as an outage


async def test_a_write_into_a_folder_that_went_away_is_an_outage(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path / "root")
    await storage.start()
    (tmp_path / "root").rmdir()
    with pytest.raises(StorageUnavailable):
        await storage.put("uploads/a.csv", stream([b"x"]), limit_bytes=10)
    assert not (tmp_path / "root").exists(), "the write recreated the folder"
    assert await storage.ready(timeout_s=5) is False


async def test_the_folder_reports_its_volume_and_a_probe_that_passes(tmp_path: Path) -> None:
    storage = FolderStorage(tmp_path)
    await storage.start()
    capacity = await storage.capacity()
    assert capacity is not None
    assert 0 < capacity.free_bytes <= capacity.total_bytes
    assert await storage.ready(timeout_s=5) is True
    assert files_under(tmp_path) == []  # the probe file is gone


async def test_stale_part_files_are_counted_then_removed(tmp_path: Path) -> None:
    (tmp_path / "uploads").mkdir()
    stale = tmp_path / "uploads" / "x.csv.part"
    stale.write_bytes(b"half")
    storage = FolderStorage(tmp_path)
    later = stale.stat().st_mtime + 1
    assert await storage.remove_stale_parts(later, delete=False) == 1
    assert stale.exists()
    assert await storage.remove_stale_parts(later, delete=True) == 1
    assert files_under(tmp_path) == []


def test_the_folder_is_the_default_backend(tmp_path: Path) -> None:
    storage = open_storage(StorageSettings(root=tmp_path))
    assert isinstance(storage, FolderStorage)
    assert storage.describe() == {"backend": "folder", "root": str(tmp_path.resolve())}


def test_the_s3_backend_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="STORAGE_S3_BUCKET"):
        StorageSettings(backend="s3")
