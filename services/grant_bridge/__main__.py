"""`python -m services.grant_bridge`: the consumer, the due-claims loop and the outbox relay.

SIGTERM/SIGINT set one stop event: the consumer finishes the record in hand and commits, the
forwarder records the answers of the round in flight, the relay publishes what is committed.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import asyncpg
from aiokafka import AIOKafkaProducer

from services.core.db import connection, create_pool, migrate
from services.core.events import Topics
from services.core.kafka import ensure_topics, make_producer
from services.core.logging import configure_logging, get_logger
from services.core.outbox import relay_once, run_relay
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import GrantClient, new_session
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_bridge.worker import AcceptedConsumer

log = get_logger()


async def run(settings: GrantBridgeSettings, stop: asyncio.Event) -> None:
    common = settings.common
    topics = Topics(common.kafka.topic_prefix)
    await ensure_topics(common.kafka, topics)
    pool = await create_pool(common.postgres)
    try:
        async with connection(pool, common.postgres) as held:
            await migrate(held)
        client_id = f"grant-bridge-{socket.gethostname()}"
        producer = make_producer(common.kafka, client_id)
        await producer.start()
        session = new_session(
            token=settings.token.get_secret_value(),
            timeout_s=settings.client_timeout_s,
            max_connections=settings.single_concurrency,
        )
        try:
            forwarder = Forwarder(
                settings, pool, GrantClient(session, settings.grant_api_url), topics
            )
            consumer = AcceptedConsumer(settings, pool, producer, topics, client_id=client_id)
            workers = [
                asyncio.create_task(consumer.run(stop), name="consumer"),
                asyncio.create_task(forwarder.run(stop), name="forwarder"),
            ]
            # The relay outlives the workers, so the events of their last round go out too.
            relay_stop = asyncio.Event()
            relay = asyncio.create_task(run_relay(pool, producer, relay_stop), name="relay")
            log.info("bridge_started", grant_api_url=settings.grant_api_url)
            try:
                # A loop that ends before `stop` failed: a half-running bridge helps nobody.
                await asyncio.wait([*workers, relay], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.set()
                results = await asyncio.gather(*workers, return_exceptions=True)
                relay_stop.set()
                results.append((await asyncio.gather(relay, return_exceptions=True))[0])
            await _drain_outbox(pool, producer)
            for task, result in zip([*workers, relay], results, strict=True):
                if isinstance(result, BaseException):
                    log.error("bridge_loop_failed", loop=task.get_name())
                    raise result
        finally:
            await session.close()
            await producer.stop()
    finally:
        await pool.close()
        log.info("bridge_stopped")


async def _drain_outbox(pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
    try:
        while await relay_once(pool, producer):
            pass
    except Exception as error:  # the rows stay in the outbox for the next start
        log.warning("outbox_drain_failed", error=type(error).__name__)


async def main() -> None:
    settings = GrantBridgeSettings()
    configure_logging("bridge", settings.common.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(settings, stop)


if __name__ == "__main__":
    asyncio.run(main())
