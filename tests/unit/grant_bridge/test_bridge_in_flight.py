"""The batch requests in flight: halved on a 429 (once per burst of them), grown back by one
per `limit` answers without one, never above the setting nor below one."""

from __future__ import annotations

import pytest

from services.grant_bridge.in_flight import InFlightLimit


def test_starts_at_the_maximum() -> None:
    assert InFlightLimit(4).limit == 4


def test_a_429_halves_the_limit_down_to_one() -> None:
    limit = InFlightLimit(8)
    limits = []
    for _ in range(5):
        limit.rate_limited(limit.sent())
        limits.append(limit.limit)
    assert limits == [4, 2, 1, 1, 1]


def test_429s_to_requests_sent_before_the_halving_do_not_halve_again() -> None:
    limit = InFlightLimit(4)
    out = [limit.sent() for _ in range(4)]  # four requests out, all answered 429
    for generation in out:
        limit.rate_limited(generation)
    assert limit.limit == 2


def test_grows_back_by_one_per_limit_answers_without_a_429() -> None:
    limit = InFlightLimit(4)
    limit.rate_limited(limit.sent())
    limit.rate_limited(limit.sent())
    assert limit.limit == 1
    seen = []
    for _ in range(6):
        limit.answered(limit.sent())
        seen.append(limit.limit)
    # 1 answer at 1, then 2 answers at 2, then 3 at 3: back at the maximum, and no further.
    assert seen == [2, 2, 3, 3, 3, 4]
    for _ in range(10):
        limit.answered(limit.sent())
    assert limit.limit == 4


def test_answers_to_requests_sent_before_a_change_do_not_grow_it() -> None:
    limit = InFlightLimit(4)
    before = limit.sent()
    limit.rate_limited(limit.sent())
    limit.answered(before)
    limit.answered(before)
    assert limit.limit == 2


def test_a_maximum_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlightLimit(0)
