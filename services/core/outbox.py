"""Transactional outbox: events written with the change they report, relayed to Kafka after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.core.events import Event, Topics, topic_for
from services.core.kafka import configuration_problem
from services.core.logging import get_logger
from services.core.metrics import (
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    OUTBOX_PUBLISHED,
    OUTBOX_RELAY_FAILURES,
    PIPELINE_STEP,
)
from services.core.misconfiguration import ConfigurationError
from services.core.wakeups import OUTBOX_WRITTEN, Wakeups, announce

log = get_logger()


async def enqueue(connection: asyncpg.Connection, topics: Topics, *events: Event) -> None:
    """Call inside the transaction that makes the change the events report."""
    await enqueue_many(connection, topics, events)


async def enqueue_many(
    connection: asyncpg.Connection, topics: Topics, events: Iterable[Event]
) -> None:
    rows = []
    for event in events:
        topic, key = topic_for(event, topics)
        # Every concrete event declares its `event_type` (the base model does not).
        event_type = event.model_dump(include={"event_type"})["event_type"]
        rows.append((topic, key, event_type, event.model_dump_json()))
    if rows:
        # One statement for the lot (a batch of claims writes two events each); the ids follow
        # the events' order, which is the order each key's events are relayed in.
        await connection.execute(
            "INSERT INTO outbox (topic, key, event_type, payload)"
            " SELECT topic, key, event_type, payload"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY"
            " AS event(topic, key, event_type, payload, position) ORDER BY position",
            *(list(column) for column in zip(*rows, strict=True)),
        )
        await announce_written(connection)


async def announce_written(connection: asyncpg.Connection) -> None:
    """Wakes the relays at the commit of the transaction that wrote outbox rows; every writer
    of the outbox calls it (`enqueue_many` does)."""
    await announce(connection, OUTBOX_WRITTEN)


# The schema's generated `outbox.slot` column has this many values (migration 0007).
OUTBOX_SLOTS = 16
# A relay round sends at most about this many bytes of payload per slot.
BATCH_BYTES = 4 * 1024 * 1024
# Advisory-lock namespace of the slots (any constant: the same in every process).
_SLOT_LOCKS = 7_300_211


class Relay:
    """Publishes the outbox rows of the slots this relay holds, each slot in id order.

    A slot is held with a session advisory lock on a connection kept for the relay's life, so
    exactly one relay publishes each slot (per-key order, whatever the number of processes) and
    no transaction or row lock is held while Kafka is sent to. A relay that dies loses its
    connection and with it its slots, which the others take on their next round. Rows sent but
    not yet marked are sent again after such a crash: delivery is at least once, and consumers
    deduplicate on `event_id`.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        batch_size: int = 500,
        batch_bytes: int = BATCH_BYTES,
        round_bytes: int = 2 * BATCH_BYTES,
    ):
        self._pool = pool
        self._producer = producer
        self._batch_size = batch_size
        self._batch_bytes = batch_bytes
        self._round_bytes = round_bytes
        self._connection: asyncpg.Connection | None = None
        self._slots: list[int] = []

    @property
    def slots(self) -> list[int]:
        return list(self._slots)

    async def relay_once(self) -> int:
        """One round: takes the free slots, publishes a batch of each held slot; returns how
        many rows were published."""
        connection = await self._connect()
        try:
            taken = await connection.fetch(
                "SELECT s FROM generate_series(0, $1::int - 1) AS s"
                " WHERE NOT s = ANY($2::int[]) AND pg_try_advisory_lock($3, s)",
                OUTBOX_SLOTS,
                self._slots,
                _SLOT_LOCKS,
            )
            if taken:
                self._slots = sorted({*self._slots, *(row["s"] for row in taken)})
                log.info("outbox_slots_taken", slots=self._slots)
            sent = await self._publish(connection)
        except BaseException:
            # Whatever failed (the database, or Kafka for this process only), the slots go back
            # so that a relay that can publish takes them; this one may take them again later.
            await self.close()
            raise
        return sent

    async def _publish(self, connection: asyncpg.Connection) -> int:
        """A batch of every held slot, each sent in id order, all sent before any is awaited:
        a slot holding a big upload's accepted events does not keep a small upload's event in
        another slot waiting for their acknowledgements. The round holds at most
        `round_bytes` of payload (every slot's first row goes all the same)."""
        budget = self._round_bytes
        ids: list[int] = []
        futures: list[asyncio.Future[Any]] = []
        # One look at which held slots have anything to send, rather than a query per slot:
        # on a busy database sixteen queries made a round, and each small upload's event,
        # wait a second.
        waiting = await connection.fetch(
            "SELECT DISTINCT slot FROM outbox WHERE sent_at IS NULL AND slot = ANY($1::int[])"
            " ORDER BY slot",
            self._slots,
        )
        try:
            for slot in (row["slot"] for row in waiting):
                rows = await self._batch(connection, slot, min(self._batch_bytes, max(budget, 1)))
                for row in rows:
                    budget -= row["size"]
                    ids.append(row["id"])
                    # The idempotent producer keeps the order of sends within a partition.
                    futures.append(
                        await self._producer.send(
                            row["topic"],
                            value=row["body"].encode(),
                            key=row["key"].encode(),
                            headers=[("event_type", row["event_type"].encode())],
                        )
                    )
            await asyncio.gather(*futures)
        except BaseException:
            # Nothing of the round is marked: what was sent is sent again (consumers
            # deduplicate on `event_id`); the sends still in flight are not waited for.
            for future in futures:
                future.add_done_callback(_retrieve)
            raise
        if not ids:
            return 0
        waits = await connection.fetch(
            "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])"
            " RETURNING extract(epoch FROM clock_timestamp() - created_at)::float8 AS waited",
            ids,
        )
        OUTBOX_PUBLISHED.inc(len(ids))
        # Each row's wait from its transaction to Kafka's acknowledgement (the wake-up, the
        # round and the send), by the database's clock.
        step = PIPELINE_STEP.labels("outbox_relay")
        for row in waits:
            step.observe(row["waited"])
        return len(ids)

    async def _batch(
        self, connection: asyncpg.Connection, slot: int, batch_bytes: int
    ) -> list[asyncpg.Record]:
        # The payloads sent as they are stored: an `achievements.accepted` event holds up to a
        # thousand achievements (130 KB), and a batch of them parsed into Python objects took
        # hundreds of MB in whichever process relayed it. A batch stops before `batch_bytes`
        # (its first row always goes).
        rows: list[asyncpg.Record] = await connection.fetch(
            """
            SELECT id, topic, key, body, event_type, size FROM (
                SELECT id, topic, key, body, event_type, octet_length(body) AS size,
                       sum(octet_length(body)) OVER (ORDER BY id) - octet_length(body) AS before
                FROM (SELECT id, topic, key, payload AS body, event_type
                      FROM outbox WHERE sent_at IS NULL AND slot = $1
                      ORDER BY id LIMIT $2) unsent) sized
            WHERE before < $3
            ORDER BY id
            """,
            slot,
            self._batch_size,
            batch_bytes,
        )
        return rows

    async def _connect(self) -> asyncpg.Connection:
        if self._connection is None:
            self._connection = await self._pool.acquire(timeout=30)
            self._slots = []
        return self._connection

    async def close(self) -> None:
        """Hands the slots back (at once, rather than when the connection ends)."""
        connection, self._connection, self._slots = self._connection, None, []
        if connection is None:
            return
        try:
            if not connection.is_closed():
                await connection.execute("SELECT pg_advisory_unlock_all()")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            pass  # a broken connection released its locks already
        finally:
            await self._pool.release(connection)


async def relay_once(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    batch_size: int = 500,
    batch_bytes: int = BATCH_BYTES,
) -> int:
    """One round of a relay that holds every free slot, then hands them back."""
    relay = Relay(pool, producer, batch_size, batch_bytes)
    try:
        return await relay.relay_once()
    finally:
        await relay.close()


async def run_relay(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    stop: asyncio.Event,
    idle_sleep_s: float = 2.0,
) -> None:
    """Relays until `stop` is set. A send that fails leaves the rows unsent for the next round;
    a refusal no round can get past (a setting: `ConfigurationError`) ends it.

    An idle relay sleeps until a writer's commit notifies it (`announce_written`), or for
    `idle_sleep_s` at most: the poll that remains for rows written while the listening
    connection was down, and for slots another relay let go."""
    relay = Relay(pool, producer)
    wakeups = Wakeups(pool, OUTBOX_WRITTEN)
    try:
        while not stop.is_set():
            mark = wakeups.mark(OUTBOX_WRITTEN)
            try:
                sent = await relay.relay_once()
            except ConfigurationError:
                raise  # a setting is wrong: every later round would fail the same way
            except KafkaError as error:
                problem = configuration_problem(error)  # no ACL for a topic of the outbox
                if problem is not None:
                    raise problem from None
                _relay_failed(error)
                sent = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1)
            except Exception as error:
                _relay_failed(error)
                sent = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1)
            if sent == 0:
                await wakeups.wait(OUTBOX_WRITTEN, mark, idle_sleep_s, stop)
    finally:
        await wakeups.close()
        await relay.close()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a send of a failed round: sent again in the next one


def _relay_failed(error: Exception) -> None:
    OUTBOX_RELAY_FAILURES.inc()
    log.warning("outbox_relay_failed", error=type(error).__name__)


async def measure_backlog(connection: asyncpg.Connection) -> tuple[int, float]:
    """Unsent events and the age of the oldest, in seconds; also sets the outbox gauges."""
    row = await connection.fetchrow(
        "SELECT count(*) AS backlog,"
        " coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_s"
        " FROM outbox WHERE sent_at IS NULL"
    )
    backlog, oldest_s = (int(row["backlog"]), float(row["oldest_s"])) if row else (0, 0.0)
    OUTBOX_BACKLOG.set(backlog)
    OUTBOX_OLDEST_AGE.set(oldest_s)
    return backlog, oldest_s
