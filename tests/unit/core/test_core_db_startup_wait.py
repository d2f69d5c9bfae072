"""A service that starts before its database waits for it, with capped back-off, for ever."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from services.core.db import retry_transient


class Sleeps:
    """An injected sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.waits_s.append(delay_s)


def failing(times: int, error: BaseException) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    """A step that raises `error` `times` times, then returns; and the list of its calls."""
    calls: list[int] = []

    async def step() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "pool"

    return calls, step


async def test_transient_errors_are_waited_out_with_doubling_delays_up_to_the_cap() -> None:
    sleeps = Sleeps()
    calls, step = failing(7, ConnectionRefusedError())

    result = await retry_transient(
        step,
        what="database",
        first_delay_s=0.5,
        max_delay_s=10.0,
        sleep=sleeps,
    )

    assert result == "pool"
    assert len(calls) == 8
    assert sleeps.waits_s == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_a_database_starting_up_is_waited_for() -> None:
    sleeps = Sleeps()
    _, step = failing(2, asyncpg.CannotConnectNowError("the database system is starting up"))

    assert await retry_transient(step, what="database", sleep=sleeps) == "pool"
    assert len(sleeps.waits_s) == 2


async def test_an_error_that_waiting_cannot_fix_is_raised_at_once() -> None:
    sleeps = Sleeps()
    calls, step = failing(1, asyncpg.InvalidPasswordError("password authentication failed"))

    with pytest.raises(asyncpg.InvalidPasswordError):
        await retry_transient(step, what="database", sleep=sleeps)
    assert len(calls) == 1
    assert sleeps.waits_s == []
