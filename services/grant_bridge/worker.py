"""The consumer loop: `achievements.accepted.v1` → pending claims in PostgreSQL.

Offsets are committed only after the claims are durable; a message that cannot be parsed goes
to the dead-letter topic and the partition moves on. The loop never waits for the grant API, so
claims keep being recorded while the breaker is open.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import ValidationError

from services.core.events import AchievementsAccepted, Topics, parse_event
from services.core.kafka import make_consumer, send_dead_letter
from services.core.logging import get_logger
from services.grant_bridge.claims import store_accepted_event
from services.grant_bridge.settings import GrantBridgeSettings

log = get_logger()
DEAD_LETTER_STAGE = "grant_bridge.consume"


class UnusableMessage(Exception):
    """A record this consumer can never process, however often it is redelivered."""


def parse_accepted(raw: bytes | None) -> AchievementsAccepted:
    """The event in a record, or `UnusableMessage` naming what is wrong (never the payload)."""
    if raw is None:
        raise UnusableMessage("empty message")
    try:
        event = parse_event(raw)
    except ValidationError as error:
        kinds = sorted({e["type"] for e in error.errors()})
        raise UnusableMessage(f"not a valid event: {', '.join(kinds)}") from None
    if not isinstance(event, AchievementsAccepted):
        raise UnusableMessage(f"unexpected event type {event.event_type}")
    return event


class AcceptedConsumer:
    def __init__(
        self,
        settings: GrantBridgeSettings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        topics: Topics,
        *,
        client_id: str = "grant-bridge",
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._topics = topics
        self._client_id = client_id

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(
            self._settings.common.kafka,
            self._topics.accepted,
            group_id=self._settings.consumer_group,
            client_id=self._client_id,
            max_poll_records=self._settings.consumer_max_poll_records,
        )
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=self._settings.consumer_poll_timeout_ms)
                for partition, records in batches.items():
                    done = await self._handle_partition(records, stop)
                    if done is not None:
                        await _commit(consumer, partition, done.offset + 1)
                    if stop.is_set():
                        break
        finally:
            await consumer.stop()

    async def _handle_partition(
        self, records: list[ConsumerRecord], stop: asyncio.Event
    ) -> ConsumerRecord | None:
        """Handles records in order; returns the last one whose effect is durable."""
        done: ConsumerRecord | None = None
        for record in records:
            if not await self._handle(record, stop):
                break
            done = record
        return done

    async def _handle(self, record: ConsumerRecord, stop: asyncio.Event) -> bool:
        """True once the record's effect is durable (or it is dead-lettered)."""
        structlog.contextvars.bind_contextvars(
            kafka_partition=record.partition, kafka_offset=record.offset
        )
        try:
            try:
                event = parse_accepted(record.value)
            except UnusableMessage as error:
                await send_dead_letter(
                    self._producer,
                    self._topics,
                    record,
                    stage=DEAD_LETTER_STAGE,
                    error=str(error),
                )
                log.warning("message_dead_lettered", error=str(error))
                return True
            structlog.contextvars.bind_contextvars(upload_id=str(event.upload_id))
            while True:
                try:
                    stored = await store_accepted_event(self._pool, event)
                    break
                except (
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    OSError,
                    TimeoutError,
                ) as error:
                    # The database is the effect: keep the offset until it is written.
                    log.warning("claims_record_failed", error=type(error).__name__)
                    try:
                        await asyncio.wait_for(stop.wait(), self._settings.store_retry_s)
                    except TimeoutError:
                        continue
                    return False
            if stored.missing:
                log.error("accepted_achievements_missing", missing=stored.missing)
            log.info(
                "claims_recorded",
                event_id=str(event.event_id),
                duplicate=stored.duplicate,
                eligible=stored.eligible,
                recorded=stored.recorded,
            )
            return True
        finally:
            structlog.contextvars.unbind_contextvars("kafka_partition", "kafka_offset", "upload_id")


async def _commit(consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
    try:
        await consumer.commit({partition: offset})
    except CommitFailedError:
        # A rebalance moved the partition: its records come again and change nothing.
        log.warning("offset_commit_failed", partition=partition.partition)
