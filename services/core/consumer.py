"""The consumer loop every Kafka consumer of the pipeline runs; a service supplies its handler.

The loop polls, hands each partition's records to the handler one at a time and in order, and
commits a partition's offset once the records before it are done: their effect is durable, or
they are on the dead-letter topic. The handler answers each record with one of:

- `DONE`: the record's effect is durable; its offset may be committed.
- `RetryLater(reason)`: not done, through no fault of the record (the database is down). The rest
  of the partition's batch waits: the partition is rewound to the record and paused for
  `delay_s` (default: the loop's `retry_delay_s`), then the record comes again, no restart
  needed. The other partitions go on meanwhile.
- `Unusable(error)`: the record can never be processed, however often it comes. It goes to the
  dead-letter topic with its original bytes, key and headers plus headers naming its topic,
  partition, offset, the loop's stage and `error`, and the partition moves on. `error` must not
  quote the payload, which may hold personal data.

A handler that raises is a bug or an outage it did not expect: the loop commits what was done
before the record and re-raises; the record comes again when the service restarts. A poll the
brokers refuse for good (no ACL for the topic or the group) is raised as `ConfigurationError`
naming the setting (services/core/kafka.py `configuration_problem`), never polled again.

The handler runs in a task of its own, inside structlog context naming the record's topic,
partition and offset (`kafka_topic`, `kafka_partition`, `kafka_offset`); whatever it binds ends
with the record. A handler should return within `max_poll_interval_ms`: long work belongs to a
job the handler plans (durably) and returns from.

Rebalances: `loop.listener` is the consumer's `ConsumerRebalanceListener` (pass it to
`make_consumer`). When partitions are revoked it lets the record in hand finish, for up to
`revoke_grace_s` (keep it under the group's rebalance timeout, which is the session timeout),
then cancels it: a cancelled record is not committed and comes again to the partition's next
owner, whose effects are idempotent. It then commits what was done and drops the rest of the
batch in hand. Offsets that cannot be committed after a rebalance (`CommitFailedError`) are
logged and skipped: those records come again.

Stopping: once `stop` is set, the record in hand finishes, what was done is committed and `run`
returns; a poll in progress is abandoned at once.

Metrics (services/core/metrics.py, labelled by the loop's stage): records handled by outcome,
dead letters, partitions assigned, and each owned partition's lag (high watermark minus the
offset after the last record done), measured every second beside the loop. `consumers_ready()`
is the process's readiness: every running loop has joined its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.core.events import Topics
from services.core.kafka import configuration_problem, send_dead_letter
from services.core.logging import get_logger
from services.core.metrics import CONSUMER_ASSIGNED, CONSUMER_LAG, CONSUMER_RECORDS, DEAD_LETTERS

log = get_logger()

RECORD_CONTEXT: Final = ("kafka_topic", "kafka_partition", "kafka_offset")
# The last commit, when the loop ends: bounded, so a broker that is gone cannot hold a shutdown.
FINAL_COMMIT_TIMEOUT_S: Final = 10.0
# How often the lag gauges are brought up to date (one position read per assigned partition).
LAG_INTERVAL_S: Final = 1.0
# The loops running in this process, for readiness (`consumers_ready`).
_RUNNING: weakref.WeakSet[ConsumerLoop] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class Done:
    """The record's effect is durable: its offset may be committed."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Not done, through no fault of the record: it comes again after `delay_s`."""

    reason: str
    delay_s: float | None = None  # None: the loop's `retry_delay_s`


@dataclass(frozen=True, slots=True)
class Unusable:
    """The record can never be processed: dead-letter it. `error` never quotes the payload."""

    error: str


Handled: TypeAlias = Done | RetryLater | Unusable
Handler: TypeAlias = Callable[[ConsumerRecord], Awaitable[Handled]]
DONE: Final = Done()


class ConsumerLoop:
    """Polls a consumer and hands its records to `handler`; see the module's docstring.

    ```
    loop = ConsumerLoop(handler, producer=producer, topics=topics, stage="bridge.consume")
    consumer = make_consumer(kafka, topics.accepted, group_id=..., client_id=...,
                             listener=loop.listener)
    await start_client(consumer, kafka)
    try:
        await loop.run(consumer, stop)
    finally:
        await consumer.stop()
    ```
    """

    def __init__(
        self,
        handler: Handler,
        *,
        producer: AIOKafkaProducer,
        topics: Topics,
        stage: str,
        poll_timeout_ms: int = 1_000,
        retry_delay_s: float = 1.0,
        revoke_grace_s: float = 5.0,
    ) -> None:
        if poll_timeout_ms < 1 or retry_delay_s < 0 or revoke_grace_s < 0:
            raise ValueError("poll_timeout_ms must be positive, the delays not negative")
        self._handler = handler
        self._producer = producer
        self._topics = topics
        self._stage = stage
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_delay_s = retry_delay_s
        self._revoke_grace_s = revoke_grace_s
        self.listener: ConsumerRebalanceListener = _Listener(self)
        self._consumer: AIOKafkaConsumer | None = None
        # Bumped when partitions are revoked: a batch polled before is stale.
        self._epoch = 0
        self._in_flight: asyncio.Task[Handled] | None = None
        # Per partition, the offset to commit next: every record before it is done.
        self._pending: dict[TopicPartition, int] = {}
        # Partitions backing off after `RetryLater`, and when they resume (time.monotonic()).
        self._paused: dict[TopicPartition, float] = {}
        # Set once the group has given this loop its first assignment (possibly empty).
        self.joined = False
        self._lag_partitions: set[TopicPartition] = set()
        # Per partition, the offset after the last record done (committed or not): the lag
        # counts the records in hand and those fetched but not yet handled.
        self._done_up_to: dict[TopicPartition, int] = {}

    async def run(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set. `consumer` is started and subscribed with
        `self.listener` (`make_consumer(..., listener=loop.listener)`)."""
        if self._consumer is not None:
            raise RuntimeError("the loop is already running")
        self._consumer = consumer
        _RUNNING.add(self)
        stopped = asyncio.create_task(stop.wait())
        # Measured beside the loop, so the gauges stay current while a record is in hand.
        lag = asyncio.create_task(self._lag_loop(consumer), name=f"{self._stage}-lag")
        try:
            while not stop.is_set():
                self._resume_due(consumer)
                epoch = self._epoch
                poll = asyncio.ensure_future(consumer.getmany(timeout_ms=self._poll_timeout()))
                await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not poll.done():
                    # Records it would have returned are not committed: they come again.
                    poll.cancel()
                    await asyncio.wait({poll})
                    _retrieve(poll)
                    break
                batches = _polled(poll)
                for partition, records in batches.items():
                    if stop.is_set():
                        break
                    if self._epoch != epoch:
                        self._rewind(consumer, partition, records[0].offset)
                        continue
                    await self._handle_partition(consumer, partition, records, epoch, stop)
        finally:
            _RUNNING.discard(self)
            lag.cancel()
            await asyncio.wait({lag})
            self._forget_lag(set(self._lag_partitions))
            stopped.cancel()
            try:
                async with asyncio.timeout(FINAL_COMMIT_TIMEOUT_S):
                    await self._commit(consumer, list(self._pending))
            except (KafkaError, TimeoutError) as error:
                log.warning("offset_commit_failed", error=type(error).__name__)
            self._consumer = None

    async def _handle_partition(
        self,
        consumer: AIOKafkaConsumer,
        partition: TopicPartition,
        records: list[ConsumerRecord],
        epoch: int,
        stop: asyncio.Event,
    ) -> None:
        # Until a record of the partition is done here, its lag counts from the first one fetched.
        self._done_up_to.setdefault(partition, records[0].offset)
        for record in records:
            if stop.is_set():
                break
            if self._epoch != epoch:
                self._rewind(consumer, partition, record.offset)
                break
            outcome = await self._process(record)
            if outcome is None:  # abandoned in a rebalance
                self._rewind(consumer, partition, record.offset)
                break
            if isinstance(outcome, RetryLater):
                self._back_off(consumer, partition, record.offset, outcome, epoch)
                break
        await self._commit(consumer, [partition])

    async def _process(self, record: ConsumerRecord) -> Handled | None:
        """The record's outcome once it is done (or due again), or None if it was abandoned."""
        task = asyncio.create_task(
            self._handle(record), name=f"{record.topic}/{record.partition}@{record.offset}"
        )
        self._in_flight = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait({task})
            _retrieve(task)
            raise
        finally:
            self._in_flight = None
        if task.cancelled():
            return None
        return task.result()

    async def _handle(self, record: ConsumerRecord) -> Handled:
        """Runs in the record's own task; `_pending` moves past the record once it is done."""
        structlog.contextvars.bind_contextvars(
            kafka_topic=record.topic, kafka_partition=record.partition, kafka_offset=record.offset
        )
        try:
            outcome = await self._handler(record)
            if isinstance(outcome, Unusable):
                try:
                    await send_dead_letter(
                        self._producer, self._topics, record, stage=self._stage, error=outcome.error
                    )
                except KafkaError as error:
                    problem = configuration_problem(error)  # no ACL for the dead-letter topic
                    if problem is not None:
                        raise problem from None
                    outcome = RetryLater(f"dead letter not sent: {type(error).__name__}")
                else:
                    DEAD_LETTERS.labels(self._stage, record.topic).inc()
                    log.warning("message_dead_lettered", stage=self._stage, error=outcome.error)
            CONSUMER_RECORDS.labels(self._stage, record.topic, _outcome_label(outcome)).inc()
            if isinstance(outcome, RetryLater):
                log.warning(
                    "record_retry_later", reason=outcome.reason, delay_s=self._delay_s(outcome)
                )
            else:
                partition = TopicPartition(record.topic, record.partition)
                self._pending[partition] = self._done_up_to[partition] = record.offset + 1
            return outcome
        finally:
            structlog.contextvars.unbind_contextvars(*RECORD_CONTEXT)

    def _back_off(
        self,
        consumer: AIOKafkaConsumer,
        partition: TopicPartition,
        offset: int,
        outcome: RetryLater,
        epoch: int,
    ) -> None:
        """The record at `offset` comes again once the partition resumes."""
        if self._epoch != epoch or partition not in consumer.assignment():
            return  # revoked meanwhile: its next owner starts at the record
        consumer.seek(partition, offset)
        consumer.pause(partition)
        self._paused[partition] = time.monotonic() + self._delay_s(outcome)

    def _delay_s(self, outcome: RetryLater) -> float:
        return self._retry_delay_s if outcome.delay_s is None else outcome.delay_s

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        due = [partition for partition, at in self._paused.items() if at <= now]
        for partition in due:
            del self._paused[partition]
        assigned = consumer.assignment()
        consumer.resume(*(partition for partition in due if partition in assigned))

    def _poll_timeout(self) -> int:
        """Milliseconds until the next poll returns empty-handed: sooner if a partition is due."""
        if not self._paused:
            return self._poll_timeout_ms
        until_ms = math.ceil((min(self._paused.values()) - time.monotonic()) * 1000)
        return max(1, min(self._poll_timeout_ms, until_ms))

    async def _lag_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                await self._measure_lag(consumer)
            except Exception as error:  # a gauge is never worth the consumer
                log.debug("consumer_lag_unmeasured", error=type(error).__name__)
            await asyncio.sleep(LAG_INTERVAL_S)

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Per assigned partition: the high watermark minus the offset after the last record
        done (before any is fetched here: the consumer's position). A partition whose watermark
        is not known yet is left out."""
        assigned = set(consumer.assignment())
        self._forget_lag(self._lag_partitions - assigned)
        for partition in assigned:
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue
            position = self._done_up_to.get(partition)
            if position is None:
                try:
                    async with asyncio.timeout(LAG_INTERVAL_S):
                        position = await consumer.position(partition)
                except (IllegalStateError, KafkaError, TimeoutError):
                    continue
            CONSUMER_LAG.labels(self._stage, partition.topic, str(partition.partition)).set(
                max(0, highwater - position)
            )
            self._lag_partitions.add(partition)

    def _forget_lag(self, partitions: set[TopicPartition]) -> None:
        """A partition no longer ours is reported by its new owner, not by this process."""
        for partition in partitions:
            self._lag_partitions.discard(partition)
            self._done_up_to.pop(partition, None)
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self._stage, partition.topic, str(partition.partition))

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int) -> None:
        """Records from `offset` on were polled and not handled: fetch them again."""
        # No longer ours: the next owner starts at the committed offset.
        if partition in consumer.assignment():
            with contextlib.suppress(IllegalStateError):
                consumer.seek(partition, offset)

    async def _commit(
        self, consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
    ) -> None:
        offsets = {p: self._pending.pop(p) for p in list(partitions) if p in self._pending}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced: these records come again, and their effects are idempotent.
            log.warning(
                "offset_commit_failed", error=type(error).__name__, partitions=_names(offsets)
            )

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        self._epoch += 1
        self._forget_lag(revoked)
        if not revoked:
            return  # the first join
        task = self._in_flight
        log.info("partitions_revoked", partitions=_names(revoked), in_flight=task is not None)
        if task is not None and not task.done():
            done, _ = await asyncio.wait({task}, timeout=self._revoke_grace_s)
            if not done:
                log.warning("record_abandoned", task=task.get_name(), grace_s=self._revoke_grace_s)
                task.cancel()
                await asyncio.wait({task}, timeout=self._revoke_grace_s)
        if self._consumer is not None:
            await self._commit(self._consumer, revoked)

    def _assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=_names(assigned))
        self.joined = True
        CONSUMER_ASSIGNED.labels(self._stage).set(len(assigned))
        # Partitions still backing off stay paused if they come back.
        for partition in [p for p in self._paused if p not in assigned]:
            del self._paused[partition]
        if self._consumer is not None and self._paused:
            self._consumer.pause(*self._paused)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._loop._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._loop._assigned(set(assigned))


def consumers_ready() -> bool:
    """True when this process runs at least one consumer loop and every one has joined its
    group (a member given no partition is ready too: the group has more members than
    partitions)."""
    loops = list(_RUNNING)
    return bool(loops) and all(loop.joined for loop in loops)


def _outcome_label(outcome: Handled) -> str:
    if isinstance(outcome, Unusable):
        return "dead_lettered"
    if isinstance(outcome, RetryLater):
        return "retry_later"
    return "done"


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{p.topic}/{p.partition}" for p in partitions)


def _polled(
    poll: asyncio.Future[Mapping[TopicPartition, list[ConsumerRecord]]],
) -> Mapping[TopicPartition, list[ConsumerRecord]]:
    """A finished poll's records; a refusal no retry can fix as `ConfigurationError`."""
    try:
        return poll.result()
    except KafkaError as error:
        problem = configuration_problem(error)
        if problem is not None:
            raise problem from None
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Marks a finished task's outcome as seen (it is of no more use)."""
    if not task.cancelled():
        task.exception()
