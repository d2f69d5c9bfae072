"""The worker's handling of what it cannot validate: a poison message or an upload whose
validation keeps failing goes to the dead-letter topic; an outage propagates instead."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from services.core.events import Topics, UploadReceived, encode_event
from services.core.kafka import make_consumer, make_producer
from services.core.settings import CommonSettings, KafkaSettings
from services.validator.pipeline import UploadValidation
from services.validator.settings import ValidatorSettings
from services.validator.worker import ValidatorWorker


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(kafka_settings, "test")
    await producer.start()
    yield producer
    await producer.stop()


async def first_record(kafka_settings: KafkaSettings, topic: str) -> ConsumerRecord:
    consumer: AIOKafkaConsumer = make_consumer(
        kafka_settings, topic, group_id=f"reader-{uuid.uuid4()}", client_id="test"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    return records[0]
    finally:
        await consumer.stop()


def worker(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_settings: KafkaSettings
) -> ValidatorWorker:
    settings = ValidatorSettings(
        common=CommonSettings(kafka=kafka_settings), max_attempts=2, retry_delay_s=0
    )
    return ValidatorWorker(settings, pool, consumer=None, producer=producer)  # type: ignore[arg-type]


def upload_received() -> UploadReceived:
    return UploadReceived(
        upload_id=uuid.uuid4(),
        ato_id="ATO-1",
        file_name="f.csv",
        size_bytes=1,
        sha256="0" * 64,
        policy="all_or_nothing",
        storage_key="uploads/x.csv",
        upload_date=date(2026, 11, 20),
    )


async def test_an_upload_that_keeps_failing_is_dead_lettered_with_its_context(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    kafka_settings: KafkaSettings,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[int] = []

    async def broken_run(self: Any) -> None:
        attempts.append(1)
        raise ValueError("a bug in a rule")

    monkeypatch.setattr(UploadValidation, "run", broken_run)
    event = upload_received()
    await producer.send_and_wait(topics.uploads, encode_event(event), key=b"k")
    record = await first_record(kafka_settings, topics.uploads)

    await worker(pool, producer, kafka_settings).handle(record)

    dead = await first_record(kafka_settings, topics.dead_letter)
    headers = dict(dead.headers)
    assert len(attempts) == 2
    assert dead.value == record.value
    assert headers["dlq.stage"] == b"validator"
    assert headers["dlq.error"] == b"ValueError"
    assert headers["dlq.source_topic"] == topics.uploads.encode()


async def test_a_message_that_is_not_an_event_is_dead_lettered(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka_settings: KafkaSettings, topics: Topics
) -> None:
    await producer.send_and_wait(topics.uploads, b"{not json", key=b"k")
    record = await first_record(kafka_settings, topics.uploads)

    await worker(pool, producer, kafka_settings).handle(record)

    dead = await first_record(kafka_settings, topics.dead_letter)
    assert dead.value == b"{not json"


async def test_an_outage_propagates_so_the_upload_is_delivered_again(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    kafka_settings: KafkaSettings,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def storage_gone(self: Any) -> None:
        raise FileNotFoundError("the shared storage is not mounted")

    monkeypatch.setattr(UploadValidation, "run", storage_gone)
    await producer.send_and_wait(topics.uploads, encode_event(upload_received()), key=b"k")
    record = await first_record(kafka_settings, topics.uploads)

    with pytest.raises(FileNotFoundError):
        await worker(pool, producer, kafka_settings).handle(record)
    consumer = make_consumer(kafka_settings, topics.dead_letter, group_id="dlq", client_id="t")
    await consumer.start()
    try:
        assert (await consumer.getmany(timeout_ms=1500)) == {}
    finally:
        await consumer.stop()
