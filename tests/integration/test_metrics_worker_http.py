"""A worker's small HTTP server against the real PostgreSQL and Kafka: `/readyz` waits for the
consumer to join its group, `/metrics` shows the consumer's lag and records, the outbox and the
pool, and `/healthz` answers throughout."""

from __future__ import annotations

import asyncio
import socket
import uuid

import aiohttp
import asyncpg
from aiokafka import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from services.core.consumer import DONE, ConsumerLoop, Handled
from services.core.events import Topics
from services.core.kafka import make_consumer, make_producer
from services.core.outbox import measure_backlog
from services.core.settings import KafkaSettings
from services.core.worker_http import (
    WorkerHttp,
    kafka_consumers_check,
    pool_refresh,
    postgres_check,
)

STAGE = "metrics.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def figure(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def test_readiness_follows_the_group_and_metrics_show_lag_and_records(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    port = free_port()

    async def refresh_outbox() -> None:
        async with pool.acquire() as connection:
            await measure_backlog(connection)

    http = WorkerHttp(
        port,
        checks={"postgres": postgres_check(pool), "kafka": kafka_consumers_check},
        refreshes=[pool_refresh(pool), refresh_outbox],
        host="127.0.0.1",
    )
    await http.start()
    producer = make_producer(kafka_settings, "metrics-test")
    await producer.start()
    handled: list[int] = []
    release = asyncio.Event()

    async def handler(record: ConsumerRecord) -> Handled:
        handled.append(record.offset)
        await release.wait()  # holds the first record: the rest of the topic is lag
        return DONE

    loop = ConsumerLoop(handler, producer=producer, topics=topics, stage=STAGE)
    consumer = make_consumer(
        kafka_settings,
        topics.uploads,
        group_id=f"metrics-{uuid.uuid4().hex[:6]}",
        client_id="metrics-test",
        listener=loop.listener,
    )
    stop = asyncio.Event()
    try:
        status, body = await get(port, "/readyz")
        assert status == 503  # no consumer loop runs yet
        assert '"postgres": true' in body
        assert (await get(port, "/healthz"))[0] == 200

        for _ in range(5):
            await producer.send_and_wait(
                topics.uploads, value=b"{}", key=b"same-upload", partition=0
            )
        await consumer.start()
        running = asyncio.create_task(loop.run(consumer, stop))
        async with asyncio.timeout(60):
            while (await get(port, "/readyz"))[0] != 200:
                await asyncio.sleep(0.1)
            while True:
                _, text = await get(port, "/metrics")
                lag = figure(text, "kafka_consumer_lag_messages", stage=STAGE, partition="0")
                if handled and lag == 5:  # five records, the first in hand, none done
                    break
                await asyncio.sleep(0.2)
        assert figure(text, "kafka_consumer_assigned_partitions", stage=STAGE) == 4
        assert figure(text, "db_pool_connections", state="max") >= 1
        assert "outbox_backlog_events 0.0" in text
        assert "process_cpu_seconds_total" in text

        release.set()
        async with asyncio.timeout(60):
            while figure(text, "kafka_consumer_records_total", stage=STAGE, outcome="done") < 5:
                await asyncio.sleep(0.2)
                _, text = await get(port, "/metrics")
            while figure(text, "kafka_consumer_lag_messages", stage=STAGE, partition="0") != 0:
                await asyncio.sleep(0.2)
                _, text = await get(port, "/metrics")
        stop.set()
        await running
        assert (await get(port, "/readyz"))[0] == 503  # the loop ended
    finally:
        stop.set()
        await consumer.stop()
        await producer.stop()
        await http.stop()
