"""The validator's consumer loop: one upload at a time per partition, offsets committed after.

Kafka's group protocol spreads partitions (and so uploads) over the workers; an upload whose
worker dies is redelivered to the next owner of its partition, which resumes from the rows
already stored.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import ValidationError

from services.core.events import Topics, UploadReceived, parse_event
from services.core.kafka import send_dead_letter
from services.core.logging import get_logger
from services.core.reference_store import ReferenceCache
from services.core.storage import FolderStorage
from services.validator.pipeline import UploadValidation
from services.validator.settings import ValidatorSettings

log = get_logger()

# Failures of what the validator depends on, rather than of the upload being validated.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    OSError,
    TimeoutError,
)


class ValidatorWorker:
    def __init__(
        self,
        settings: ValidatorSettings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.consumer = consumer
        self.producer = producer
        self.topics = Topics(settings.common.kafka.topic_prefix)
        self.storage = FolderStorage(settings.common.storage.root)
        self.reference = ReferenceCache(pool)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=1)
            for partition, records in batches.items():
                for record in records:
                    await self.handle(record)
                    await self._commit(partition, record.offset + 1)

    async def handle(self, record: ConsumerRecord) -> None:
        try:
            event = parse_event(record.value)
        except (ValidationError, ValueError) as error:
            log.warning("message_dead_lettered", topic=record.topic, offset=record.offset)
            await send_dead_letter(
                self.producer, self.topics, record, stage="validator", error=type(error).__name__
            )
            return
        if not isinstance(event, UploadReceived):
            return  # withdrawals need nothing from the validator
        structlog.contextvars.bind_contextvars(upload_id=str(event.upload_id))
        try:
            await self._validate(event, record)
        finally:
            structlog.contextvars.unbind_contextvars("upload_id")

    async def _validate(self, event: UploadReceived, record: ConsumerRecord) -> None:
        """Retries an upload whose validation fails a few times, then dead-letters it so the
        uploads behind it on the partition keep moving. A database or storage outage is not the
        upload's fault: it propagates, the process restarts, and Kafka delivers the upload again.
        """
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                await UploadValidation(
                    upload_id=event.upload_id,
                    pool=self.pool,
                    storage=self.storage,
                    reference=await self.reference.current(),
                    settings=self.settings,
                    topics=self.topics,
                ).run()
                return
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as error:
                log.error("upload_validation_failed", attempt=attempt, error=type(error).__name__)
                if attempt == attempts:
                    await send_dead_letter(
                        self.producer,
                        self.topics,
                        record,
                        stage="validator",
                        error=type(error).__name__,
                    )
                    log.error("upload_dead_lettered", attempts=attempts)
                    return
                await asyncio.sleep(self.settings.retry_delay_s * attempt)

    async def _commit(self, partition: TopicPartition, offset: int) -> None:
        # After a rebalance the record comes again to the new owner; the effect is idempotent.
        with contextlib.suppress(CommitFailedError):
            await self.consumer.commit({partition: offset})
