"""Consumer lag measured from outside the groups: what each group has still to read, from its
committed offsets and the partitions' end offsets, read without joining any group.

A consumer's own lag gauge (services/core/consumer.py) vanishes with the consumer: stop every
validator and nothing says that uploads pile up. The committed offsets stay on the brokers, so a
process outside the group (the operations exporter, services/core/ops_exporter.py) can measure
the lag whether the group's members run or not.

What the reader asks of the brokers, and the ACLs it needs (deploy/topology.yaml, principal
`achievements-lag-exporter`): the topics' metadata and their end and start offsets (Metadata
and ListOffsets: Describe on each topic), the group's coordinator and committed offsets
(FindCoordinator and OffsetFetch: Describe on the group). It reads no record, commits nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.core.kafka import configuration_problem, connection_options, start_client
from services.core.logging import get_logger
from services.core.settings import KafkaSettings

log = get_logger()

# aiokafka's answer for a partition the group has committed nothing on.
NO_OFFSET: Final = -1


@dataclass(frozen=True, slots=True)
class WatchedGroup:
    """A consumer group as its members join it (`KAFKA_TOPIC_PREFIX` included), and the topics
    it consumes (prefixed too)."""

    group_id: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    # Records the group has still to read on the partition.
    lag: int


def partition_lag(committed: int | None, log_start: int, log_end: int) -> int:
    """Records a group has still to read on one partition.

    `committed` is the offset of the next record the group will read (None: it committed none).
    The group's consumers start at the earliest record (`auto_offset_reset="earliest"`) when
    they have no offset, or when theirs points before the first record kept (retention deleted
    the rest), so the lag then counts from the log's start. Never negative: a committed offset
    past the end (a topic deleted and made again) is nothing to read."""
    start = log_start if committed is None or committed < log_start else committed
    return max(0, log_end - start)


def group_lags(
    group: WatchedGroup,
    committed: Mapping[TopicPartition, int | None],
    log_starts: Mapping[TopicPartition, int],
    log_ends: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """The lag of `group` on every partition of its topics that has an end offset, in topic and
    partition order. A partition missing from `committed` has no committed offset."""
    return [
        PartitionLag(
            group=group.group_id,
            topic=partition.topic,
            partition=partition.partition,
            lag=partition_lag(
                committed.get(partition), log_starts.get(partition, 0), log_ends[partition]
            ),
        )
        for partition in sorted(log_ends, key=lambda tp: (tp.topic, tp.partition))
        if partition.topic in group.topics
    ]


def committed_offsets(answer: Mapping[TopicPartition, object]) -> dict[TopicPartition, int | None]:
    """aiokafka's `list_consumer_group_offsets` answer as offsets, None where nothing was
    committed (offset -1)."""
    offsets: dict[TopicPartition, int | None] = {}
    for partition, meta in answer.items():
        offset = int(getattr(meta, "offset", NO_OFFSET))
        offsets[partition] = None if offset == NO_OFFSET else offset
    return offsets


class ConsumerLagReader:
    """Reads the lag of `groups` from the brokers: an admin client for the committed offsets and
    a consumer in no group for the end offsets, both started at the first read. A read that
    fails (or is cancelled by its caller's timeout) leaves them to be made again by the next."""

    def __init__(
        self,
        settings: KafkaSettings,
        groups: Sequence[WatchedGroup],
        client_id: str = "ops-exporter",
    ) -> None:
        self._settings = settings
        self._groups = list(groups)
        self._client_id = client_id
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._broken = False
        self._missing_topics_told: set[str] = set()

    @property
    def topics(self) -> list[str]:
        return sorted({topic for group in self._groups for topic in group.topics})

    async def read(self) -> list[PartitionLag]:
        if self._broken:
            await self.close()
        try:
            admin, consumer = await self._started()
            partitions = await self._partitions(consumer, self.topics)
            if not partitions:
                return []
            log_ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            log_starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
            lags: list[PartitionLag] = []
            for group in self._groups:
                own = [p for p in partitions if p.topic in group.topics]
                if not own:
                    continue
                answer = await admin.list_consumer_group_offsets(group.group_id, partitions=own)
                lags += group_lags(group, committed_offsets(answer), log_starts, log_ends)
            return lags
        except BaseException as error:
            # Half-done requests may be left in the clients: made again at the next read.
            self._broken = True
            # A refusal no retry fixes (an ACL, a login) names its setting, as at every edge.
            problem = configuration_problem(error)
            if problem is not None:
                raise problem from None
            raise

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        self._broken = False
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def _started(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        options = connection_options(self._settings)
        if self._admin is None:
            admin = AIOKafkaAdminClient(**options, client_id=f"{self._client_id}-admin")
            try:
                await start_client(admin, self._settings)
            except BaseException:
                with contextlib.suppress(Exception):  # half started: its connections closed
                    await admin.close()
                raise
            self._admin = admin
        if self._consumer is None:
            # No group: it joins none, commits nothing and only asks for offsets. The isolation
            # level is the pipeline's consumers' own, so the end is where they would stop.
            consumer = AIOKafkaConsumer(
                **options,
                group_id=None,
                client_id=self._client_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            try:
                await start_client(consumer, self._settings)
            except BaseException:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._consumer = consumer
        return self._admin, self._consumer

    async def _partitions(
        self, consumer: AIOKafkaConsumer, topics: Iterable[str]
    ) -> list[TopicPartition]:
        # The metadata of every topic the user may describe, as `watch` reads it: asking for
        # named topics could create them on a broker that creates topics on demand.
        cluster = await consumer._client.fetch_all_metadata()
        found: list[TopicPartition] = []
        for topic in topics:
            numbers = cluster.partitions_for_topic(topic)
            if not numbers:
                if topic not in self._missing_topics_told:
                    self._missing_topics_told.add(topic)
                    log.warning("consumer_lag_topic_missing", topic=topic)
                continue
            self._missing_topics_told.discard(topic)
            found += [TopicPartition(topic, number) for number in sorted(numbers)]
        return found
