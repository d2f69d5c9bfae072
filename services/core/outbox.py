"""Transactional outbox: events written with the change they report, relayed to Kafka after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import asyncpg
from aiokafka import AIOKafkaProducer

from services.core.events import Event, Topics, topic_for
from services.core.kafka import json_bytes
from services.core.logging import get_logger

log = get_logger()


async def enqueue(connection: asyncpg.Connection, topics: Topics, *events: Event) -> None:
    """Call inside the transaction that makes the change the events report."""
    await enqueue_many(connection, topics, events)


async def enqueue_many(
    connection: asyncpg.Connection, topics: Topics, events: Iterable[Event]
) -> None:
    rows = []
    for event in events:
        topic, key = topic_for(event, topics)
        rows.append((topic, key, event.model_dump(mode="json")))
    if rows:
        await connection.executemany(
            "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)", rows
        )


async def relay_once(pool: asyncpg.Pool, producer: AIOKafkaProducer, batch_size: int = 500) -> int:
    """Publishes one batch of unsent rows; returns how many. Rows stay locked until sent."""
    async with pool.acquire(timeout=30) as connection, connection.transaction():
        rows = await connection.fetch(
            "SELECT id, topic, key, payload FROM outbox WHERE sent_at IS NULL"
            " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            batch_size,
        )
        if not rows:
            return 0
        futures = [
            await producer.send(
                row["topic"],
                value=json_bytes(row["payload"]),
                key=row["key"].encode(),
                headers=[("event_type", str(row["payload"].get("event_type", "")).encode())],
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        await connection.execute(
            "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])",
            [row["id"] for row in rows],
        )
        return len(rows)


async def run_relay(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    stop: asyncio.Event,
    idle_sleep_s: float = 0.2,
) -> None:
    """Relays until `stop` is set. A send that fails leaves the rows unsent for the next round."""
    while not stop.is_set():
        try:
            sent = await relay_once(pool, producer)
        except Exception as error:
            log.warning("outbox_relay_failed", error=type(error).__name__)
            sent = 0
            await asyncio.sleep(1)
        if sent == 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=idle_sleep_s)
