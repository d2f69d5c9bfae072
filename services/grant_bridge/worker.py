"""The consumer loop: `achievements.accepted.v1` → pending claims in PostgreSQL.

Runs on the shared consumer loop: offsets are committed only after the claims are durable; a
message that cannot be parsed goes to the dead-letter topic and the partition moves on; a
database failure leaves the record to come again. The handler never waits for the grant API, so
claims keep being recorded while the breaker is open.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from services.core.consumer import DONE, ConsumerLoop, Handled, RetryLater, Unusable
from services.core.db import TRANSIENT_ERRORS, connection
from services.core.events import AchievementsAccepted, Topics, parse_event
from services.core.kafka import make_consumer, start_client
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
    """The bridge's handler on the shared consumer loop (services/core/consumer.py)."""

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
        loop = ConsumerLoop(
            self.handle,
            producer=self._producer,
            topics=self._topics,
            stage=DEAD_LETTER_STAGE,
            poll_timeout_ms=self._settings.consumer_poll_timeout_ms,
            retry_delay_s=self._settings.store_retry_s,
        )
        consumer = make_consumer(
            self._settings.common.kafka,
            self._topics.accepted,
            group_id=self._settings.consumer_group,
            client_id=self._client_id,
            max_poll_records=self._settings.consumer_max_poll_records,
            listener=loop.listener,
        )
        await start_client(consumer, self._settings.common.kafka)
        try:
            await loop.run(consumer, stop)
        finally:
            await consumer.stop()

    async def handle(self, record: ConsumerRecord) -> Handled:
        """Done once the record's claims are durable; a database failure is retried later."""
        try:
            event = parse_accepted(record.value)
        except UnusableMessage as error:
            return Unusable(str(error))
        structlog.contextvars.bind_contextvars(upload_id=str(event.upload_id))
        try:
            async with connection(self._pool, self._settings.common.postgres) as held:
                stored = await store_accepted_event(held, event)
        except TRANSIENT_ERRORS as error:
            # The database is the effect: keep the offset until it is written.
            log.warning("claims_record_failed", error=type(error).__name__)
            return RetryLater(f"claims not recorded: {type(error).__name__}")
        if stored.missing:
            log.error("accepted_achievements_missing", missing=stored.missing)
        log.info(
            "claims_recorded",
            event_id=str(event.event_id),
            duplicate=stored.duplicate,
            eligible=stored.eligible,
            recorded=stored.recorded,
        )
        return DONE
