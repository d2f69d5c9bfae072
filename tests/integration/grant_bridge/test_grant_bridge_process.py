"""The bridge as `__main__` runs it (consumer, due loop, relay), and what it does with messages
it cannot process."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from aiokafka import ConsumerRecord
from bridge_helpers import (
    Bridge,
    Standin,
    all_closed,
    bridge_settings,
    publish,
    seed_upload,
    wait_until,
)

from services.core.events import Topics, UploadProgress, encode_event, parse_event
from services.core.kafka import make_consumer
from services.core.settings import KafkaSettings
from services.grant_bridge.__main__ import run
from services.grant_bridge.grant_client import claim_id_for


async def consume(
    kafka_settings: KafkaSettings, topic: str, count: int, timeout_s: float = 30.0
) -> list[ConsumerRecord]:
    consumer = make_consumer(
        kafka_settings, topic, group_id=f"check-{uuid.uuid4().hex[:8]}", client_id="check"
    )
    await consumer.start()
    received: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(received) < count:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    received.extend(records)
    finally:
        await consumer.stop()
    return received


async def outbox_drained(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0)


async def test_the_bridge_process_claims_and_publishes_every_outcome(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=3, withdrawn=1)
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, seeded.event())

    stop = asyncio.Event()
    bridge = asyncio.create_task(run(settings, stop))
    try:
        await wait_until(lambda: all_closed(pool, 4), what="claims closed")
        records = await consume(kafka_settings, topics.grant_claims, count=6)
        await wait_until(lambda: outbox_drained(pool), what="outbox relayed")
    finally:
        stop.set()  # what SIGTERM does
        await asyncio.wait_for(bridge, timeout=30)

    events = [parse_event(record.value) for record in records]
    # No claim.withdrawn: the gateway publishes it with the withdrawal, not the bridge.
    assert sorted(e.event_type for e in events) == sorted(
        ["claim.submitted"] * 3 + ["claim.accepted"] * 3
    )
    keys = {record.key.decode() for record in records}
    assert keys == {str(a) for a in seeded.released}
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 6
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
    stored = {c["claim_id"] for c in await standin.claims_of(seeded.upload_id)}
    assert stored == {str(claim_id_for(a)) for a in seeded.released}


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=2)
    key = str(seeded.upload_id).encode()  # same key: the same partition as the good event
    wrong_type = encode_event(UploadProgress(upload_id=seeded.upload_id, rows_processed=1))
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(
        kafka_settings,
        topics,
        (b"not json {", key),
        (wrong_type, key),
        (b'{"event_type": "achievements.accepted", "achievements": 3}', key),
        seeded.event(),
    )

    async with Bridge(settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: all_closed(pool, 2), what="the good event's claims closed")
        dead = await consume(kafka_settings, topics.dead_letter, count=3)

    assert [r.value for r in dead] == [
        b"not json {",
        wrong_type,
        b'{"event_type": "achievements.accepted", "achievements": 3}',
    ]
    for record in dead:
        headers = dict(record.headers)
        assert record.key == key
        assert headers["dlq.source_topic"] == topics.accepted.encode()
        assert headers["dlq.stage"] == b"grant_bridge.consume"
        assert int(headers["dlq.source_offset"]) >= 0
        assert "dlq.source_partition" in headers
        assert headers["dlq.error"]
    assert dict(dead[1].headers)["dlq.error"] == b"unexpected event type upload.progress"
