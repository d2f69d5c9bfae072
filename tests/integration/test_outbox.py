"""The outbox relay publishes what a transaction wrote, once, keyed by upload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import asyncpg

from services.core.events import Topics, UploadProgress, parse_event
from services.core.kafka import make_consumer, make_producer
from services.core.outbox import Relay, enqueue, relay_once
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


async def test_several_relays_keep_the_order_of_each_keys_events(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    """Three relays run at once, handing slots over now and then, while events of 12 keys are
    written in interleaved batches: each key's events reach Kafka in the order they were
    written."""
    keys = [uuid.uuid4() for _ in range(12)]
    written: dict[uuid.UUID, list[uuid.UUID]] = {key: [] for key in keys}
    producers = [make_producer(kafka_settings, f"relay-{n}") for n in range(3)]
    for producer in producers:
        await producer.start()
    relays = [Relay(pool, producer, batch_size=7) for producer in producers]
    stop = asyncio.Event()

    async def keep_relaying(relay: Relay) -> None:
        while not stop.is_set():
            await relay.relay_once()
            await asyncio.sleep(0)

    running = [asyncio.create_task(keep_relaying(relay)) for relay in relays]
    try:
        for rows_processed in range(25):
            async with pool.acquire() as connection, connection.transaction():
                for key in keys:
                    event = UploadProgress(upload_id=key, rows_processed=rows_processed)
                    written[key].append(event.event_id)
                    await enqueue(connection, topics, event)
            if rows_processed % 8 == 7:
                # A relay stops mid-stream and hands its slots back (as a crash would): the
                # others take them, then it comes back.
                n = rows_processed // 8 % 3
                running[n].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running[n]
                await relays[n].close()
                running[n] = asyncio.create_task(keep_relaying(relays[n]))
        async with asyncio.timeout(30):
            while await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*running)
        held = [relay.slots for relay in relays]
        for relay in relays:
            await relay.close()
        for producer in producers:
            await producer.stop()

    # Every slot was held by exactly one relay.
    assert sorted(slot for slots in held for slot in slots) == list(range(16))
    consumer = make_consumer(kafka_settings, topics.upload_status, group_id="t", client_id="t")
    await consumer.start()
    received: dict[uuid.UUID, list[uuid.UUID]] = {key: [] for key in keys}
    try:
        async with asyncio.timeout(30):
            while sum(len(set(ids)) for ids in received.values()) < 12 * 25:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = parse_event(record.value)
                        assert isinstance(event, UploadProgress)
                        received[event.upload_id].append(event.event_id)
    finally:
        await consumer.stop()
    # A relay stopped between sending and marking leaves rows that the next one sends again
    # (at least once; consumers deduplicate on event_id): the first deliveries keep the order.
    first_deliveries = {key: list(dict.fromkeys(ids)) for key, ids in received.items()}
    assert first_deliveries == written


async def test_a_relay_round_stops_before_its_bytes_of_payload(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    """Big events (a thousand accepted achievements each) go a few per round, sent as the text
    PostgreSQL holds, so no process parses hundreds of MB of them at once."""
    upload_id = uuid.uuid4()
    padding = "x" * 300_000  # about 300 KB of payload each
    async with pool.acquire() as connection:
        for n in range(4):
            await connection.execute(
                "INSERT INTO outbox (topic, key, event_type, payload) VALUES ($1, $2, $3, $4)",
                topics.upload_status,
                str(upload_id),
                "upload.progress",
                json.dumps({"event_type": "upload.progress", "n": n, "padding": padding}),
            )

    producer = make_producer(kafka_settings, "test")
    await producer.start()
    try:
        # Bytes before each row: 0, 300 K and 600 K are under 700 K; 900 K is not.
        rounds = [await relay_once(pool, producer, batch_bytes=700_000) for _ in range(3)]
        assert rounds == [3, 1, 0]
    finally:
        await producer.stop()

    consumer = make_consumer(kafka_settings, topics.upload_status, group_id="t", client_id="t")
    await consumer.start()
    try:
        received = []
        async with asyncio.timeout(20):
            while len(received) < 4:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.extend(records)
    finally:
        await consumer.stop()
    assert [json.loads(r.value)["n"] for r in received] == [0, 1, 2, 3]
    assert {dict(r.headers)["event_type"] for r in received} == {b"upload.progress"}


async def test_a_round_sends_a_batch_of_every_slot_within_its_bytes(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    """Two uploads' big events in two slots: each round sends some of each (every slot's first
    row goes whatever the round's bytes), so neither upload's events wait for all of the
    other's; each upload's events still arrive in order."""
    keys: list[uuid.UUID] = []
    async with pool.acquire() as connection:
        slots_taken: set[int] = set()
        while len(keys) < 2:  # two keys of different slots (migration 0007's hash)
            key = uuid.uuid4()
            slot = await connection.fetchval("SELECT hashtext($1) & 15", str(key))
            if slot not in slots_taken:
                slots_taken.add(slot)
                keys.append(key)
        padding = "x" * 300_000  # about 300 KB of payload each
        for key in keys:
            for n in range(4):
                await connection.execute(
                    "INSERT INTO outbox (topic, key, event_type, payload) VALUES ($1, $2, $3, $4)",
                    topics.upload_status,
                    str(key),
                    "upload.progress",
                    json.dumps({"event_type": "upload.progress", "n": n, "padding": padding}),
                )
        slots = await connection.fetchval("SELECT count(DISTINCT slot) FROM outbox")
    assert slots == 2

    producer = make_producer(kafka_settings, "test")
    await producer.start()
    relay = Relay(pool, producer, batch_bytes=700_000, round_bytes=700_000)
    try:
        # Round 1: the first slot's rows before 700 KB (three, 900 KB), then the second slot's
        # first row only (the round's bytes are spent). Round 2: the first slot's last row,
        # then the second's rows before the 400 KB left (two). Round 3: the second's last.
        rounds = [await relay.relay_once() for _ in range(4)]
        assert rounds == [4, 3, 1, 0]
    finally:
        await relay.close()
        await producer.stop()

    consumer = make_consumer(kafka_settings, topics.upload_status, group_id="t", client_id="t")
    await consumer.start()
    try:
        received = []
        async with asyncio.timeout(20):
            while len(received) < 8:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.extend(records)
    finally:
        await consumer.stop()
    for key in keys:
        ordered = [json.loads(r.value)["n"] for r in received if r.key == str(key).encode()]
        assert ordered == [0, 1, 2, 3]
