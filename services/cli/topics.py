"""Reading the pipeline's topics as an operator: short topic names, a record's headers and
payload, and a consumer in no group (it commits nothing and takes no partition from the
services), started within the connect timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.cli.connect import start_kafka
from services.cli.failures import CommandFailed, ExitCode
from services.core.events import Topics
from services.core.kafka import connection_options
from services.core.settings import KafkaSettings

# Short names for `--topic`, as an operator types them.
TOPIC_NAMES: Final = ("uploads", "upload-status", "accepted", "grant-claims", "dead-letter")
# How often the metadata is read again for a topic created a moment ago.
METADATA_ATTEMPTS: Final = 6


def topic_by_short_name(topics: Topics) -> dict[str, str]:
    return dict(zip(TOPIC_NAMES, topics.all(), strict=True))


def short_name(topic: str, topics: Topics) -> str:
    for short, full in topic_by_short_name(topics).items():
        if full == topic:
            return short
    return topic


def headers_of(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers or ()}


def payload_of(record: ConsumerRecord) -> dict[str, Any] | None:
    try:
        value = json.loads(record.value) if record.value is not None else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def operator_consumer(settings: KafkaSettings, client_id: str) -> AIOKafkaConsumer:
    """A consumer in no group: it commits nothing and takes no partition from the services."""
    return AIOKafkaConsumer(
        **connection_options(settings),
        group_id=None,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    # The consumer's own `topics()` reads the metadata without keeping it, and
    # `partitions_for_topic` only answers from what is kept: read it from the cluster's answer.
    topics = list(topics)
    found: list[TopicPartition] = []
    # A topic created a moment ago may not be in every broker's metadata yet.
    for attempt in range(METADATA_ATTEMPTS):
        cluster = await consumer._client.fetch_all_metadata()
        found = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        if found or attempt == METADATA_ATTEMPTS - 1:
            break
        await asyncio.sleep(0.5)
    if not found:
        raise CommandFailed(
            ExitCode.UNAVAILABLE, "NO_SUCH_TOPIC", "the topics do not exist (KAFKA_TOPIC_PREFIX?)"
        )
    return found


@contextlib.asynccontextmanager
async def operator_consumer_started(
    settings: KafkaSettings, client_id: str, connect_timeout_s: float
) -> AsyncIterator[AIOKafkaConsumer]:
    """`operator_consumer`, connected within `connect_timeout_s` (else `KAFKA_UNREACHABLE`),
    stopped when the block ends."""
    consumer = operator_consumer(settings, client_id)
    await start_kafka(consumer, settings, connect_timeout_s)
    try:
        yield consumer
    finally:
        await consumer.stop()
