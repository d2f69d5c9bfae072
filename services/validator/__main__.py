"""`python -m services.validator`: one validator worker process of the consumer group."""

from __future__ import annotations

import asyncio
import signal

from services.core.db import create_pool
from services.core.events import Topics
from services.core.kafka import ensure_topics, make_consumer, make_producer
from services.core.logging import configure_logging, get_logger
from services.core.outbox import run_relay
from services.validator.settings import ValidatorSettings
from services.validator.worker import ValidatorWorker


async def main(settings: ValidatorSettings) -> None:
    log = get_logger()
    common = settings.common
    topics = Topics(common.kafka.topic_prefix)
    await ensure_topics(common.kafka, topics)
    pool = await create_pool(common.postgres)
    producer = make_producer(common.kafka, settings.worker_name)
    consumer = make_consumer(
        common.kafka,
        topics.uploads,
        group_id=settings.group_id,
        client_id=settings.worker_name,
        max_poll_records=1,
        # A 1,000,000-row upload is validated between two polls.
        max_poll_interval_ms=30 * 60 * 1000,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await producer.start()
    await consumer.start()
    log.info("validator_started", worker=settings.worker_name)
    tasks = [asyncio.create_task(ValidatorWorker(settings, pool, consumer, producer).run(stop))]
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
