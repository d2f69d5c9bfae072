"""The S3 backend: any S3-compatible object store, through obstore.

Why obstore (docs/storage.md): its client is Rust's `object_store` (the Apache Arrow project's),
async and sync from one store object, with no Python HTTP stack of its own (aiobotocore pins
botocore to narrow ranges and brings a second aiohttp user into the gateway's process). A put
from an async iterator is a multipart upload that is aborted when the iterator fails, and
range reads, a custom CA and retries are settings of the store.

Uploads stream as multipart uploads: at most `s3_part_concurrency + 1` parts of
`s3_part_bytes` are held in memory, whatever the file's size, and the object exists only once
the upload completes. Reads are byte ranges: a chunk task fetches its segments and nothing else.
A whole-file reader (the planner's passes, the workbook screen, the rows to fix) gets a local
copy, fetched once with one streamed GET into the scratch folder (TMPDIR) and read as it
arrives.
"""

from __future__ import annotations

import asyncio
import atexit
import configparser
import contextlib
import errno
import io
import os
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import IO, TYPE_CHECKING, Any, TypeVar

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store
from pydantic import SecretStr

from services.core.logging import get_logger
from services.core.scheme.record_scanner import Opener
from services.core.storage.base import (
    Capacity,
    ObjectMissing,
    StorageMisconfigured,
    StorageUnavailable,
    StoredFile,
    StreamDigest,
)
from services.core.storage.settings import StorageSettings

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

log = get_logger()

T = TypeVar("T")

# A missing object (or bucket): obstore raises the built-in FileNotFoundError (its NotFoundError
# is deprecated). Caught before anything else: FileNotFoundError is an OSError, which every
# loop would otherwise wait out as an outage.
MISSING = (FileNotFoundError, NotFoundError)

PROBE_PREFIX = ".ready-probe/"
CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
# The S3 error codes of a key pair the server refuses.
REFUSED_CREDENTIALS = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
)


def _unavailable(error: BaseError) -> StorageUnavailable:
    # The driver's message can carry the endpoint and key (an upload id, never personal data);
    # only the error's kind is kept, for logs and answers.
    return StorageUnavailable(errno.EIO, f"object storage: {type(error).__name__}")


def _call(step: Callable[[], T]) -> T:
    """Runs a blocking store call, its errors translated once, here."""
    try:
        return step()
    except MISSING:
        raise ObjectMissing from None
    except BaseError as error:
        raise _unavailable(error) from None


def credentials(settings: StorageSettings) -> dict[str, str]:
    """The access key the settings give: the AWS variables, else the shared credentials file's
    profile; none means the platform's own credentials."""
    if settings.aws_access_key_id:
        given = {
            "access_key_id": settings.aws_access_key_id,
            "secret_access_key": _secret(settings.aws_secret_access_key),
            "session_token": _secret(settings.aws_session_token),
        }
        return {name: value for name, value in given.items() if value}
    file = settings.aws_shared_credentials_file.expanduser()
    if not file.is_file():
        return {}
    parser = configparser.ConfigParser()
    parser.read(file)
    if not parser.has_section(settings.aws_profile):
        return {}
    section = parser[settings.aws_profile]
    found = {
        "access_key_id": section.get("aws_access_key_id", ""),
        "secret_access_key": section.get("aws_secret_access_key", ""),
        "session_token": section.get("aws_session_token", ""),
    }
    return {name: value for name, value in found.items() if value}


def _secret(value: SecretStr | None) -> str:
    return "" if value is None else value.get_secret_value()


def make_store(settings: StorageSettings) -> S3Store:
    config: S3Config = {"region": settings.s3_region}
    if settings.s3_endpoint:
        config["endpoint"] = settings.s3_endpoint
    config["virtual_hosted_style_request"] = not settings.s3_path_style
    config.update(credentials(settings))  # type: ignore[typeddict-item]
    client: ClientConfig = {
        "connect_timeout": timedelta(seconds=settings.s3_connect_timeout_s),
        "timeout": timedelta(seconds=settings.s3_timeout_s),
        "allow_http": settings.s3_allow_http,
    }
    if settings.s3_ca_file is not None:
        client["root_certificate"] = settings.s3_ca_file.read_bytes()
    retry: RetryConfig = {
        "max_retries": settings.s3_max_retries,
        "retry_timeout": timedelta(seconds=settings.s3_retry_timeout_s),
    }
    return S3Store(
        settings.s3_bucket,
        prefix=settings.s3_prefix.strip("/") or None,
        config=config,
        client_options=client,
        retry_config=retry,
    )


class _SizedReader(io.RawIOBase):
    """A seekable raw stream over `size` bytes: the position and its seeks; subclasses read."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position


class _RangeReader(_SizedReader):
    """A stored object as a seekable raw stream: each `readinto` is one range GET of exactly
    the bytes asked for (clamped to the object's end)."""

    def __init__(self, store: S3Store, path: str, size: int) -> None:
        super().__init__(size)
        self._store = store
        self._path = path

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), self._size - self._position)
        if length <= 0:
            return 0
        start = self._position
        data = _call(lambda: obstore.get_range(self._store, self._path, start=start, length=length))
        got = memoryview(data)
        view[: len(got)] = got
        self._position += len(got)
        return len(got)


class LocalCopy:
    """An `Opener` of the object's local copy: the first open starts one streamed GET of the
    whole object into a scratch file, in a thread of its own; every open reads that file, and a
    read past what has arrived waits for it. The copy is removed once the opener, its readers
    and the fill are all done with it (or at exit).

    Why a copy: the planner reads a file from its start three times (inspection, layout, record
    scan). From the object store each pass would be another series of GETs of the same bytes,
    which the server has to read and inflate again (SeaweedFS stores text compressed); on one
    machine that server's CPU is taken from the validators. One GET and local passes cost the
    least, and need scratch room for the largest upload (200 MB) per plan at once.

    Why reads do not wait for the whole copy: the record scan then runs while the object
    arrives, on the other core, instead of after it (on the 88 MB benchmark file the GET and the
    scan take about 0.4 s each).
    """

    def __init__(self, copy: GrowingCopy) -> None:
        self._copy = copy

    @classmethod
    def of_object(cls, store: S3Store, path: str, size: int) -> LocalCopy:
        return cls(GrowingCopy(size, lambda: _parts_of(store, path)))

    @property
    def failed(self) -> bool:
        return self._copy.failed

    def __call__(self) -> IO[bytes]:
        self._copy.start()
        return self._copy.reader()


def _parts_of(store: S3Store, path: str) -> Iterator[bytes]:
    """The object's bytes in parts of about `_COPY_BUFFER_BYTES`, errors translated."""
    parts = iter(_call(lambda: obstore.get(store, path).stream(min_chunk_size=_COPY_BUFFER_BYTES)))
    while True:
        part = _call(lambda: next(parts, None))
        if part is None:
            return
        yield bytes(part)


_COPY_BUFFER_BYTES = 1024 * 1024


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def _remove_all(names: list[str]) -> None:
    for name in names:
        _remove_quietly(name)


class GrowingCopy:
    """A scratch file filled from `parts` by one thread while any number of readers read it:
    a reader asking for bytes not there yet waits for them; one asking after a failed fill gets
    the fill's error (never a short file). Pure file and thread work: the parts come from the
    caller. The file is removed when nothing refers to the copy any more: each reader and the
    fill's thread hold it, so a reader may outlive the opener that made it."""

    def __init__(self, size: int, parts: Callable[[], Iterator[bytes]]) -> None:
        self.size = size
        self._parts = parts
        self._arrived = threading.Condition()
        self._filled = 0
        self._error: BaseException | None = None
        # The file's name once started; a list the finalizer holds (it must not hold self).
        self._names: list[str] = []
        weakref.finalize(self, _remove_all, self._names)

    def start(self) -> None:
        """Creates the scratch file and starts the fill, once."""
        with self._arrived:
            if self._names:
                return
            descriptor, name = tempfile.mkstemp(prefix="achievements-object-")
            self._names.append(name)
        threading.Thread(
            target=self._fill, args=(descriptor,), name="object-copy", daemon=True
        ).start()

    def _fill(self, descriptor: int) -> None:
        try:
            with os.fdopen(descriptor, "wb", buffering=0) as copy:
                for part in self._parts():
                    copy.write(part)
                    with self._arrived:
                        self._filled += len(part)
                        self._arrived.notify_all()
            if self._filled != self.size:
                raise StorageUnavailable(errno.EIO, "object storage: the object ended early")
        except BaseException as error:  # handed to the readers, whatever it is
            with self._arrived:
                self._error = error
                self._arrived.notify_all()

    @property
    def failed(self) -> bool:
        with self._arrived:
            return self._error is not None

    def available(self, position: int) -> int:
        """Waits until bytes past `position` have arrived (or the object ends there) and
        returns how many are there to read."""
        with self._arrived:
            while self._filled <= position < self.size and self._error is None:
                self._arrived.wait()
            if self._filled <= position < self.size and self._error is not None:
                raise self._error
            return max(0, min(self._filled, self.size) - position)

    def reader(self) -> IO[bytes]:
        if not self._names:
            raise RuntimeError("the copy is read before it is started")
        return io.BufferedReader(_CopyReader(self, self._names[0]), buffer_size=_COPY_BUFFER_BYTES)


class KeptCopies:
    """The local copies this process made lately, by key, kept for the chunk tasks it leases
    next: a chunk of an upload this process planned reads the copy, not the object store (on
    one machine, each range GET is the store's CPU taken from the validators). At most `keep`
    copies, each dropped `idle_s` after its last read (checked by a timer thread and at every
    use), when its fill failed, or when this process deletes the object. A dropped copy's file
    goes once its last reader is done."""

    def __init__(
        self, keep: int, idle_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._keep = keep
        self._idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._copies: OrderedDict[str, tuple[LocalCopy, float]] = OrderedDict()
        self._timer: threading.Timer | None = None

    def add(self, key: str, copy: LocalCopy) -> None:
        if self._keep == 0:
            return
        with self._lock:
            self._copies[key] = (copy, self._clock())
            self._copies.move_to_end(key)
            while len(self._copies) > self._keep:
                self._copies.popitem(last=False)
        self._arm()

    def get(self, key: str) -> LocalCopy | None:
        self.drop_idle()
        with self._lock:
            found = self._copies.get(key)
            if found is None:
                return None
            copy = found[0]
            if copy.failed:
                del self._copies[key]
                return None
            self._copies[key] = (copy, self._clock())
            return copy

    def drop(self, key: str) -> None:
        with self._lock:
            self._copies.pop(key, None)

    def drop_idle(self) -> None:
        with self._lock:
            now = self._clock()
            for key in [k for k, (_, used) in self._copies.items() if now - used >= self._idle_s]:
                del self._copies[key]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._copies)

    def _arm(self) -> None:
        with self._lock:
            if self._timer is not None or not self._copies:
                return
            self._timer = threading.Timer(self._idle_s, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self._timer = None
        self.drop_idle()
        self._arm()


class _CopyReader(_SizedReader):
    """One reader of a `GrowingCopy`: positioned reads of the scratch file, each waiting for
    its first byte to have arrived."""

    def __init__(self, copy: GrowingCopy, name: str) -> None:
        super().__init__(copy.size)
        self._copy = copy
        self._descriptor = os.open(name, os.O_RDONLY)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), self._copy.available(self._position))
        if length <= 0:
            return 0
        got = os.preadv(self._descriptor, [view[:length]], self._position)
        self._position += got
        return got

    def close(self) -> None:
        if not self.closed:
            os.close(self._descriptor)
        super().close()


# How long the process waits at exit for obstore's runtime threads to hand back their last
# results. Such a thread delivers a result to asyncio (a write to the loop's self-pipe, the GIL
# let go for it), then takes the GIL again to finish: if the interpreter is finalizing by then,
# CPython ends the thread with pthread_exit, which cannot unwind through Rust frames, and the
# whole process aborts (SIGABRT) after its work is done. Seen at about one exit in ten after a
# put. Waiting here, before finalization starts and with the GIL released, lets them finish.
RUNTIME_SETTLE_S = 0.1
_settle_registered = False


def _let_runtime_threads_settle() -> None:
    time.sleep(RUNTIME_SETTLE_S)


def _settle_at_exit() -> None:
    global _settle_registered
    if not _settle_registered:
        atexit.register(_let_runtime_threads_settle)
        _settle_registered = True


class S3Storage:
    def __init__(self, settings: StorageSettings, store: S3Store | None = None) -> None:
        _settle_at_exit()
        self.settings = settings
        self.store = store or make_store(settings)
        self._part_bytes = settings.s3_part_bytes
        self._concurrency = settings.s3_part_concurrency
        self.kept_copies = KeptCopies(settings.s3_kept_copies, settings.s3_copy_idle_s)

    async def start(self) -> None:
        """Lists one key of the prefix: a missing bucket or refused credentials stop the
        service (`StorageMisconfigured`); an unreachable server is only logged."""
        try:
            await obstore.list_with_delimiter_async(self.store, PROBE_PREFIX)
        except MISSING:
            raise StorageMisconfigured(
                "STORAGE_S3_BUCKET", "the bucket does not exist on the storage server"
            ) from None
        except (PermissionDeniedError, UnauthenticatedError):
            raise StorageMisconfigured(
                CREDENTIAL_VARIABLES, "the storage server refused these credentials"
            ) from None
        except BaseError as error:
            # S3 reports both in a generic error's body: told apart by their codes.
            if _says(error, "NoSuchBucket"):
                raise StorageMisconfigured(
                    "STORAGE_S3_BUCKET", "the bucket does not exist on the storage server"
                ) from None
            if _says(error, *REFUSED_CREDENTIALS):
                raise StorageMisconfigured(
                    CREDENTIAL_VARIABLES, "the storage server refused these credentials"
                ) from None
            log.warning("storage_unavailable", backend="s3", error=type(error).__name__)

    async def put(
        self, storage_key: str, chunks: AsyncIterator[bytes], limit_bytes: int
    ) -> StoredFile:
        digest = StreamDigest(limit_bytes)

        async def counted() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield digest.take(chunk)

        try:
            # Always multipart (an iterator's length is unknown): parts go out as they fill,
            # and a failure of the iterator (or of a part) aborts the upload, so nothing of it
            # is ever visible.
            await obstore.put_async(
                self.store,
                storage_key,
                counted(),
                chunk_size=self._part_bytes,
                max_concurrency=self._concurrency,
            )
        except MISSING:  # the bucket went away
            raise StorageUnavailable(errno.EIO, "object storage: the bucket is missing") from None
        except BaseError as error:
            raise _unavailable(error) from None
        return digest.stored(storage_key)

    def _size(self, storage_key: str) -> int:
        meta = _call(lambda: obstore.head(self.store, storage_key))
        return int(meta["size"])

    def opener(self, storage_key: str) -> Opener:
        kept = self.kept_copies.get(storage_key)
        if kept is not None:
            return kept
        # A missing object or an outage is known before any pass.
        copy = LocalCopy.of_object(self.store, storage_key, self._size(storage_key))
        self.kept_copies.add(storage_key, copy)
        return copy

    def range_opener(self, storage_key: str) -> Opener:
        kept = self.kept_copies.get(storage_key)
        if kept is not None:
            return kept  # the same bytes: an object is never rewritten under its key
        size = self._size(storage_key)

        def open_binary() -> IO[bytes]:
            return _RangeReader(self.store, storage_key, size)  # type: ignore[return-value]

        return open_binary

    async def exists(self, storage_key: str) -> bool:
        try:
            await obstore.head_async(self.store, storage_key)
        except MISSING:
            return False
        except BaseError as error:
            raise _unavailable(error) from None
        return True

    async def delete(self, storage_key: str) -> bool:
        self.kept_copies.drop(storage_key)
        # S3's DELETE answers the same whether the object was there: asked first, for counts.
        found = await self.exists(storage_key)
        if found:
            try:
                await obstore.delete_async(self.store, storage_key)
            except MISSING:
                return False
            except BaseError as error:
                raise _unavailable(error) from None
        return found

    async def remove_stale_parts(self, older_than: float, *, delete: bool) -> int:
        # Parts of aborted or abandoned multipart uploads are expired by the bucket's
        # lifecycle rule (AbortIncompleteMultipartUpload, docs/storage.md).
        return 0

    async def ready(self, timeout_s: float) -> bool:
        """A small object written, read back and removed: the storage takes files now."""
        key = f"{PROBE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            async with asyncio.timeout(timeout_s):
                await obstore.put_async(self.store, key, b"ok")
                await obstore.delete_async(self.store, key)
        except (BaseError, TimeoutError) as error:
            log.warning("storage_not_ready", backend="s3", error=type(error).__name__)
            return False
        return True

    async def capacity(self) -> Capacity | None:
        return None  # a bucket has no free space to watch

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, str]:
        return {
            "backend": "s3",
            "endpoint": self.settings.s3_endpoint or f"AWS S3 ({self.settings.s3_region})",
            "bucket": self.settings.s3_bucket or "",
            "prefix": self.settings.s3_prefix,
        }

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under `prefix` (for operators and tests; the pipeline never lists)."""
        for batch in _call(lambda: obstore.list(self.store, prefix or None)):
            for meta in batch:
                yield str(meta["path"])


def _says(error: BaseError, *codes: str) -> bool:
    text = str(error)
    return any(f"<Code>{code}</Code>" in text for code in codes)
