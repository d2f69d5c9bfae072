"""The shared consumer loop against the real broker: ordered handling, commits after the effect,
redelivery of what is not done, dead-lettering, rebalances and stopping."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from services.core.consumer import DONE, ConsumerLoop, Handled, Handler, RetryLater, Unusable
from services.core.events import Topics
from services.core.kafka import make_consumer, make_producer
from services.core.settings import KafkaSettings

STAGE = "test.consume"
Record = tuple[int, int]  # (partition, offset)


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool], *, timeout_s: float = 30.0, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def produce(
    kafka_settings: KafkaSettings,
    topic: str,
    *messages: tuple[int, bytes],
    headers: list[tuple[str, bytes]] | None = None,
) -> list[Record]:
    """(partition, value) messages, each keyed by its partition; where each one landed."""
    producer = make_producer(kafka_settings, "loop-test")
    await producer.start()
    try:
        landed = []
        for partition, value in messages:
            metadata = await producer.send_and_wait(
                topic,
                value=value,
                key=f"key-{partition}".encode(),
                partition=partition,
                headers=headers,
            )
            landed.append((metadata.partition, metadata.offset))
        return landed
    finally:
        await producer.stop()


class Committed:
    """The group's committed offsets, read from the broker."""

    def __init__(self, kafka_settings: KafkaSettings, group: str) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
        self._group = kafka_settings.topic_prefix + group  # as make_consumer names it

    async def __aenter__(self) -> Committed:
        await self._admin.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._admin.close()

    async def offsets(self) -> dict[int, int]:
        found = await self._admin.list_consumer_group_offsets(self._group)
        return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}


class Member:
    """One consumer of the group: a loop and its consumer, running until `stop` is set."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        topics: Topics,
        producer: AIOKafkaProducer,
        group: str,
        handler: Handler,
        **loop_options: Any,
    ) -> None:
        self.group = group
        self.stop = asyncio.Event()
        self.loop = ConsumerLoop(
            handler, producer=producer, topics=topics, stage=STAGE, **loop_options
        )
        self.consumer = make_consumer(
            kafka_settings,
            topics.accepted,
            group_id=group,
            client_id=f"loop-test-{uuid.uuid4().hex[:6]}",
            max_poll_records=50,
            listener=self.loop.listener,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        # `start()` returns once the group has assigned partitions: for a second member, only
        # after the first has gone through its revocation.
        await self.consumer.start()
        try:
            await self.loop.run(self.consumer, self.stop)
        finally:
            await self.consumer.stop()

    async def finish(self, timeout_s: float = 30.0) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout_s)


@asynccontextmanager
async def group_members(
    kafka_settings: KafkaSettings, topics: Topics
) -> AsyncIterator[Callable[..., Member]]:
    """Makes members of one group; stops them all (and their dead-letter producer) at the end."""
    group = f"loop-{uuid.uuid4().hex[:8]}"
    producer = make_producer(kafka_settings, "loop-test-dlq")
    await producer.start()
    members: list[Member] = []

    def member(handler: Handler, **loop_options: Any) -> Member:
        made = Member(kafka_settings, topics, producer, group, handler, **loop_options)
        members.append(made)
        return made

    try:
        yield member
    finally:
        try:
            for made in members:
                made.stop.set()
            await asyncio.gather(*(m.finish() for m in members if m.task is not None))
        finally:
            await producer.stop()


async def test_records_are_handled_in_order_and_committed_after_their_effect(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    landed = await produce(
        kafka_settings,
        topics.accepted,
        *[(p, f"{p}-{i}".encode()) for p in (0, 1) for i in range(5)],
    )
    assert landed == [(p, i) for p in (0, 1) for i in range(5)]
    failing: Record = (0, 2)
    recover = asyncio.Event()
    attempts: list[Record] = []
    effects: list[Record] = []
    committed_before_effect: list[tuple[Record, int]] = []

    async with AsyncExitStack() as stack:
        members = await stack.enter_async_context(group_members(kafka_settings, topics))
        committed: Committed | None = None

        async def handler(record: ConsumerRecord) -> Handled:
            key = (record.partition, record.offset)
            attempts.append(key)
            assert committed is not None
            offset = (await committed.offsets()).get(record.partition)
            if offset is not None and offset > record.offset:
                committed_before_effect.append((key, offset))
            if key == failing and not recover.is_set():
                return RetryLater("the database is down")
            effects.append(key)
            return DONE

        member = members(handler, retry_delay_s=0.05, poll_timeout_ms=200)
        committed = await stack.enter_async_context(Committed(kafka_settings, member.group))
        member.start()

        await wait_until(lambda: attempts.count(failing) >= 3, what="the failing record again")
        await wait_until(
            lambda: _committed_is(committed, {0: 2, 1: 5}), what="partition 1 committed"
        )
        # Nothing after the failing record was handled or committed on its partition, while the
        # other partition went on.
        assert [r for r in effects if r[0] == 0] == [(0, 0), (0, 1)]
        assert [r for r in effects if r[0] == 1] == [(1, i) for i in range(5)]
        assert (await committed.offsets())[0] == 2

        recover.set()
        await wait_until(lambda: _committed_is(committed, {0: 5, 1: 5}), what="all committed")
        await member.finish()

    assert [r for r in effects if r[0] == 0] == [(0, i) for i in range(5)]
    partition_0 = [offset for partition, offset in attempts if partition == 0]
    assert partition_0 == sorted(partition_0)  # in order, the failing record repeated in place
    assert partition_0.count(2) >= 4
    assert committed_before_effect == []


async def _committed_is(committed: Committed, expected: dict[int, int]) -> bool:
    offsets = await committed.offsets()
    return all(offsets.get(partition) == offset for partition, offset in expected.items())


async def test_an_unusable_record_is_dead_lettered_with_its_context_and_the_partition_moves_on(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    poison = b'{"learner": "Forename Surname", "uln": "1234567890"}'
    await produce(kafka_settings, topics.accepted, (2, b"good-0"))
    await produce(kafka_settings, topics.accepted, (2, poison), headers=[("trace", b"t-1")])
    await produce(kafka_settings, topics.accepted, (2, b"good-2"))
    effects: list[bytes] = []

    async def handler(record: ConsumerRecord) -> Handled:
        if record.value == poison:
            return Unusable("not a valid event: json_invalid")
        effects.append(record.value)
        return DONE

    with structlog.testing.capture_logs() as logs:
        async with group_members(kafka_settings, topics) as members:
            member = members(handler, poll_timeout_ms=200)
            member.start()
            async with Committed(kafka_settings, member.group) as committed:
                await wait_until(
                    lambda: _committed_is(committed, {2: 3}), what="partition moved on"
                )
            await member.finish()

    assert effects == [b"good-0", b"good-2"]
    dead = await read_all(kafka_settings, topics.dead_letter, count=1)
    assert len(dead) == 1
    assert dead[0].value == poison
    assert dead[0].key == b"key-2"
    assert dict(dead[0].headers) == {
        "trace": b"t-1",
        "dlq.source_topic": topics.accepted.encode(),
        "dlq.source_partition": b"2",
        "dlq.source_offset": b"1",
        "dlq.stage": STAGE.encode(),
        "dlq.error": b"not a valid event: json_invalid",
    }
    [logged] = [entry for entry in logs if entry["event"] == "message_dead_lettered"]
    assert logged["log_level"] == "warning"
    assert "Surname" not in repr(logs)


async def read_all(
    kafka_settings: KafkaSettings, topic: str, count: int, timeout_s: float = 20.0
) -> list[ConsumerRecord]:
    consumer = make_consumer(
        kafka_settings, topic, group_id=f"reader-{uuid.uuid4().hex[:8]}", client_id="reader"
    )
    await consumer.start()
    received: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(received) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(records)
    finally:
        await consumer.stop()
    return received


async def test_a_member_joining_triggers_the_listener_and_every_record_is_handled(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    per_partition = 8
    await produce(
        kafka_settings,
        topics.accepted,
        *[(p, f"{p}-{i}".encode()) for p in range(4) for i in range(per_partition)],
    )
    first_in_hand = asyncio.Event()
    release = asyncio.Event()
    effects: list[tuple[str, Record]] = []
    in_hand: list[Record] = []

    def handler_of(name: str) -> Handler:
        async def handler(record: ConsumerRecord) -> Handled:
            key = (record.partition, record.offset)
            if name == "first" and not in_hand:
                # The first member holds its first record until the rebalance has begun.
                in_hand.append(key)
                first_in_hand.set()
                await release.wait()
            effects.append((name, key))
            return DONE

        return handler

    with structlog.testing.capture_logs() as logs:
        async with group_members(kafka_settings, topics) as members:
            first = members(handler_of("first"), poll_timeout_ms=200, revoke_grace_s=8.0)
            first.start()
            await asyncio.wait_for(first_in_hand.wait(), 30)
            second = members(handler_of("second"), poll_timeout_ms=200)
            second.start()

            def revoking() -> bool:
                return any(e["event"] == "partitions_revoked" and e["in_flight"] for e in logs)

            await wait_until(revoking, what="the first member's revocation")
            release.set()  # the record in hand finishes during the revocation
            async with Committed(kafka_settings, first.group) as committed:
                await wait_until(
                    lambda: _committed_is(committed, dict.fromkeys(range(4), per_partition)),
                    what="every partition committed to its end",
                )
            await first.finish()
            await second.finish()

    handled = {key for _, key in effects}
    assert handled == {(p, i) for p in range(4) for i in range(per_partition)}
    # Finished and committed in the revocation: the next owner did not get it again.
    assert [key for _, key in effects].count(in_hand[0]) == 1
    assert any(name == "second" for name, _ in effects)
    assigned = [e for e in logs if e["event"] == "partitions_assigned"]
    assert len(assigned) >= 3  # the first member twice, the second once
    for name in ("first", "second"):
        for partition in range(4):
            offsets = [k[1] for n, k in effects if n == name and k[0] == partition]
            assert offsets == sorted(offsets)


async def test_a_record_in_hand_past_the_grace_is_abandoned_and_handled_again(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    await produce(kafka_settings, topics.accepted, *[(p, b"x") for p in range(4)])
    stuck = asyncio.Event()
    effects: list[Record] = []
    abandoned: list[Record] = []

    async def handler(record: ConsumerRecord) -> Handled:
        key = (record.partition, record.offset)
        if not stuck.is_set():
            stuck.set()
            try:
                await asyncio.Event().wait()  # never finishes on its own
            except asyncio.CancelledError:
                abandoned.append(key)
                raise
        effects.append(key)
        return DONE

    with structlog.testing.capture_logs() as logs:
        async with group_members(kafka_settings, topics) as members:
            first = members(handler, poll_timeout_ms=200, revoke_grace_s=0.2)
            first.start()
            await asyncio.wait_for(stuck.wait(), 30)
            members(handler, poll_timeout_ms=200).start()
            async with Committed(kafka_settings, first.group) as committed:
                await wait_until(
                    lambda: _committed_is(committed, dict.fromkeys(range(4), 1)),
                    what="every partition committed",
                )

    assert len(abandoned) == 1
    assert sorted(effects) == [(p, 0) for p in range(4)]  # the abandoned one, handled again
    assert any(e["event"] == "record_abandoned" for e in logs)


async def test_stop_during_a_batch_finishes_the_record_in_hand_commits_and_returns(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    await produce(kafka_settings, topics.accepted, *[(3, f"{i}".encode()) for i in range(10)])
    effects: list[int] = []
    member: Member | None = None

    async def handler(record: ConsumerRecord) -> Handled:
        assert member is not None
        if record.offset == 3:
            member.stop.set()  # what SIGTERM does, while this record is in hand
            await asyncio.sleep(0)
        effects.append(record.offset)
        return DONE

    async with group_members(kafka_settings, topics) as members:
        # A long poll: the loop must not wait for it to notice `stop`.
        member = members(handler, poll_timeout_ms=60_000)
        member.start()
        assert member.task is not None
        await asyncio.wait_for(asyncio.shield(member.task), 30)
        async with Committed(kafka_settings, member.group) as committed:
            assert await committed.offsets() == {3: 4}

    assert effects == [0, 1, 2, 3]


async def test_stop_while_polling_returns_without_waiting_for_the_poll(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    async def handler(record: ConsumerRecord) -> Handled:
        raise AssertionError("no records were published")

    async with group_members(kafka_settings, topics) as members:
        member = members(handler, poll_timeout_ms=60_000)
        await member.consumer.start()
        try:
            run = asyncio.create_task(member.loop.run(member.consumer, member.stop))
            await asyncio.sleep(0)  # let the loop start its poll
            started = time.monotonic()
            member.stop.set()
            await asyncio.wait_for(run, 10)
            assert time.monotonic() - started < 5
        finally:
            await member.consumer.stop()
