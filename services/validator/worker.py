"""The validator's Kafka side: each `upload.received` is planned into chunk tasks.

Planning is short (byte-speed passes in a worker thread), so a record never holds its
partition for long; the shared consumer loop (`services.core.consumer`) commits the offset once
the plan (or the outcome, for a refused file) is durable. An outage is retried without a
restart; an upload whose planning keeps failing for another reason ends `errored` and is
dead-lettered, so the partition keeps moving.
"""

from __future__ import annotations

import time

import asyncpg
import structlog
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from services.core.consumer import DONE, Handled, RetryLater, Unusable
from services.core.events import Topics, UploadReceived, parse_event
from services.core.logging import get_logger
from services.core.metrics import PIPELINE_STEP
from services.core.storage import Storage, open_storage
from services.validator import upload_outcome
from services.validator.chunk_worker import INFRASTRUCTURE_ERRORS
from services.validator.planner import plan_upload
from services.validator.settings import ValidatorSettings

log = get_logger()
DEAD_LETTER_STAGE = "validator.plan"


class UploadPlanner:
    """The handler of `achievements.uploads.v1` records."""

    def __init__(
        self, settings: ValidatorSettings, pool: asyncpg.Pool, storage: Storage | None = None
    ) -> None:
        """`storage` is shared with the process's chunk workers: with S3 they then read the
        local copy this planner made (the object store is asked again only by others)."""
        self.settings = settings
        self.pool = pool
        self.topics = Topics(settings.common.kafka.topic_prefix)
        self.storage = storage or open_storage(settings.common.storage)
        # Failed attempts per upload in this process (an outage does not count).
        self._failures: dict[str, int] = {}

    async def handle(self, record: ConsumerRecord) -> Handled:
        try:
            event = parse_event(record.value)
        except (ValidationError, ValueError) as error:
            return Unusable(type(error).__name__)
        if not isinstance(event, UploadReceived):
            return DONE  # withdrawals need nothing from the validator
        structlog.contextvars.bind_contextvars(upload_id=str(event.upload_id))
        key = str(event.upload_id)
        # From the relay's send (the producer's timestamp) to here: the broker and the fetch.
        PIPELINE_STEP.labels("kafka_delivery").observe(
            max(0.0, time.time() - record.timestamp / 1000)
        )
        started = time.perf_counter()
        try:
            await plan_upload(self.pool, self.storage, self.settings, self.topics, event.upload_id)
        except INFRASTRUCTURE_ERRORS as error:
            log.warning("upload_planning_waiting", error=type(error).__name__)
            return RetryLater(type(error).__name__)
        except Exception as error:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            log.error("upload_planning_failed", attempt=failures, error=type(error).__name__)
            if failures < self.settings.max_attempts:
                return RetryLater(type(error).__name__, self.settings.retry_delay_s * failures)
            del self._failures[key]
            async with self.pool.acquire(
                timeout=self.settings.common.postgres.db_acquire_timeout_s
            ) as connection:
                await upload_outcome.error_out(
                    connection, self.topics, event.upload_id, reason="planning_failed"
                )
            return Unusable(type(error).__name__)
        self._failures.pop(key, None)
        PIPELINE_STEP.labels("planning").observe(time.perf_counter() - started)
        return DONE
