"""A loop waiting on `Wakeups` is woken by a notification that came after its mark, even one
that came while it looked for work; it polls when nothing comes, and when it cannot listen.

The pool and connection are small in-memory stand-ins that hand a test the listener callbacks
asyncpg would call; that PostgreSQL delivers a notification at commit and not on rollback is
tested against the real server (tests/integration/test_wakeups.py). No test waits for a
timeout: the waits that are meant to time out are given none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import asyncpg

from services.core.wakeups import CHUNKS_QUEUED, OUTBOX_WRITTEN, Wakeups

Listener = Callable[[Any, int, str, str], None]


class ListeningConnection:
    def __init__(self) -> None:
        self.listeners: dict[str, Listener] = {}
        self.on_termination: Callable[[Any], None] | None = None

    async def add_listener(self, channel: str, callback: Listener) -> None:
        self.listeners[channel] = callback

    async def remove_listener(self, channel: str, callback: Listener) -> None:
        del self.listeners[channel]

    def add_termination_listener(self, callback: Callable[[Any], None]) -> None:
        self.on_termination = callback

    def remove_termination_listener(self, callback: Callable[[Any], None]) -> None:
        self.on_termination = None

    def notify(self, channel: str) -> None:
        self.listeners[channel](self, 4242, channel, "")

    def terminate(self) -> None:
        assert self.on_termination is not None
        self.on_termination(self)


class Pool:
    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.acquired: list[ListeningConnection] = []
        self.released: list[ListeningConnection] = []

    async def acquire(self, timeout: float | None = None) -> ListeningConnection:  # noqa: ASYNC109 (asyncpg's signature)
        if self.refuse:
            raise OSError("connection refused")
        self.acquired.append(ListeningConnection())
        return self.acquired[-1]

    async def release(self, connection: ListeningConnection) -> None:
        self.released.append(connection)


def wakeups_on(pool: Pool) -> Wakeups:
    return Wakeups(cast(asyncpg.Pool, pool), OUTBOX_WRITTEN, CHUNKS_QUEUED)


async def test_the_first_wait_listens_and_returns_at_once_for_the_caller_to_look_again() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)

    woken = await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=60)

    assert woken is True
    assert wakeups.listening
    assert sorted(pool.acquired[0].listeners) == [CHUNKS_QUEUED, OUTBOX_WRITTEN]


async def test_a_notification_while_the_loop_looked_for_work_is_not_lost() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)
    await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=60)
    mark = wakeups.mark(OUTBOX_WRITTEN)

    pool.acquired[0].notify(OUTBOX_WRITTEN)  # after the mark, before the wait

    assert await wakeups.wait(OUTBOX_WRITTEN, mark, timeout_s=60) is True


async def test_a_waiting_loop_is_woken_by_its_channel() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)
    await wakeups.wait(CHUNKS_QUEUED, wakeups.mark(CHUNKS_QUEUED), timeout_s=60)
    waiting = asyncio.create_task(
        wakeups.wait(CHUNKS_QUEUED, wakeups.mark(CHUNKS_QUEUED), timeout_s=60)
    )
    await asyncio.sleep(0)  # the task is now waiting on the event

    pool.acquired[0].notify(CHUNKS_QUEUED)

    assert await asyncio.wait_for(waiting, 5) is True


async def test_another_channels_notification_does_not_count() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)
    await wakeups.wait(CHUNKS_QUEUED, wakeups.mark(CHUNKS_QUEUED), timeout_s=60)
    mark = wakeups.mark(CHUNKS_QUEUED)

    pool.acquired[0].notify(OUTBOX_WRITTEN)

    assert await wakeups.wait(CHUNKS_QUEUED, mark, timeout_s=0) is False


async def test_a_stop_ends_the_wait() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)
    await wakeups.wait(CHUNKS_QUEUED, wakeups.mark(CHUNKS_QUEUED), timeout_s=60)
    stop = asyncio.Event()
    stop.set()

    woken = await asyncio.wait_for(
        wakeups.wait(CHUNKS_QUEUED, wakeups.mark(CHUNKS_QUEUED), timeout_s=60, stop=stop), 5
    )

    assert woken is False


async def test_without_a_connection_the_wait_is_a_poll_and_listening_is_tried_after_it() -> None:
    pool = Pool(refuse=True)
    wakeups = wakeups_on(pool)

    assert await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=0) is False
    assert not wakeups.listening

    pool.refuse = False
    # The next try comes once the poll's time has passed (here at once: a timeout of 0).
    assert await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=0) is True
    assert wakeups.listening


async def test_a_dropped_connection_is_released_and_another_one_listens() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)
    await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=0)
    first = pool.acquired[0]

    first.terminate()
    assert not wakeups.listening
    woken = await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=0)

    assert woken is True  # listening again: what came meanwhile was not heard, look again
    assert pool.released == [first]
    assert len(pool.acquired) == 2


async def test_close_stops_listening_and_gives_the_connection_back() -> None:
    pool = Pool()
    wakeups = wakeups_on(pool)
    await wakeups.wait(OUTBOX_WRITTEN, wakeups.mark(OUTBOX_WRITTEN), timeout_s=0)

    await wakeups.close()

    assert pool.acquired[0].listeners == {}
    assert pool.released == pool.acquired
    assert not wakeups.listening
