"""KAFKA_CREATE_TOPICS=false: the processes leave the topics to their owner (Strimzi's Topic
Operator in production) and never reach for an admin client."""

from __future__ import annotations

import socket

import pytest
from aiokafka.errors import KafkaConnectionError

from services.core.events import Topics
from services.core.kafka import ensure_topics
from services.core.settings import KafkaSettings


@pytest.fixture(autouse=True)
def local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # The local stack's plain connection; only the topics setting varies here.
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")
    monkeypatch.delenv("KAFKA_CREATE_TOPICS", raising=False)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().create_topics is True
    monkeypatch.setenv("KAFKA_CREATE_TOPICS", "false")
    assert KafkaSettings().create_topics is False


async def test_topics_are_not_created_when_the_setting_is_off() -> None:
    # No broker answers there: creating topics would fail after its one attempt.
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}", create_topics=False)
    await ensure_topics(settings, Topics(), attempts=1)


async def test_topics_are_created_when_the_setting_is_on() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}")
    with pytest.raises(KafkaConnectionError):
        await ensure_topics(settings, Topics(), attempts=1)
