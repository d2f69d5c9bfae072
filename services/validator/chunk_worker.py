"""The chunk loop of a validator process: lease a chunk, validate it off the event loop, write
its results once, and decide the upload when its last chunk is done.

Any process can take any chunk, so one huge upload is validated by every worker at once and a
small upload of another ATO is taken next whatever is queued (round robin in the lease). A
worker that dies leaves a lease that runs out; a worker that stalls past its lease finds its
chunk done by another and writes nothing.

Draining (SIGTERM sets `stop`): the chunk in hand is handed back at once, whether its
validation is still running (its thread is left to finish, its result never written) or just
ended: writing a chunk (a COPY of up to 20,000 rows) may outlast what is left of the drain, and
a write cut short would leave the chunk leased until its lease ran out. Its lease is released,
so another process takes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import structlog

from services.core.db import TRANSIENT_ERRORS
from services.core.events import Topics
from services.core.logging import get_logger
from services.core.metrics import CHUNK_DURATION, PIPELINE_STEP
from services.core.reference_store import ReferenceCache
from services.core.scheme.bulk_rules import BulkValidator
from services.core.scheme.codes import FileError
from services.core.scheme.columns import HeaderMap
from services.core.scheme.record_scanner import read_chunk_bytes
from services.core.scheme.records import detect_layout
from services.core.scheme.reference import InMemoryReference
from services.core.storage import Storage, StorageUnavailable, open_storage
from services.core.wakeups import CHUNKS_QUEUED, Wakeups
from services.validator import chunk_queue, duplicates, upload_outcome, workbook_sheet
from services.validator.chunk_queue import LeasedChunk
from services.validator.chunk_validation import ChunkResult, validate_chunk
from services.validator.planner import StoredFileMissing
from services.validator.settings import ValidatorSettings

log = get_logger()

# Failures of what the worker depends on (the database; the storage, an OSError), rather than
# of the chunk: waited out, never counted against the chunk.
INFRASTRUCTURE_ERRORS = TRANSIENT_ERRORS
# Uploads whose chunk readers a worker keeps. The round robin interleaves the chunks of every
# ATO with work, so more would hit more often, but each holds its date cache (up to 131,072
# texts) and plans: two keep a big upload's readers while small ones come and go, and a miss
# only costs building them again (tens of milliseconds).
KEPT_READERS = 2
# Uploads of its ATO a worker decides in a row after its own decision: those whose workers
# deferred theirs while it held the ATO's outcome lock. Bounded, so that a burst of one ATO's
# uploads does not keep the worker out of the chunk queue for long; the sweep takes the rest.
FOLLOW_ON_DECISIONS = 16

T = TypeVar("T")


def _in_daemon_thread(function: Callable[[], T]) -> asyncio.Future[T]:
    """Runs `function` in a daemon thread: unlike `asyncio.to_thread`, a draining process can
    stop waiting for it and exit (the default executor's threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result: T | None = context.run(function)
            error: BaseException | None = None
        except BaseException as raised:
            result, error = None, raised
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="chunk-validation", daemon=True).start()
    return future


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # an abandoned chunk's failure is nobody's concern


@dataclass
class ChunkReaders:
    """What reading and judging an upload's chunks needs, kept for its next chunk: building it
    reads the header and compiles the Polars plans, and the bulk validator's caches (the dates
    seen) pay off across an upload's chunks."""

    key: tuple[uuid.UUID, int]
    header: HeaderMap
    validator: BulkValidator


class SweepSchedule:
    """When a busy worker next looks for uploads left undecided: every `interval_s` on `clock`,
    counted from the last look, whether that look was due or made because the worker was idle."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        """True (and the look counted as made now) once `interval_s` has passed since the last."""
        if self._clock() - self._last < self._interval_s:
            return False
        self.swept()
        return True

    def swept(self) -> None:
        self._last = self._clock()


def validate_leased_chunk(
    storage: Storage,
    chunk: LeasedChunk,
    reference: InMemoryReference,
    issue_room: int,
    readers: ChunkReaders | None = None,
) -> tuple[ChunkResult, ChunkReaders]:
    """Blocking: reads the chunk's records from the stored file and validates them; `readers`
    are reused when they were built for the same upload and reference version. Only the
    chunk's segments are read (each a byte range that ends with a record), and the header
    when the readers are built."""
    # The guided workbook's chunks are in the CSV object written for its sheet.
    storage_key, encoding = workbook_sheet.csv_source(chunk.storage_key, chunk.encoding)
    opener = storage.range_opener(storage_key)
    key = (chunk.upload_id, chunk.reference_version)
    if readers is None or readers.key != key:
        layout = detect_layout(opener, encoding)
        if isinstance(layout, FileError) or isinstance(layout.header, FileError):
            raise RuntimeError("a planned upload's header no longer reads as it did")
        validator = BulkValidator(layout.header, chunk.upload_date, reference)
        readers = ChunkReaders(key, layout.header, validator)
    segments = read_chunk_bytes(opener, encoding, chunk.segments)
    result = validate_chunk(
        segments,
        chunk.delimiter,
        readers.validator,
        readers.header,
        upload_id=chunk.upload_id,
        ato_id=chunk.ato_id,
        issue_room=issue_room,
    )
    return result, readers


class ChunkWorker:
    def __init__(
        self,
        settings: ValidatorSettings,
        pool: asyncpg.Pool,
        topics: Topics,
        reference: ReferenceCache | None = None,
        *,
        wakeups: Wakeups | None = None,
        express: bool = False,
        clock: Callable[[], float] = time.monotonic,
        storage: Storage | None = None,
    ) -> None:
        """`wakeups` (listening on `CHUNKS_QUEUED`) may be shared by the workers of a process;
        each makes its own otherwise. An `express` worker takes only the chunks of uploads of
        at most `express_max_bytes`: a small upload then never waits for a big one's chunk.
        `clock` times the sweep for uploads left undecided (`decide_sweep_s`). `storage` is the
        process's, shared with its planner (see `UploadPlanner`)."""
        self.settings = settings
        self.pool = pool
        self.topics = topics
        self.storage = storage or open_storage(settings.common.storage)
        self.reference = reference or ReferenceCache(pool)
        self._acquire_s = settings.common.postgres.db_acquire_timeout_s
        self._stop: asyncio.Event | None = None
        self._readers: dict[tuple[uuid.UUID, int], ChunkReaders] = {}
        self._wakeups = wakeups
        self._max_upload_bytes = settings.express_max_bytes if express else None
        self._sweep = SweepSchedule(settings.decide_sweep_s, clock)

    async def run(self, stop: asyncio.Event) -> None:
        """Works until `stop`. When there is nothing to do it sleeps until chunks are queued
        (a notification), or `idle_poll_s` at most (the safety net: a lease that ran out, a
        worker that died before deciding); after a failure it waits `retry_delay_s` (an
        outage is waited out here, never a reason to exit). Once `stop` is set, the chunk in
        hand is finished if it is quick, else handed back."""
        self._stop = stop
        wakeups = self._wakeups or Wakeups(self.pool, CHUNKS_QUEUED)
        try:
            while not stop.is_set():
                mark = wakeups.mark(CHUNKS_QUEUED)
                try:
                    if await self.work_once():
                        continue
                except INFRASTRUCTURE_ERRORS as error:
                    log.warning("chunk_work_waiting", error=type(error).__name__)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.settings.retry_delay_s)
                    continue
                await wakeups.wait(CHUNKS_QUEUED, mark, self.settings.idle_poll_s, stop)
        finally:
            if self._wakeups is None:
                await wakeups.close()

    async def run_until_idle(self) -> int:
        """Works until no chunk and no decision is left; returns how many steps it took."""
        steps = 0
        while await self.work_once():
            steps += 1
        return steps

    async def work_once(self) -> bool:
        """One chunk, or one upload whose chunks are all done decided; False when idle. While
        chunks keep coming, the sweep for undecided uploads still runs every `decide_sweep_s`:
        a deferred decision the lock's holder missed is not left until the queue is empty."""
        async with self.pool.acquire(timeout=self._acquire_s) as connection:
            chunk = await chunk_queue.lease_next(
                connection, self.settings.chunk_lease_s, self._max_upload_bytes
            )
        if chunk is not None:
            await self.process(chunk)
            if not self._stopping and self._sweep.due():
                await self.decide_waiting_upload()
            return True
        self._sweep.swept()
        return await self.decide_waiting_upload()

    @property
    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def process(self, chunk: LeasedChunk) -> None:
        structlog.contextvars.bind_contextvars(upload_id=str(chunk.upload_id))
        try:
            with CHUNK_DURATION.time():
                await self._process(chunk)
        finally:
            structlog.contextvars.unbind_contextvars("upload_id")

    async def _process(self, chunk: LeasedChunk) -> None:
        started = time.perf_counter()
        if chunk.attempts > self.settings.chunk_max_attempts:
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                await upload_outcome.error_out(
                    connection, self.topics, chunk.upload_id, reason="chunk_kept_failing"
                )
            return
        try:
            result = await self._validate(chunk)
        except StoredFileMissing:
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                await upload_outcome.error_out(
                    connection, self.topics, chunk.upload_id, reason="stored_file_missing"
                )
            return
        except StorageUnavailable:
            # The storage, not the chunk: handed back for later with this lease's attempt
            # taken back, so an outage never brings the upload nearer to `errored`. Raised on
            # for the run loop to wait before the next chunk.
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                await chunk_queue.hand_back_uncounted(
                    connection, chunk, self.settings.retry_delay_s
                )
            raise
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as error:
            # Not an outage: a bug or a record no rule expected. Handed back for another try;
            # `chunk_max_attempts` such failures end the upload as `errored`.
            log.error("chunk_failed", chunk_no=chunk.chunk_no, error=type(error).__name__)
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                await chunk_queue.release_lease(connection, chunk)
            return
        if result is None:
            # Draining: handed back at once, and nothing of this lease is ever written (the
            # abandoned thread's result goes nowhere; `complete` is not called).
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                await chunk_queue.release_lease(connection, chunk)
            log.info("chunk_handed_back", chunk_no=chunk.chunk_no)
            return
        async with self.pool.acquire(timeout=self._acquire_s) as connection:
            found = await duplicates.chunk_earlier_upload_duplicates(
                connection,
                chunk.ato_id,
                chunk.upload_id,
                result.all_keys(),
                self.settings.retention,
            )
            result.mark_earlier_upload_duplicates(found)
            event_parts = result.event_parts(self.settings.accepted_event_chunk)
            async with connection.transaction():
                completed = await chunk_queue.complete(
                    connection, chunk, result, self.settings.progress_interval_s, event_parts
                )
                if completed is not None and completed.progress_due and not completed.last:
                    await upload_outcome.announce_progress(
                        connection, self.topics, chunk.upload_id, completed.rows_processed
                    )
        if completed is None:
            log.info("chunk_already_done", chunk_no=chunk.chunk_no)
            return
        # Validated and written; the decision that may follow is a step of its own.
        PIPELINE_STEP.labels("chunk").observe(time.perf_counter() - started)
        if completed.last:
            await self.decide(chunk.upload_id)

    async def _validate(self, chunk: LeasedChunk) -> ChunkResult | None:
        """The chunk's result, or None when draining (the chunk is to be handed back)."""
        stop = self._stop
        if stop is not None and stop.is_set():
            return None
        reference = await self.reference.at(chunk.reference_version)
        issue_room = self.settings.max_stored_issues
        # CPU-bound: a worker thread, so the event loop keeps heartbeats and health answered.
        readers = self._readers.get((chunk.upload_id, chunk.reference_version))
        validation = _in_daemon_thread(
            lambda: validate_leased_chunk(self.storage, chunk, reference, issue_room, readers)
        )
        if stop is None:
            return self._keep_readers(await validation)
        stopping = asyncio.ensure_future(stop.wait())
        waited: set[asyncio.Future[Any]] = {validation, stopping}
        try:
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if stop.is_set():
            validation.add_done_callback(_retrieve)
            return None
        return self._keep_readers(validation.result())

    def _keep_readers(self, validated: tuple[ChunkResult, ChunkReaders]) -> ChunkResult:
        """Keeps the readers of the last `KEPT_READERS` uploads (chunks of several interleave)."""
        result, readers = validated
        self._readers.pop(readers.key, None)
        self._readers[readers.key] = readers
        while len(self._readers) > KEPT_READERS:
            del self._readers[next(iter(self._readers))]
        return result

    async def decide(self, upload_id: object) -> bool:
        """Decides the upload (False when it was not to be decided now, or was deferred); once
        it is, the uploads of its ATO whose decisions were deferred meanwhile, up to
        `FOLLOW_ON_DECISIONS` of them."""
        if not await self._decide_one(upload_id):
            return False
        for _ in range(FOLLOW_ON_DECISIONS):
            if self._stopping:  # a decision may outlast the drain: another process's sweep
                break
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                following = await upload_outcome.decidable(
                    connection,
                    same_ato_as=upload_id,  # type: ignore[arg-type]
                )
            # None, or another worker took the ATO's lock first: it looks for the next itself.
            if following is None or not await self._decide_one(following):
                break
        return True

    async def _decide_one(self, upload_id: object) -> bool:
        structlog.contextvars.bind_contextvars(upload_id=str(upload_id))
        try:
            async with self.pool.acquire(timeout=self._acquire_s) as connection:
                with PIPELINE_STEP.labels("decision").time():
                    return await upload_outcome.decide(
                        connection,
                        self.topics,
                        upload_id,  # type: ignore[arg-type]
                        max_rows=self.settings.limits.max_rows,
                        max_stored_issues=self.settings.max_stored_issues,
                        amendment_window_s=self.settings.amendment_window_s,
                        accepted_event_chunk=self.settings.accepted_event_chunk,
                    )
        finally:
            structlog.contextvars.unbind_contextvars("upload_id")

    async def decide_waiting_upload(self) -> bool:
        """An upload left undecided is decided here: its last chunk's worker died before
        deciding it, or deferred its decision and the lock's holder looked before that worker
        let go of the upload (or, when a worker died just after an outcome, the decided
        upload's tasks are forgotten). Only an upload that can be decided now is taken, so an
        ATO with many uploads being decided one by one does not hold up another's."""
        async with self.pool.acquire(timeout=self._acquire_s) as connection:
            upload_id = await upload_outcome.decidable(connection)
            if upload_id is None:
                return await chunk_queue.forget_one_decided(connection, upload_outcome.UNDECIDED)
        return await self.decide(upload_id)
