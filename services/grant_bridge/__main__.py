"""`python -m services.grant_bridge`: the consumer, the due-claims loop and the outbox relay.

SIGTERM/SIGINT set one stop event: the consumer finishes the record in hand and commits, the
forwarder leases nothing more and records the answers of the requests in flight, the relay
publishes what is committed. All of it within `DRAIN_S`, under a cluster's default 30 s grace:
a loop still running at its share of the bound is cancelled, and its leased claims come back
when their lease runs out (the grant API deduplicates on the claim's idempotency key). Exits 0.

A dependency that refuses a setting for good (a certificate that does not verify, a login or
an ACL refused: `ConfigurationError`) ends the process with one line naming the setting and
exit status 2.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from services.core.db import connection, create_pool, migrate
from services.core.events import Topics
from services.core.kafka import ensure_topics, make_producer, start_client
from services.core.logging import configure_logging, get_logger
from services.core.metrics import set_breaker_state
from services.core.misconfiguration import run_service
from services.core.outbox import measure_backlog, relay_once, run_relay
from services.core.settings import load_settings
from services.core.worker_http import (
    WorkerHttp,
    kafka_consumers_check,
    pool_refresh,
    postgres_check,
)
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import GrantClient, new_session
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_bridge.worker import AcceptedConsumer

log = get_logger()

# The drain's bound, in seconds. The workers have until `WORKERS_SHARE` of it (a request out
# when SIGTERM came ends within `client_timeout_s`), the relay and the outbox until
# `RELAY_SHARE`; the rest is for closing the HTTP session, Kafka and the pool.
DRAIN_S = 20.0
WORKERS_SHARE = 0.75
RELAY_SHARE = 0.9


async def _stop_tasks(tasks: list[asyncio.Task[None]], deadline: float) -> list[object]:
    """Waits for `tasks` until `deadline` (time.monotonic()), cancels what still runs, and
    returns each task's result or exception (a cancelled one's is None)."""
    await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    late = [task for task in tasks if not task.done()]
    for task in late:
        task.cancel()
    if late:
        log.warning("drain_cancelled", loops=[task.get_name() for task in late])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [None if isinstance(result, asyncio.CancelledError) else result for result in results]


async def run(settings: GrantBridgeSettings, stop: asyncio.Event) -> None:
    common = settings.common
    topics = Topics(common.kafka.topic_prefix)
    await ensure_topics(common.kafka, topics, attempts=None)
    pool = await create_pool(common.postgres)
    http: WorkerHttp | None = None
    try:
        if settings.migrate_on_start:
            async with connection(pool, common.postgres) as held:
                await migrate(held)
        client_id = f"grant-bridge-{socket.gethostname()}"
        producer = make_producer(common.kafka, client_id)
        await start_client(producer, common.kafka)
        session = new_session(
            token=settings.token.get_secret_value(),
            timeout_s=settings.client_timeout_s,
            max_connections=max(settings.single_concurrency, settings.max_in_flight),
        )
        try:
            forwarder = Forwarder(
                settings, pool, GrantClient(session, settings.grant_api_url), topics
            )
            if settings.http_port is not None:
                http = WorkerHttp(
                    settings.http_port,
                    checks={"postgres": postgres_check(pool), "kafka": kafka_consumers_check},
                    refreshes=[pool_refresh(pool), _scrape_refresh(pool, forwarder)],
                )
                await http.start()
            consumer = AcceptedConsumer(settings, pool, producer, topics, client_id=client_id)
            workers = [
                asyncio.create_task(consumer.run(stop), name="consumer"),
                asyncio.create_task(forwarder.run(stop), name="forwarder"),
            ]
            # The relay outlives the workers, so the events of their last round go out too.
            relay_stop = asyncio.Event()
            relay = asyncio.create_task(run_relay(pool, producer, relay_stop), name="relay")
            log.info("bridge_started", grant_api_url=settings.grant_api_url)
            stopping = asyncio.create_task(stop.wait())
            try:
                # A loop that ends before `stop` failed: a half-running bridge helps nobody.
                await asyncio.wait([*workers, relay, stopping], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.set()
                stopping.cancel()
                start = time.monotonic()
                log.info("bridge_draining", drain_s=DRAIN_S)
                results = await _stop_tasks(workers, start + DRAIN_S * WORKERS_SHARE)
                relay_stop.set()
                results += await _stop_tasks([relay], start + DRAIN_S * RELAY_SHARE)
            try:
                await asyncio.wait_for(
                    _drain_outbox(pool, producer),
                    timeout=max(0.5, start + DRAIN_S * RELAY_SHARE - time.monotonic()),
                )
            except TimeoutError:  # the rows stay in the outbox for the next start
                log.warning("outbox_drain_failed", error="TimeoutError")
            for task, result in zip([*workers, relay], results, strict=True):
                if isinstance(result, BaseException):
                    log.error("bridge_loop_failed", loop=task.get_name())
                    raise result
        finally:
            await session.close()
            await producer.stop()
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=5)
        except TimeoutError:
            pool.terminate()
        if http is not None:
            await http.stop()
        log.info("bridge_stopped")


def _scrape_refresh(pool: asyncpg.Pool, forwarder: Forwarder) -> Callable[[], Awaitable[None]]:
    """At scrape time: the breaker's state and the outbox backlog."""

    async def refresh() -> None:
        set_breaker_state(forwarder.breaker.state.value)
        async with pool.acquire(timeout=2) as held:
            await measure_backlog(held)

    return refresh


async def _drain_outbox(pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
    try:
        while await relay_once(pool, producer):
            pass
    except Exception as error:  # the rows stay in the outbox for the next start
        log.warning("outbox_drain_failed", error=type(error).__name__)


async def main() -> None:
    settings = load_settings(GrantBridgeSettings, "bridge")
    configure_logging("bridge", settings.common.log_level, settings.common.log_output)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run(settings, stop)


if __name__ == "__main__":
    run_service(main(), "bridge")
