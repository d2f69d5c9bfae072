"""Waking a loop when PostgreSQL says there is work for it, rather than polling for it.

A writer calls `announce(connection, channel)` in the transaction that makes the work:
PostgreSQL delivers the notification when that transaction commits, and never if it rolls back,
so a woken loop always finds the work committed. A loop holds a `Wakeups` for the channels it
waits on: one pooled connection that LISTENs, kept for the loop's life. `wait` returns as soon
as a notification came since the loop's `mark()`, taken before it looked for work (a
notification that arrives while it looks is not lost), or after `timeout_s`: the slow poll that
stays as the safety net, for work that nobody announces (a lease that ran out) and for
notifications sent while the listening connection was down.

Polling every 0.2 s cost a query or more a round in every process of an idle stack, and a
small upload waited half a poll at each of its hops; a notification costs one statement in the
writing transaction and wakes the loop within a millisecond of the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

import asyncpg

from services.core.logging import get_logger

log = get_logger()

# Outbox rows were written (services/core/outbox.py).
OUTBOX_WRITTEN: Final = "outbox_written"
# Chunk tasks became free to lease: planned, or handed back (services/validator/chunk_queue.py).
CHUNKS_QUEUED: Final = "chunks_queued"


async def announce(connection: asyncpg.Connection, channel: str) -> None:
    """Call in the transaction that makes the work: the listeners hear of it at its commit.
    Several announcements of one channel in a transaction reach them as one."""
    await connection.execute("SELECT pg_notify($1, '')", channel)


class Wakeups:
    """One LISTENing connection from `pool` for `channels`, taken at the first `wait`.

    ```
    wakeups = Wakeups(pool, CHUNKS_QUEUED)
    while not stop.is_set():
        mark = wakeups.mark(CHUNKS_QUEUED)
        if not await work_once():
            await wakeups.wait(CHUNKS_QUEUED, mark, timeout_s=5.0, stop=stop)
    await wakeups.close()
    ```

    When the connection cannot be had or drops, `wait` is a plain timed wait until the next
    try (at most one a `timeout_s`), so an outage of the database costs no more than polling.
    """

    def __init__(self, pool: asyncpg.Pool, *channels: str, acquire_timeout_s: float = 5.0):
        self._pool = pool
        self._channels = channels
        self._acquire_timeout_s = acquire_timeout_s
        self._connection: asyncpg.Connection | None = None
        self._heard = dict.fromkeys(channels, 0)
        self._events = {channel: asyncio.Event() for channel in channels}
        self._next_try = 0.0
        # A connection the server closed, released to the pool (which replaces it) at the
        # next try to listen.
        self._lost: asyncpg.Connection | None = None

    def mark(self, channel: str) -> int:
        """Take before looking for work; pass to `wait`."""
        return self._heard[channel]

    @property
    def listening(self) -> bool:
        return self._connection is not None

    async def wait(
        self, channel: str, mark: int, timeout_s: float, stop: asyncio.Event | None = None
    ) -> bool:
        """Until `channel` is notified after `mark`, `stop` is set or `timeout_s` passed;
        True when woken by a notification (or by starting to listen: what was announced before
        the connection listened was not heard, so the caller looks again at once)."""
        if await self._listen(timeout_s):
            return True
        if self._heard[channel] != mark:
            return True
        waited = [asyncio.ensure_future(self._events[channel].wait())]
        if stop is not None:
            waited.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waited, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waited:
                future.cancel()
        return self._heard[channel] != mark

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        lost, self._lost = self._lost, None
        if lost is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(lost)
        if connection is None:
            return
        with contextlib.suppress(Exception):  # a broken connection stopped listening already
            connection.remove_termination_listener(self._dropped)
            for channel in self._channels:
                await connection.remove_listener(channel, self._notified)
        await self._pool.release(connection)

    async def _listen(self, retry_s: float) -> bool:
        """True when it has just started listening."""
        if self._connection is not None or time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + retry_s
        lost, self._lost = self._lost, None
        if lost is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(lost)
        connection: asyncpg.Connection | None = None
        try:
            connection = await self._pool.acquire(timeout=self._acquire_timeout_s)
            for channel in self._channels:
                await connection.add_listener(channel, self._notified)
            connection.add_termination_listener(self._dropped)
        except Exception as error:
            # The loop's own statements meet the outage (or the setting) and report it; here
            # it only means polling until the next try.
            log.debug("wakeups_not_listening", error=type(error).__name__)
            if connection is not None:
                with contextlib.suppress(Exception):
                    await self._pool.release(connection)
            return False
        self._connection = connection
        return True

    def _notified(
        self, connection: asyncpg.Connection, pid: int, channel: str, payload: str
    ) -> None:
        self._heard[channel] += 1
        event, self._events[channel] = self._events[channel], asyncio.Event()
        event.set()

    def _dropped(self, connection: asyncpg.Connection) -> None:
        # The server closed it: the next `wait` listens on another one (after its poll).
        if self._connection is connection:
            self._connection, self._lost = None, connection
