"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that it can take uploads.

An upload needs PostgreSQL (its row and the outbox) and the storage folder, nothing else: the
relay publishes the outbox to Kafka later, so Kafka is reported but never takes the gateway out
of service. The storage check is the folder as an upload would use it: it exists, is a folder,
is on the volume the gateway found at start (an unmounted share leaves an empty folder of the
parent filesystem behind), and a probe file can be written and removed in it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from services.core.logging import get_logger
from services.core.storage import FolderStorage, StoredFile
from services.upload_gateway.appkeys import RELAY, SETTINGS, STORAGE, database

log = get_logger()


class StorageUnavailable(OSError):
    """The storage folder cannot take a file just now: an outage, not a fault of the upload.

    An `OSError`, so the gateway's error middleware answers it 503 like any transient error.
    """


class CheckedStorage(FolderStorage):
    """The folder backend, refusing to write unless the folder is the volume found at start.

    Without the check, a write after the share was unmounted (or the folder removed) would
    recreate the folder on the local disk and the file would be out of the validators' reach.
    """

    PROBE_NAME = ".gateway-ready-probe"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        # The device of the folder when it was first found; None until then.
        self.device: int | None = None
        self._probing: asyncio.Future[None] | None = None

    def open_volume(self) -> None:
        """At start: creates the folder if it is missing and remembers its volume. A folder
        that cannot be made now is learnt the first time it is found."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.check_volume()
        except OSError as error:
            log.warning("storage_unavailable", error=type(error).__name__)

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

    def probe(self) -> None:
        """Blocking: the volume check, then a probe file written, flushed and removed."""
        self.check_volume()
        probe = self.root / f"{self.PROBE_NAME}-{os.getpid()}"
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

    async def store(
        self, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
    ) -> StoredFile:
        self.check_volume()
        return await super().store(storage_key, chunks, limit_bytes)


def _seen(probe: asyncio.Future[None]) -> None:
    """A probe's failure is the answer of whichever check awaited it, or of none (it outlived
    its timeout): marked as retrieved either way."""
    if not probe.cancelled():
        probe.exception()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database_ok(request: web.Request, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            async with database(request.app) as connection:
                await connection.fetchval("SELECT 1")
    except Exception:
        return False
    return True


async def _storage_ok(request: web.Request, timeout_s: float) -> bool:
    storage = request.app[STORAGE]
    if isinstance(storage, CheckedStorage):
        return await storage.ready(timeout_s)
    return True


async def readyz(request: web.Request) -> web.Response:
    """200 when an upload can be taken (PostgreSQL and storage), else 503. `kafka` is shown
    for operators only: while it is down uploads wait in the outbox, which is relayed later."""
    timeout_s = request.app[SETTINGS].readiness_timeout_s
    database_ok, storage_ok = await asyncio.gather(
        _database_ok(request, timeout_s), _storage_ok(request, timeout_s)
    )
    relay = request.app.get(RELAY)
    # Without the relay this process never talks to Kafka.
    kafka_state = "disabled" if relay is None else relay.kafka_state(timeout_s)
    checks = {
        "database": "ok" if database_ok else "unavailable",
        "storage": "ok" if storage_ok else "unavailable",
        "kafka": kafka_state,
    }
    ready = database_ok and storage_ok
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )
