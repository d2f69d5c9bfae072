"""The outbox relay as a background task of the gateway process.

Uploads never wait for Kafka: they commit to the outbox, and this task publishes. When Kafka is
unreachable at start the task keeps retrying (with back-off) instead of failing the process, so
the gateway keeps accepting files and the backlog drains once Kafka is back.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from aiokafka import AIOKafkaProducer

from services.core.kafka import make_producer
from services.core.logging import get_logger
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
        self.producer: AIOKafkaProducer | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def close(self) -> None:
        self._stop.set()
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

    async def _connect(self) -> AIOKafkaProducer | None:
        backoff_s = 0.5
        while not self._stop.is_set():
            producer = make_producer(self._settings, self._client_id)
            try:
                await producer.start()
            except Exception as error:
                log.warning("kafka_connect_failed", error=type(error).__name__, retry_s=backoff_s)
                await producer.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), backoff_s)
                backoff_s = min(backoff_s * 2, self._max_backoff_s)
                continue
            log.info("kafka_connected")
            return producer
        return None

    async def _run(self) -> None:
        self.producer = await self._connect()
        if self.producer is not None:
            await run_relay(self._pool, self.producer, self._stop)
