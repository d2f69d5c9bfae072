"""`python -m services.validator`: one validator worker process of the consumer group.

SIGTERM/SIGINT drain it within `drain_s` (`VALIDATOR_DRAIN_S`, under a cluster's default 30 s
grace): the planner finishes the record in hand and commits, each chunk worker finishes a quick
chunk or hands it back (its lease released, so another process takes it at once), the relay
publishes what is committed and hands its slots back, then Kafka and PostgreSQL are closed. Work
still running at the bound is cancelled; it is resumable (an uncommitted record comes again, a
chunk's lease runs out). Exits 0.

A dependency that refuses a setting for good (a certificate that does not verify, a login or
an ACL refused: `ConfigurationError`) ends the process with one line naming the setting and
exit status 2.
"""

from __future__ import annotations

import os

# One chunk worker per process and a process per core: Polars' own thread pool (one thread per
# core by default) would have the processes fight each other for the same cores. Set before
# Polars is imported.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import asyncio
import contextlib
import ctypes
import signal
import time
from collections.abc import Awaitable, Callable

import asyncpg

from services.core.consumer import ConsumerLoop
from services.core.db import create_pool
from services.core.events import Topics
from services.core.kafka import ensure_topics, make_consumer, make_producer, start_client
from services.core.logging import configure_logging, get_logger
from services.core.metrics import CHUNK_TASKS, OLDEST_UNDECIDED_AGE, UPLOADS_UNDECIDED
from services.core.misconfiguration import run_service
from services.core.outbox import measure_backlog, run_relay
from services.core.reference_store import ReferenceCache
from services.core.settings import load_settings
from services.core.storage import start_storage
from services.core.wakeups import CHUNKS_QUEUED, Wakeups
from services.core.worker_http import (
    WorkerHttp,
    kafka_consumers_check,
    pool_refresh,
    postgres_check,
)
from services.validator.chunk_worker import ChunkWorker
from services.validator.settings import ValidatorSettings
from services.validator.upload_outcome import UNDECIDED
from services.validator.worker import DEAD_LETTER_STAGE, UploadPlanner

# Each chunk is validated in a thread of its own, and glibc gives threads malloc arenas of their
# own (up to eight per core) whose freed memory no other arena reuses: a validator's memory
# crept up chunk after chunk. Two arenas bound it (what MALLOC_ARENA_MAX=2 does, without
# depending on the environment the process is started with; it holds for arenas made later,
# and the chunk threads come later).
_M_ARENA_MAX = -8
with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 2)

# Shares of `drain_s` by which the workers, then the relay, must have stopped; the rest of the
# bound is for closing the Kafka clients and the pool.
WORKERS_SHARE = 0.6
RELAY_SHARE = 0.75


async def _within(deadline: float, step: Awaitable[object]) -> bool:
    """Awaits `step` until `deadline` (time.monotonic()); False when it failed or overran (it
    is logged and left: the drain goes on)."""
    try:
        await asyncio.wait_for(step, timeout=max(0.5, deadline - time.monotonic()))
    except Exception as error:
        get_logger().warning("drain_step_failed", error=type(error).__name__)
        return False
    return True


async def _stop_tasks(tasks: list[asyncio.Task[None]], deadline: float) -> None:
    """Waits for `tasks` until `deadline`, then cancels what still runs."""
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    late = [task for task in tasks if not task.done()]
    for task in late:
        task.cancel()
    if late:
        get_logger().warning("drain_cancelled", tasks=[task.get_name() for task in late])
    await asyncio.gather(*tasks, return_exceptions=True)


def _backlog_refresh(pool: asyncpg.Pool) -> Callable[[], Awaitable[None]]:
    """At scrape time: the outbox backlog, the chunk tasks still to do (the queue the
    validators are scaled on) and the uploads not yet decided."""

    async def refresh() -> None:
        async with pool.acquire(timeout=2) as connection:
            await measure_backlog(connection)
            row = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE lease_until IS NULL OR lease_until < now())"
                " AS queued, count(*) FILTER (WHERE lease_until >= now()) AS leased"
                " FROM validation_chunks WHERE state = 'pending'"
            )
            undecided = await connection.fetchrow(
                "SELECT count(*) AS uploads,"
                " coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8 AS oldest_s"
                " FROM uploads WHERE status = ANY($1::text[])",
                UNDECIDED,
            )
        if row is not None:
            CHUNK_TASKS.labels("queued").set(row["queued"])
            CHUNK_TASKS.labels("leased").set(row["leased"])
        if undecided is not None:
            UPLOADS_UNDECIDED.set(undecided["uploads"])
            OLDEST_UNDECIDED_AGE.set(undecided["oldest_s"])

    return refresh


async def main(settings: ValidatorSettings) -> None:
    log = get_logger()
    common = settings.common
    topics = Topics(common.kafka.topic_prefix)
    # Wrong storage credentials or a missing bucket end the process here, with one line.
    # One storage for the planner and the chunk workers: they share its local copies (S3).
    storage = await start_storage(common.storage, "validator")
    await ensure_topics(common.kafka, topics, attempts=None)
    pool = await create_pool(common.postgres)
    http = None
    if settings.http_port is not None:
        http = WorkerHttp(
            settings.http_port,
            checks={"postgres": postgres_check(pool), "kafka": kafka_consumers_check},
            refreshes=[pool_refresh(pool), _backlog_refresh(pool)],
        )
        await http.start()
    producer = make_producer(common.kafka, settings.worker_name)
    planner = UploadPlanner(settings, pool, storage)
    consumer_loop = ConsumerLoop(
        planner.handle,
        producer=producer,
        topics=topics,
        stage=DEAD_LETTER_STAGE,
        poll_timeout_ms=500,
        retry_delay_s=settings.retry_delay_s,
    )
    consumer = make_consumer(
        common.kafka,
        topics.uploads,
        group_id=settings.group_id,
        client_id=settings.worker_name,
        max_poll_records=1,
        # Planning a 200 MB file takes seconds; rows are validated as chunk tasks, not here.
        max_poll_interval_ms=5 * 60 * 1000,
        listener=consumer_loop.listener,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await start_client(producer, common.kafka)
    await start_client(consumer, common.kafka)
    log.info("validator_started", worker=settings.worker_name)
    workers = [asyncio.create_task(consumer_loop.run(consumer, stop), name="planner")]
    reference = ReferenceCache(pool)
    # One listening connection wakes every chunk worker of the process.
    wakeups = Wakeups(pool, CHUNKS_QUEUED)
    workers += [
        asyncio.create_task(
            ChunkWorker(settings, pool, topics, reference, wakeups=wakeups, storage=storage).run(
                stop
            ),
            name=f"chunk-worker-{n}",
        )
        for n in range(settings.chunk_workers)
    ]
    workers += [
        asyncio.create_task(
            ChunkWorker(
                settings, pool, topics, reference, wakeups=wakeups, express=True, storage=storage
            ).run(stop),
            name=f"express-chunk-worker-{n}",
        )
        for n in range(settings.express_workers)
    ]
    # The relay outlives the workers, so the events of their last chunks go out too.
    relay_stop = asyncio.Event()
    relays = []
    if settings.run_outbox_relay:
        relays.append(asyncio.create_task(run_relay(pool, producer, relay_stop), name="relay"))
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            [*workers, *relays, stopping], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        start = time.monotonic()
        log.info("validator_draining", worker=settings.worker_name, drain_s=settings.drain_s)
        await _stop_tasks(workers, start + settings.drain_s * WORKERS_SHARE)
        await _within(start + settings.drain_s * WORKERS_SHARE, wakeups.close())
        relay_stop.set()
        # `run_relay` hands its slots back (`Relay.close`) as it ends.
        await _stop_tasks(relays, start + settings.drain_s * RELAY_SHARE)
        end = start + settings.drain_s
        await _within(end, consumer.stop())
        await _within(end, producer.stop())
        if not await _within(end, pool.close()):
            pool.terminate()
        if http is not None:
            await _within(end, http.stop())
        log.info(
            "validator_stopped",
            worker=settings.worker_name,
            drain_took_s=round(time.monotonic() - start, 2),
        )


if __name__ == "__main__":
    settings = load_settings(ValidatorSettings, "validator")
    configure_logging("validator", settings.common.log_level, settings.common.log_output)
    run_service(main(settings), "validator")
