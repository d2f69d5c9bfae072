"""Retry delays grow exponentially up to a cap, are fully jittered, and never undercut
Retry-After."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from services.grant_bridge.backoff import (
    MAX_RETRY_AFTER_S,
    clamp_retry_after_s,
    parse_retry_after,
    retry_delay_s,
)


class MaxRandom(random.Random):
    """Always draws the top of the range, to read the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


class MinRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.parametrize(
    ("attempt", "ceiling_s"), [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (7, 30.0), (500, 30.0)]
)
def test_the_ceiling_doubles_per_attempt_up_to_the_cap(attempt: int, ceiling_s: float) -> None:
    delay_s = retry_delay_s(attempt, base_s=0.5, cap_s=30.0, rng=MaxRandom())
    assert delay_s == pytest.approx(ceiling_s)


def test_full_jitter_spreads_delays_between_zero_and_the_ceiling() -> None:
    rng = random.Random(42)
    delays = [retry_delay_s(4, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(2000)]
    assert min(delays) >= 0.0
    assert max(delays) <= 8.0
    assert min(delays) < 1.0 < 7.0 < max(delays)


def test_retry_after_is_a_floor_over_the_jittered_delay() -> None:
    assert retry_delay_s(1, base_s=0.5, cap_s=30.0, retry_after_s=5.0, rng=MinRandom()) == 5.0


def test_a_longer_backoff_wins_over_a_short_retry_after() -> None:
    delay_s = retry_delay_s(6, base_s=1.0, cap_s=30.0, retry_after_s=1.0, rng=MaxRandom())
    assert delay_s == 30.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 120 ", 120.0), ("0", 0.0), ("-4", 0.0), ("", None), (None, None), ("x", None)],
)
def test_retry_after_seconds_are_parsed(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_is_seconds_from_now() -> None:
    now = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Fri, 20 Nov 2026 12:00:30 GMT", now=now) == pytest.approx(30.0)


NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1e400", 3600.0),  # overflows to inf: an hour, not for ever
        ("inf", 3600.0),
        ("Infinity", 3600.0),
        ("-inf", 0.0),
        ("-1e400", 0.0),
        ("86400", 3600.0),
        ("3600", 3600.0),
        ("3599.5", 3599.5),
        ("0.25", 0.25),
        ("nan", None),
        ("NaN", None),
        ("1_0", None),
        ("0x10", None),
        ("12abc", None),
        ("soon", None),
        ("Fri, 31 Dec 2099 23:59:59 GMT", 3600.0),
        ("Fri, 20 Nov 2026 12:10:00 GMT", 600.0),
        ("Fri, 20 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("Sun, 06 Nov 1994 08:49:37", 0.0),  # no zone: read as UTC
        ("Fri, 20 Nov 99999 12:00:30 GMT", None),  # no such date
        ("Fri, 32 Nov 2026 12:00:30 GMT", None),
    ],
)
def test_retry_after_is_clamped_to_an_hour_or_ignored(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("seconds", "clamped"),
    [(None, None), (math.nan, None), (math.inf, 3600.0), (-math.inf, 0.0), (-1.0, 0.0), (7.5, 7.5)],
)
def test_clamp_retry_after(seconds: float | None, clamped: float | None) -> None:
    assert clamp_retry_after_s(seconds) == clamped
    assert MAX_RETRY_AFTER_S == 3600.0


def test_an_unbounded_retry_after_delays_a_claim_an_hour_at_most() -> None:
    delay_s = retry_delay_s(1, base_s=0.5, cap_s=30.0, retry_after_s=math.inf, rng=MinRandom())
    assert delay_s == 3600.0
    delay_s = retry_delay_s(1, base_s=0.5, cap_s=30.0, retry_after_s=math.nan, rng=MaxRandom())
    assert delay_s == 0.5
