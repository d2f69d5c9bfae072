"""The S3 backend against the project's own S3 server (no Kafka, no PostgreSQL): streamed
multipart puts hashed on the way, byte-range reads, deletes, and the faults: a put that fails
half-way leaves no object and no multipart upload behind, an unreachable server is an outage
(`StorageUnavailable`), a missing object is not (`ObjectMissing`), and settings that cannot work
stop a service at start with one line naming the setting."""

from __future__ import annotations

import gc
import hashlib
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from aiohttp import web

from services.core.storage import (
    ObjectMissing,
    StorageMisconfigured,
    StorageSettings,
    StorageUnavailable,
    UploadTooLarge,
    open_storage,
)
from services.core.storage.s3 import S3Storage
from tests.s3_server import REPO_ROOT, S3Server, closed_endpoint, s3_settings_for
from tests.service_env import service_env

pytestmark = [
    pytest.mark.tier2,
    pytest.mark.slow,
    # The first test starts the S3 server, and builds it when it is missing (about 7 minutes
    # on 2 cores; `make test-tier2` builds it before pytest starts).
    pytest.mark.timeout(1800),
]

MIB = 1024 * 1024


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def s3(settings: StorageSettings) -> S3Storage:
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    return storage


def keys_of(storage: S3Storage) -> list[str]:
    return sorted(storage.keys())


async def test_a_streamed_put_is_stored_whole_with_its_size_hash_and_head(
    s3_settings: StorageSettings, s3_server: S3Server
) -> None:
    storage = s3(s3_settings)
    # 20 MiB and a line: two parts of 8 MiB and a short one, sent as the gateway reads a body.
    body = bytes(range(256)) * (80 * 1024) + b"last line\r\n"
    pieces = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]

    stored = await storage.put("uploads/a.csv", stream(pieces), limit_bytes=len(body))

    assert stored.storage_key == "uploads/a.csv"
    assert stored.size_bytes == len(body) == 20 * MIB + 11
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.head == body[:4096]
    assert keys_of(storage) == ["uploads/a.csv"]
    with storage.opener("uploads/a.csv")() as whole:
        assert hashlib.sha256(whole.read()).hexdigest() == stored.sha256
    assert s3_server.incomplete_uploads() == []


async def test_a_whole_file_reader_passes_over_one_local_copy_removed_after_use(
    s3_settings: StorageSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = s3(s3_settings)
    body = 'Prénom,Notes\r\nZoë,"PO 4471, cohort B"\r\n'.encode() * 5000
    await storage.put("uploads/w.csv", stream([body]), limit_bytes=len(body))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    opener = storage.opener("uploads/w.csv")
    assert list(scratch.iterdir()) == []  # nothing fetched before the first pass
    with opener() as first:
        assert first.read() == body
    [copy] = scratch.iterdir()
    await storage.delete("uploads/w.csv")  # later passes read the copy, not the bucket
    with opener() as second:
        second.seek(len(body) - 11)
        assert second.read() == b'cohort B"\r\n'
    del opener, first, second
    gc.collect()
    assert not copy.exists()


async def test_a_process_that_planned_an_upload_reads_its_chunks_from_the_kept_copy(
    s3_settings: StorageSettings,
) -> None:
    planner, other_process = s3(s3_settings), s3(s3_settings)
    body = 'Prénom,Notes\r\nZoë,"PO 4471, cohort B"\r\n'.encode() * 5000
    await planner.put("uploads/k.csv", stream([body]), limit_bytes=len(body))
    with planner.opener("uploads/k.csv")() as whole:
        assert whole.read() == body
    # Gone from the bucket (deleted by another process): only the kept copy can answer now.
    await other_process.delete("uploads/k.csv")

    with planner.range_opener("uploads/k.csv")() as chunk:
        chunk.seek(15)  # after "Prénom,Notes\r\n": é is two bytes
        assert chunk.read(26) == 'Zoë,"PO 4471, cohort B"\r\n'.encode()
    with pytest.raises(ObjectMissing):
        other_process.range_opener("uploads/k.csv")  # no copy there: it asks the store
    await planner.delete("uploads/k.csv")  # a delete here drops this process's copy
    with pytest.raises(ObjectMissing):
        planner.range_opener("uploads/k.csv")


async def test_a_range_read_fetches_exactly_the_bytes_asked_for(
    s3_settings: StorageSettings,
) -> None:
    storage = s3(s3_settings)
    await storage.put("uploads/r.csv", stream([b"0123456789" * 3]), limit_bytes=100)

    with storage.range_opener("uploads/r.csv")() as reader:
        reader.seek(12)
        assert reader.read(5) == b"23456"
        reader.seek(28)
        assert reader.read(10) == b"89"  # clamped to the object's end
        assert reader.read(1) == b""


async def test_a_put_that_fails_half_way_leaves_no_object_and_no_parts(
    s3_settings: StorageSettings, s3_server: S3Server
) -> None:
    storage = s3(s3_settings)

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(3):  # 12 MiB: two parts already sent when the body breaks
            yield b"x" * (4 * MIB)
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await storage.put("uploads/broken.csv", broken(), limit_bytes=100 * MIB)

    assert keys_of(storage) == []
    assert not await storage.exists("uploads/broken.csv")
    assert s3_server.incomplete_uploads() == []


async def test_a_body_over_the_limit_is_refused_and_leaves_nothing(
    s3_settings: StorageSettings, s3_server: S3Server
) -> None:
    storage = s3(s3_settings)
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            sent.append(MIB)
            yield b"y" * MIB

    with pytest.raises(UploadTooLarge):
        await storage.put("uploads/big.csv", endless(), limit_bytes=12 * MIB)

    assert len(sent) == 13  # stopped at the first chunk past the limit
    assert keys_of(storage) == []
    assert s3_server.incomplete_uploads() == []


async def test_delete_removes_the_object_and_tolerates_a_missing_one(
    s3_settings: StorageSettings,
) -> None:
    storage = s3(s3_settings)
    await storage.put("uploads/d.csv", stream([b"bytes"]), limit_bytes=100)

    assert await storage.delete("uploads/d.csv") is True
    assert await storage.delete("uploads/d.csv") is False
    assert keys_of(storage) == []


async def test_a_missing_object_is_missing_not_an_outage(s3_settings: StorageSettings) -> None:
    storage = s3(s3_settings)
    with pytest.raises(ObjectMissing):
        storage.range_opener("uploads/never.csv")
    with pytest.raises(ObjectMissing):
        storage.opener("uploads/never.csv")


async def test_an_unreachable_server_is_an_outage_everywhere(
    s3_server: S3Server, s3_credentials: None, s3_prefix: str
) -> None:
    storage = s3(s3_settings_for(s3_server, s3_prefix, s3_endpoint=closed_endpoint()))

    with pytest.raises(StorageUnavailable):
        await storage.put("uploads/a.csv", stream([b"data"]), limit_bytes=100)
    with pytest.raises(StorageUnavailable):
        storage.range_opener("uploads/a.csv")
    with pytest.raises(StorageUnavailable):
        storage.opener("uploads/a.csv")
    with pytest.raises(StorageUnavailable):
        await storage.delete("uploads/a.csv")
    assert await storage.ready(timeout_s=10) is False
    await storage.start()  # only logged: the service starts and reports not ready


async def test_the_probe_passes_and_leaves_nothing(
    s3_settings: StorageSettings, s3_server: S3Server
) -> None:
    storage = s3(s3_settings)
    assert await storage.ready(timeout_s=10) is True
    assert keys_of(storage) == []
    assert await storage.capacity() is None


async def test_a_missing_bucket_is_named_at_start(
    s3_server: S3Server, s3_credentials: None, s3_prefix: str
) -> None:
    storage = s3(s3_settings_for(s3_server, s3_prefix, s3_bucket="no-such-bucket"))
    with pytest.raises(StorageMisconfigured) as refused:
        await storage.start()
    assert refused.value.setting == "STORAGE_S3_BUCKET"


async def test_refused_credentials_are_named_at_start(
    s3_server: S3Server, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    storage = s3(s3_settings_for(s3_server, s3_prefix))
    with pytest.raises(StorageMisconfigured) as refused:
        await storage.start()
    assert refused.value.setting == "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"


async def test_credentials_can_come_from_a_shared_credentials_file(
    s3_server: S3Server, s3_prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    file = tmp_path / "credentials"
    file.write_text(
        "[pipeline]\n"
        f"aws_access_key_id = {s3_server.access_key_id}\n"
        f"aws_secret_access_key = {s3_server.secret_access_key}\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(file))
    monkeypatch.setenv("AWS_PROFILE", "pipeline")
    storage = s3(s3_settings_for(s3_server, s3_prefix))
    await storage.start()
    await storage.put("uploads/f.csv", stream([b"from the file"]), limit_bytes=100)
    assert keys_of(storage) == ["uploads/f.csv"]


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"STORAGE_S3_BUCKET": "no-such-bucket"}, "STORAGE_S3_BUCKET"),
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_the_gateway_process_stops_with_one_line_naming_the_setting(
    s3_server: S3Server, s3_prefix: str, change: dict[str, str], setting: str
) -> None:
    settings = {
        "DEPLOYMENT_MODE": "local",
        "STORAGE_BACKEND": "s3",
        "STORAGE_S3_ENDPOINT": s3_server.endpoint,
        "STORAGE_S3_BUCKET": s3_server.bucket,
        "STORAGE_S3_PREFIX": s3_prefix,
        "STORAGE_S3_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        **change,
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.upload_gateway"],
        cwd=REPO_ROOT,
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"gateway: storage: {setting}: "), done.stderr
    assert s3_server.secret_access_key not in done.stderr
    assert "not-the-secret" not in done.stderr


async def test_the_one_off_copy_moves_a_folders_uploads_into_the_bucket_once(
    s3_settings: StorageSettings, tmp_path: Path
) -> None:
    from services.core.storage.copy import copy_folder

    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "a.csv").write_bytes(b"a" * 10)
    (tmp_path / "uploads" / "b.csv").write_bytes(b"b" * (6 * MIB))
    (tmp_path / "uploads" / "c.csv.part").write_bytes(b"half")  # never a stored upload
    storage = s3(s3_settings)

    first = await copy_folder(tmp_path, storage)
    again = await copy_folder(tmp_path, storage)

    assert first == {"copied": 2, "already_there": 0, "mismatched": 0}
    assert again == {"copied": 0, "already_there": 2, "mismatched": 0}
    assert keys_of(storage) == ["uploads/a.csv", "uploads/b.csv"]
    with storage.opener("uploads/b.csv")() as copied:
        assert copied.read() == b"b" * (6 * MIB)


async def test_a_server_answering_5xx_is_an_outage(
    s3_server: S3Server, s3_credentials: None, s3_prefix: str
) -> None:
    """A server that answers every request with 503, as an overloaded store does."""

    async def overloaded(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", overloaded)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        endpoint = f"http://127.0.0.1:{port}"
        storage = s3(s3_settings_for(s3_server, s3_prefix, s3_endpoint=endpoint))
        with pytest.raises(StorageUnavailable):
            await storage.put("uploads/a.csv", stream([b"data"]), limit_bytes=100)
        with pytest.raises(StorageUnavailable):
            storage.range_opener("uploads/a.csv")
        assert await storage.ready(timeout_s=10) is False
        await storage.start()  # an outage, not a setting: only logged
    finally:
        await runner.cleanup()


def test_memory_stays_bounded_whatever_the_size(
    s3_server: S3Server, s3_prefix: str, tmp_path: Path
) -> None:
    """A 256 MiB body streamed in a process of its own: its peak RSS grows by about the parts
    in flight ((concurrency + 1) x 8 MiB), not by the body."""
    program = f"""
import asyncio, resource
from services.core.storage import StorageSettings, open_storage

async def body():
    piece = b"R1,SMSTS-R,01/03/2026,Ann,Smith,01/01/1990,1000000043,,,,\\r\\n" * 1100
    for _ in range(256 * 1024 * 1024 // len(piece)):
        yield piece

async def main():
    storage = open_storage(StorageSettings(
        backend="s3", s3_endpoint={s3_server.endpoint!r}, s3_bucket={s3_server.bucket!r},
        s3_prefix={s3_prefix!r}, s3_allow_http=True))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored = await storage.put("uploads/big.csv", body(), limit_bytes=1 << 30)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(stored.size_bytes, (after - before) // 1024)

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO_ROOT,
        env=service_env(
            {
                "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
                "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
            }
        ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    size, grown_mib = (int(word) for word in done.stdout.split())
    assert size > 250 * MIB
    assert grown_mib < 64, f"peak RSS grew by {grown_mib} MiB for a {size // MIB} MiB body"
