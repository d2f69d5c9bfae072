"""The loops that wait out outages (the consumer loop's poll, the outbox relay) stop at a
refusal no wait can fix, raising the setting to correct: an ACL that does not let this process
read its group or write its topic fails the same way on every round.

The consumer, producer and pool here are small in-memory stand-ins: only the error they raise
matters, and a real broker with ACLs belongs to the cluster tests (deploy/cluster)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from services.core.consumer import DONE, ConsumerLoop, Handled
from services.core.events import Topics
from services.core.misconfiguration import ConfigurationError
from services.core.outbox import run_relay

# Bounds a loop that, were the refusal taken for an outage, would go on for ever.
NEVER_S = 20.0


class RefusedConsumer:
    """A consumer whose group the brokers refuse: every poll raises."""

    def __init__(self) -> None:
        self.polls = 0

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        self.polls += 1
        raise GroupAuthorizationFailedError()

    def assignment(self) -> set[TopicPartition]:
        return set()

    def resume(self, *partitions: TopicPartition) -> None:
        pass


async def _never_called(record: Any) -> Handled:
    return DONE


async def test_a_poll_refused_by_a_group_acl_ends_the_loop_naming_the_setting() -> None:
    consumer = RefusedConsumer()
    loop = ConsumerLoop(
        _never_called,
        producer=cast(AIOKafkaProducer, None),
        topics=Topics("test."),
        stage="test.consume",
    )

    with pytest.raises(ConfigurationError) as raised:
        await asyncio.wait_for(loop.run(cast(AIOKafkaConsumer, consumer), asyncio.Event()), NEVER_S)

    assert raised.value.setting == "KAFKA_TOPIC_PREFIX"
    assert "consumer group" in raised.value.reason
    assert consumer.polls == 1


class OutboxConnection:
    """One unsent outbox row in slot 0."""

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        if "generate_series" in query:
            return [{"s": 0}]
        if "DISTINCT slot" in query:
            return [{"slot": 0}]
        return [{"id": 1, "topic": "t", "key": "k", "body": "{}", "event_type": "e", "size": 2}]

    async def execute(self, query: str, *args: Any) -> str:
        return ""

    def is_closed(self) -> bool:
        return False


class OnePool:
    def __init__(self) -> None:
        self.connection = OutboxConnection()
        self.released = 0

    async def acquire(self, timeout: float | None = None) -> OutboxConnection:  # noqa: ASYNC109 (asyncpg's signature)
        return self.connection

    async def release(self, connection: OutboxConnection) -> None:
        self.released += 1


class RefusedProducer:
    """A producer the brokers refuse to let write the topic."""

    def __init__(self) -> None:
        self.sends = 0

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[None]:
        self.sends += 1
        raise TopicAuthorizationFailedError()


async def test_a_send_refused_by_a_topic_acl_ends_the_relay_naming_the_setting() -> None:
    pool, producer = OnePool(), RefusedProducer()

    with pytest.raises(ConfigurationError) as raised:
        await asyncio.wait_for(
            run_relay(cast(asyncpg.Pool, pool), cast(AIOKafkaProducer, producer), asyncio.Event()),
            NEVER_S,
        )

    assert raised.value.setting == "KAFKA_TOPIC_PREFIX"
    assert producer.sends == 1
    assert pool.released == 1  # the slots' connection went back
