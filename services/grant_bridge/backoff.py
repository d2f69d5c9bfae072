"""Retry delays: capped exponential backoff with full jitter, never sooner than Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


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
    return max(jittered_s, retry_after_s or 0.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay
