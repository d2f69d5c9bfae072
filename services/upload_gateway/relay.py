"""The outbox relay as a background task of the gateway process.

Uploads never wait for Kafka: they commit to the outbox, and this task publishes. Kafka is not
needed to start: the task connects, then makes sure the contract's topics exist, retrying both
with capped back-off for as long as it takes, while the gateway serves and the outbox fills.
Once connected, `run_relay` publishes each outbox slot in id order; a send that fails leaves
the rows for the next round, so the backlog drains in order once Kafka is back.

A refusal no retry can fix (a certificate, a SASL login, an ACL: `ConfigurationError`) is not
retried: the relay stops and keeps it as `problem`, which readiness reports with the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaProducer

from services.core.events import Topics
from services.core.kafka import ensure_topics, make_producer, start_client
from services.core.logging import get_logger
from services.core.misconfiguration import ConfigurationError
from services.core.outbox import run_relay
from services.core.settings import KafkaSettings

log = get_logger()


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: KafkaSettings,
        *,
        client_id: str = "upload-gateway",
        max_backoff_s: float = 10.0,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._client_id = client_id
        self._max_backoff_s = max_backoff_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probing: asyncio.Task[bool] | None = None
        # The last probe's answer; None before the first one ends.
        self._reachable: bool | None = None
        self.producer: AIOKafkaProducer | None = None
        # The setting Kafka (or PostgreSQL, for the outbox) refused; the relay has stopped.
        self.problem: ConfigurationError | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def close(self) -> None:
        self._stop.set()
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
        if self._task is not None:
            await self._task
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def probe(self, timeout_s: float) -> bool:
        """A real metadata round trip to the cluster (cached partitions would not prove much)."""
        if self.producer is None:
            return False
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout_s)
        except Exception:
            return False
        return True

    def kafka_state(self, timeout_s: float) -> str:
        """For readiness to report without waiting: the last probe's answer ("ok",
        "unavailable", or "connecting" before the first), and a new probe started in the
        background unless one is running; "misconfigured" once a setting was refused."""
        if self.problem is not None:
            return "misconfigured"
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._remember(timeout_s), name="kafka-probe")
        if self._reachable is None:
            return "connecting"
        return "ok" if self._reachable else "unavailable"

    async def _remember(self, timeout_s: float) -> bool:
        self._reachable = await self.probe(timeout_s)
        return self._reachable

    async def _retry(self, what: str, step: Callable[[], Awaitable[None]]) -> bool:
        """Runs `step` until it succeeds (True) or the relay is closed (False)."""
        backoff_s = 0.5
        while not self._stop.is_set():
            try:
                await step()
            except ConfigurationError:
                raise
            except Exception as error:
                log.warning(f"{what}_failed", error=type(error).__name__, retry_s=backoff_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
                continue
            return True
        return False

    async def _connect(self) -> None:
        producer = make_producer(self._settings, self._client_id)
        try:
            await start_client(producer, self._settings)
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer
        log.info("kafka_connected")

    async def _ensure_topics(self) -> None:
        await ensure_topics(self._settings, Topics(self._settings.topic_prefix), attempts=1)

    async def run(self) -> None:
        """Connects, makes sure of the topics, then relays until `close()`; returns early, with
        `problem` set, when a setting is refused. `start()` runs it in the background."""
        try:
            if not await self._retry("kafka_connect", self._connect):
                return
            if not await self._retry("kafka_topics", self._ensure_topics):
                return
            producer = self.producer
            if producer is None:  # `_connect` returned without one: never, but not for mypy
                raise RuntimeError("the relay connected without a producer")
            await run_relay(self._pool, producer, self._stop)
        except ConfigurationError as problem:
            # Uploads still commit to the outbox; readiness names the setting to correct.
            self.problem = problem
            log.error("outbox_relay_stopped", setting=problem.setting, reason=problem.reason)
