"""The bridge's handler on the shared consumer loop: what it answers for each kind of record."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from bridge_helpers import seed_upload

from services.core.consumer import DONE, RetryLater, Unusable
from services.core.db import create_pool
from services.core.events import Topics, encode_event
from services.core.kafka import make_producer
from services.core.settings import CommonSettings, KafkaSettings, PostgresSettings
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_bridge.worker import AcceptedConsumer


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(kafka_settings, "bridge-handler-test")
    await producer.start()
    yield producer
    await producer.stop()


def record(topics: Topics, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topics.accepted,
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"key",
        value=value,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=len(value or b""),
        headers=(),
    )


async def test_claims_are_done_poison_is_unusable_and_a_database_outage_is_retried(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    producer: AIOKafkaProducer,
) -> None:
    postgres = PostgresSettings(database_url=database_url)
    settings = GrantBridgeSettings(common=CommonSettings(postgres=postgres, kafka=kafka_settings))
    bridge = AcceptedConsumer(settings, pool, producer, topics)
    seeded = await seed_upload(pool, released=2)

    assert await bridge.handle(record(topics, None)) == Unusable("empty message")
    outcome = await bridge.handle(record(topics, b'{"event_type": "achievements.accepted"'))
    assert isinstance(outcome, Unusable)
    assert outcome.error.startswith("not a valid event")
    assert await bridge.handle(record(topics, encode_event(seeded.event()))) == DONE
    assert await pool.fetchval("SELECT count(*) FROM grant_claims") == 2

    closed = await create_pool(postgres, dsn=database_url)
    await closed.close()
    other = await seed_upload(pool, released=1)
    outcome = await AcceptedConsumer(settings, closed, producer, topics).handle(
        record(topics, encode_event(other.event()))
    )
    assert isinstance(outcome, RetryLater)
    assert outcome.reason == "claims not recorded: InterfaceError"
    assert await pool.fetchval("SELECT count(*) FROM grant_claims") == 2
