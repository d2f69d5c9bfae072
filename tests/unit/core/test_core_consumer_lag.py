"""Consumer lag from outside the group, computed from offsets alone: what a group has still to
read on each partition, whether it committed, fell behind the log's start or never ran."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.core.consumer_lag import (
    PartitionLag,
    WatchedGroup,
    committed_offsets,
    group_lags,
    partition_lag,
)

UPLOADS = "achievements.uploads.v1"
ACCEPTED = "achievements.accepted.v1"
VALIDATOR = WatchedGroup("validator", (UPLOADS,))


def test_the_lag_is_the_end_offset_minus_the_committed_one() -> None:
    # Committed 7 (the next record it reads is offset 7), the log ends before offset 12.
    assert partition_lag(committed=7, log_start=0, log_end=12) == 5
    assert partition_lag(committed=12, log_start=0, log_end=12) == 0


def test_a_group_that_committed_nothing_has_the_whole_log_to_read() -> None:
    # Its consumers start at the earliest record kept: offsets 3 to 9.
    assert partition_lag(committed=None, log_start=3, log_end=10) == 7


def test_an_offset_before_the_logs_start_counts_from_the_start() -> None:
    # Retention deleted offsets 0 to 99; the consumers reset to 100.
    assert partition_lag(committed=40, log_start=100, log_end=130) == 30


def test_an_offset_past_the_end_is_nothing_to_read() -> None:
    assert partition_lag(committed=50, log_start=0, log_end=20) == 0


def test_every_partition_of_the_groups_topics_gets_its_lag_in_order() -> None:
    p0, p1, p2 = (TopicPartition(UPLOADS, n) for n in range(3))
    other = TopicPartition(ACCEPTED, 0)
    lags = group_lags(
        VALIDATOR,
        committed={p2: 4, p0: 10},  # nothing committed on partition 1
        log_starts={p0: 0, p1: 2, p2: 0, other: 0},
        log_ends={p2: 4, other: 50, p1: 9, p0: 15},
    )
    assert lags == [
        PartitionLag("validator", UPLOADS, 0, 5),
        PartitionLag("validator", UPLOADS, 1, 7),
        PartitionLag("validator", UPLOADS, 2, 0),
    ]


def test_aiokafkas_answer_becomes_offsets_with_none_for_nothing_committed() -> None:
    p0, p1 = TopicPartition(UPLOADS, 0), TopicPartition(UPLOADS, 1)
    answer = {p0: OffsetAndMetadata(17, ""), p1: OffsetAndMetadata(-1, "")}
    assert committed_offsets(answer) == {p0: 17, p1: None}
