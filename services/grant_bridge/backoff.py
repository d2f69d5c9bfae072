"""Retry delays: capped exponential backoff with full jitter, never sooner than Retry-After."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The longest a Retry-After may hold a claim (or the breaker): a header asking for more is a
# broken or hostile answer, and honouring it would park claims for ever.
MAX_RETRY_AFTER_S = 3600.0


def retry_delay_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before the next try after `attempt` failed tries (1 = the first try failed).

    Full jitter (a uniform draw up to the capped exponential) spreads the retries of many claims
    that failed together; the server's Retry-After is a floor, since it knows when it recovers.
    """
    exponent = max(attempt - 1, 0)
    # min() before the power would overflow for a claim that has failed for days.
    ceiling_s = cap_s if exponent >= 64 else min(cap_s, base_s * 2**exponent)
    jittered_s = (rng or random).uniform(0.0, ceiling_s)
    return max(jittered_s, clamp_retry_after_s(retry_after_s) or 0.0)


def clamp_retry_after_s(seconds: float | None) -> float | None:
    """A Retry-After in seconds within [0, MAX_RETRY_AFTER_S]; None when absent or NaN."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date, clamped to
    [0, MAX_RETRY_AFTER_S] (`1e400`, `inf` or a date in 2099 waits an hour, not for ever; a past
    date or a negative number means now). None when absent or unreadable (`nan`, garbage)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if "_" in text:  # float() reads "1_0" as 10; a header never means that
            raise ValueError(text)
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            seconds = (when - (now or datetime.now(UTC))).total_seconds()
        except OverflowError:
            return None
    return clamp_retry_after_s(seconds)
