"""`python -m services.validator`: one validator worker process of the consumer group."""

from __future__ import annotations

import os

# One chunk worker per process and a process per core: Polars' own thread pool (one thread per
# core by default) would have the processes fight each other for the same cores. Set before
# Polars is imported.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import asyncio
import signal

from services.core.consumer import ConsumerLoop
from services.core.db import create_pool
from services.core.events import Topics
from services.core.kafka import ensure_topics, make_consumer, make_producer
from services.core.logging import configure_logging, get_logger
from services.core.outbox import run_relay
from services.core.reference_store import ReferenceCache
from services.validator.chunk_worker import ChunkWorker
from services.validator.settings import ValidatorSettings
from services.validator.worker import DEAD_LETTER_STAGE, UploadPlanner


async def main(settings: ValidatorSettings) -> None:
    log = get_logger()
    common = settings.common
    topics = Topics(common.kafka.topic_prefix)
    await ensure_topics(common.kafka, topics)
    pool = await create_pool(common.postgres)
    producer = make_producer(common.kafka, settings.worker_name)
    planner = UploadPlanner(settings, pool)
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
    await producer.start()
    await consumer.start()
    log.info("validator_started", worker=settings.worker_name)
    tasks = [asyncio.create_task(consumer_loop.run(consumer, stop))]
    reference = ReferenceCache(pool)
    tasks += [
        asyncio.create_task(ChunkWorker(settings, pool, topics, reference).run(stop))
        for _ in range(settings.chunk_workers)
    ]
    if settings.run_outbox_relay:
        tasks.append(asyncio.create_task(run_relay(pool, producer, stop)))
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        await pool.close()
        log.info("validator_stopped", worker=settings.worker_name)


if __name__ == "__main__":
    settings = ValidatorSettings()
    configure_logging("validator", settings.common.log_level)
    asyncio.run(main(settings))
