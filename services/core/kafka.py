"""Kafka clients with the settings the contract asks for, set explicitly (design.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from services.core.events import Topics
from services.core.logging import get_logger
from services.core.misconfiguration import ConfigurationError, tls_refusal
from services.core.settings import KafkaSettings

log = get_logger()

# How long the diagnosis of a failed start waits for one broker (seconds).
DIAGNOSIS_TIMEOUT_S = 10.0

# The brokers' refusals no retry can fix, and the setting each one names.
_SASL = "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
_REFUSALS: tuple[tuple[tuple[type[BaseException], ...], str, str], ...] = (
    (
        (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError),
        _SASL,
        "the brokers refused the SASL login",
    ),
    (
        (UnsupportedSaslMechanismError, AuthenticationMethodNotSupported),
        "KAFKA_SASL_MECHANISM",
        "the brokers do not offer this SASL mechanism",
    ),
    (
        (TopicAuthorizationFailedError,),
        "KAFKA_TOPIC_PREFIX",
        f"the Kafka user ({_SASL}) has no ACL for these topics",
    ),
    (
        (GroupAuthorizationFailedError,),
        "KAFKA_TOPIC_PREFIX",
        f"the Kafka user ({_SASL}) has no ACL for this consumer group",
    ),
    (
        (ClusterAuthorizationFailedError, TransactionalIdAuthorizationFailed),
        _SASL,
        "the Kafka user has no cluster ACL for idempotent writes (IdempotentWrite)",
    ),
)


def configuration_problem(error: BaseException) -> ConfigurationError | None:
    """The setting a Kafka error names, or None when the error may pass (a broker away, a
    leader moving). The one place aiokafka's refusals are translated."""
    refusal = tls_refusal(error)
    if refusal is not None:
        return ConfigurationError(
            "KAFKA_SSL_CA_FILE",
            f"{refusal}; check KAFKA_SSL_CA_FILE, KAFKA_SECURITY_PROTOCOL and"
            " KAFKA_BOOTSTRAP_SERVERS",
        )
    for kinds, setting, reason in _REFUSALS:
        if isinstance(error, kinds):
            return ConfigurationError(setting, f"{reason} ({type(error).__name__})")
    return None


async def diagnose_connection(
    settings: KafkaSettings, timeout_s: float = DIAGNOSIS_TIMEOUT_S
) -> ConfigurationError | None:
    """Why the brokers cannot be used, when it is a setting: aiokafka reports a failed bootstrap
    as a bare `KafkaConnectionError` whatever the cause (it logs the TLS or SASL refusal and
    drops it), so one connection like a client's own (TLS, then SASL) is made to each bootstrap
    server until one answers. None when none refuses for good (they are away: transient)."""
    options = connection_options(settings)
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            return ConfigurationError(
                "KAFKA_BOOTSTRAP_SERVERS", "expected host:port, comma-separated"
            )
        try:
            async with asyncio.timeout(timeout_s):
                probe = await create_conn(
                    host.strip("[]"),
                    int(port),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=settings.security_protocol,
                    sasl_mechanism=options.get("sasl_mechanism"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                )
        except (OSError, KafkaError, TimeoutError) as error:
            problem = configuration_problem(error)
            if problem is not None:
                return problem
            continue
        probe.close()
        return None
    return None


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Startable, settings: KafkaSettings) -> None:
    """`client.start()` (a producer, consumer or admin client), with a refusal no retry can fix
    raised as `ConfigurationError` naming the setting; other errors as they are."""
    try:
        await client.start()
    except KafkaConnectionError:
        problem = await diagnose_connection(settings)
        if problem is not None:
            raise problem from None
        raise
    except KafkaError as error:
        problem = configuration_problem(error)
        if problem is not None:
            raise problem from None
        raise


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
    someone else's (Strimzi's in production), and no ACL lets this process create them.
    A refusal no wait can fix (a certificate, a login, an ACL) is raised at once as
    `ConfigurationError`."""
    if not settings.create_topics:
        log.info("topics_not_created", reason="KAFKA_CREATE_TOPICS=false")
        return
    admin = AIOKafkaAdminClient(**connection_options(settings))
    attempt, delay_s = 1, 1.0
    while True:
        try:
            await start_client(admin, settings)
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
    except KafkaError as error:
        problem = configuration_problem(error)
        if problem is not None:
            raise problem from None
        raise
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
