"""The outbox relay publishes what a transaction wrote, once, keyed by upload."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.core.events import Topics, UploadProgress, parse_event
from services.core.kafka import make_consumer, make_producer
from services.core.outbox import enqueue, relay_once
from services.core.settings import KafkaSettings


async def test_relay_publishes_committed_events_and_marks_them_sent(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    upload_id = uuid.uuid4()
    events = [UploadProgress(upload_id=upload_id, rows_processed=n) for n in (10, 20)]
    async with pool.acquire() as connection, connection.transaction():
        await enqueue(connection, topics, *events)
    async with pool.acquire() as connection:
        rolled_back = connection.transaction()
        await rolled_back.start()
        await enqueue(connection, topics, UploadProgress(upload_id=upload_id, rows_processed=99))
        await rolled_back.rollback()

    producer = make_producer(kafka_settings, "test")
    await producer.start()
    try:
        assert await relay_once(pool, producer) == 2
        assert await relay_once(pool, producer) == 0
    finally:
        await producer.stop()

    consumer = make_consumer(kafka_settings, topics.upload_status, group_id="t", client_id="t")
    await consumer.start()
    try:
        received = []
        async with asyncio.timeout(20):
            while len(received) < 2:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.extend(records)
    finally:
        await consumer.stop()
    assert [parse_event(r.value).event_id for r in received] == [e.event_id for e in events]
    assert {r.key for r in received} == {str(upload_id).encode()}
