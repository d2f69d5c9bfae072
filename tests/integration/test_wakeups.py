"""Loops are woken by the commits that give them work: PostgreSQL delivers an announcement at
the writer's commit and never after a rollback; the relay publishes a committed event while
its poll is an hour away."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from services.core.events import Topics, UploadProgress, parse_event
from services.core.kafka import make_consumer, make_producer
from services.core.outbox import enqueue, run_relay
from services.core.settings import KafkaSettings
from services.core.wakeups import CHUNKS_QUEUED, OUTBOX_WRITTEN, Wakeups, announce

# Bounds a wait that a notification ends (it ends within milliseconds of the commit).
WOKEN_WITHIN_S = 20.0


async def test_an_announcement_is_heard_at_commit_and_not_after_a_rollback(
    pool: asyncpg.Pool,
) -> None:
    wakeups = Wakeups(pool, OUTBOX_WRITTEN, CHUNKS_QUEUED)
    try:
        assert await wakeups.wait(CHUNKS_QUEUED, wakeups.mark(CHUNKS_QUEUED), 0) is True
        chunks_mark = wakeups.mark(CHUNKS_QUEUED)
        outbox_mark = wakeups.mark(OUTBOX_WRITTEN)
        async with pool.acquire() as connection:
            rolled_back = connection.transaction()
            await rolled_back.start()
            await announce(connection, CHUNKS_QUEUED)
            await rolled_back.rollback()
            async with connection.transaction():
                await announce(connection, OUTBOX_WRITTEN)
                # Not before the commit.
                assert await wakeups.wait(OUTBOX_WRITTEN, outbox_mark, 0) is False

        assert await wakeups.wait(OUTBOX_WRITTEN, outbox_mark, WOKEN_WITHIN_S) is True
        # One writer's notifications arrive in commit order: had the rolled back one been
        # sent, it would have come first.
        assert wakeups.mark(CHUNKS_QUEUED) == chunks_mark
    finally:
        await wakeups.close()


async def test_the_relay_publishes_a_committed_event_without_waiting_for_its_poll(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    producer = make_producer(kafka_settings, "test")
    consumer = make_consumer(kafka_settings, topics.upload_status, group_id="t", client_id="t")
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    relay = asyncio.create_task(run_relay(pool, producer, stop, idle_sleep_s=3_600))
    try:
        # The relay's first rounds find nothing; it then listens, and a poll is an hour away.
        async with asyncio.timeout(WOKEN_WITHIN_S):
            while not await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            ):
                await asyncio.sleep(0.05)
        event = UploadProgress(upload_id=uuid.uuid4(), rows_processed=10)
        async with pool.acquire() as connection, connection.transaction():
            await enqueue(connection, topics, event)

        received = []
        async with asyncio.timeout(WOKEN_WITHIN_S):
            while not received:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.extend(records)
        assert [parse_event(r.value).event_id for r in received] == [event.event_id]
    finally:
        stop.set()
        await relay
        await consumer.stop()
        await producer.stop()
