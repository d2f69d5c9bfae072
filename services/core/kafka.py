"""Kafka clients with the settings the contract asks for, set explicitly (design.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from services.core.events import Topics
from services.core.logging import get_logger
from services.core.settings import KafkaSettings

log = get_logger()


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """How every client (producer, consumer, admin) reaches the brokers: TLS and SASL."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_ca_file) if settings.ssl_ca_file else None,
            certfile=str(settings.ssl_cert_file) if settings.ssl_cert_file else None,
            keyfile=str(settings.ssl_key_file) if settings.ssl_key_file else None,
        )
    if settings.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def make_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(
    settings: KafkaSettings,
    *topics: str,
    group_id: str,
    client_id: str,
    max_poll_records: int = 50,
    max_poll_interval_ms: int = 600_000,
    listener: ConsumerRebalanceListener | None = None,
) -> AIOKafkaConsumer:
    """A consumer subscribed to `topics`, with `listener` told of every rebalance (the consumer
    loop's, `ConsumerLoop.listener`)."""
    if listener is not None and not topics:
        raise ValueError("a rebalance listener needs topics to subscribe to")
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        # Pipelines isolated by a topic prefix must not share consumer groups either.
        group_id=settings.topic_prefix + group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        max_poll_interval_ms=max_poll_interval_ms,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        isolation_level="read_committed",
    )
    if topics:
        # Before `start()`: subscribing then joins the group once, with the listener in place.
        consumer.subscribe(topics=list(topics), listener=listener)
    return consumer


async def ensure_topics(settings: KafkaSettings, topics: Topics, attempts: int | None = 30) -> None:
    """Creates the contract's topics if missing; waits for a broker that is still starting
    (1 s, doubling up to 10 s between tries): `attempts` tries, or for as long as it takes
    with `None` (a worker started before Kafka, or while it restarts, waits rather than
    exiting into a restart loop). Nothing when KAFKA_CREATE_TOPICS is off: the topics are
    someone else's (Strimzi's in production), and no ACL lets this process create them."""
    if not settings.create_topics:
        log.info("topics_not_created", reason="KAFKA_CREATE_TOPICS=false")
        return
    admin = AIOKafkaAdminClient(**connection_options(settings))
    attempt, delay_s = 1, 1.0
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempts is not None and attempt >= attempts:
                raise
            log.warning("dependency_waited_for", dependency="kafka", attempt=attempt)
            await asyncio.sleep(delay_s)
            attempt, delay_s = attempt + 1, min(delay_s * 2, 10.0)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                settings.topic_partitions,
                settings.replication_factor,
                topic_configs={"min.insync.replicas": str(settings.min_insync_replicas)},
            )
            for name in topics.all()
            if name not in existing
        ]
        if wanted:
            # Another process may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


async def send_dead_letter(
    producer: AIOKafkaProducer,
    topics: Topics,
    record: ConsumerRecord,
    *,
    stage: str,
    error: str,
) -> None:
    """The original bytes and key, with headers that say where they came from and why."""
    headers: Sequence[tuple[str, bytes]] = [
        *(record.headers or ()),
        ("dlq.source_topic", record.topic.encode()),
        ("dlq.source_partition", str(record.partition).encode()),
        ("dlq.source_offset", str(record.offset).encode()),
        ("dlq.stage", stage.encode()),
        ("dlq.error", error[:500].encode()),
    ]
    await producer.send_and_wait(
        topics.dead_letter, value=record.value, key=record.key, headers=list(headers)
    )


def json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
