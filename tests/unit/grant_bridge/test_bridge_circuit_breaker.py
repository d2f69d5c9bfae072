"""The circuit breaker opens on consecutive transient failures, half-opens after a cool-down,
and lets exactly one probe through then."""

from __future__ import annotations

import math

import pytest

from services.grant_bridge.circuit_breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown_s=10.0, clock=clock)


def test_stays_closed_below_the_threshold(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow_request()


def test_a_success_resets_the_consecutive_failures(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_opens_after_n_consecutive_failures_and_refuses_requests(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow_request()
    clock.now_s += 4.0
    assert breaker.retry_in_s() == pytest.approx(6.0)
    assert not breaker.allow_request()


def test_half_opens_after_the_cooldown_with_a_single_probe(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_in_s() == 0.0
    assert breaker.allow_request()
    assert not breaker.allow_request()  # the probe is in flight


def test_a_successful_probe_closes_the_breaker(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 10.0
    assert breaker.allow_request()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow_request()
    assert breaker.allow_request()


def test_a_failed_probe_reopens_for_a_full_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure()
    clock.now_s += 15.0
    assert breaker.allow_request()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == pytest.approx(10.0)
    clock.now_s += 9.9
    assert not breaker.allow_request()
    clock.now_s += 0.1
    assert breaker.allow_request()


def test_a_threshold_below_one_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0, cooldown_s=1.0, clock=clock)


def open_with(breaker: CircuitBreaker, retry_after_s: float | None) -> None:
    for _ in range(3):
        breaker.record_failure(retry_after_s)


def test_the_cooldown_lasts_at_least_the_retry_after(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_with(breaker, 25.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == 25.0
    clock.now_s += 10.0  # the 10 s cool-down alone would have ended here
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow_request()
    assert breaker.retry_in_s() == 15.0
    clock.now_s += 15.0
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow_request()


def test_a_short_retry_after_does_not_shorten_the_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_with(breaker, 2.0)
    assert breaker.retry_in_s() == 10.0
    clock.now_s += 9.0
    assert not breaker.allow_request()


def test_a_retry_after_before_the_breaker_opened_still_counts(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    breaker.record_failure(40.0)  # at 1000 s: not before 1040 s
    clock.now_s += 5.0
    breaker.record_failure()
    breaker.record_failure()  # opens at 1005 s
    assert breaker.retry_in_s() == 35.0


def test_the_latest_retry_after_wins_over_an_earlier_shorter_one(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    breaker.record_failure(20.0)  # until 1020 s
    clock.now_s += 1.0
    breaker.record_failure(30.0)  # until 1031 s
    breaker.record_failure(12.0)  # until 1013 s: the later deadline stays
    assert breaker.retry_in_s() == 30.0


def test_a_retry_after_arriving_while_open_extends_the_open_period(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_with(breaker, None)
    assert breaker.retry_in_s() == 10.0
    clock.now_s += 2.0
    breaker.record_failure(60.0)  # a late answer to a request sent before the breaker opened
    assert breaker.retry_in_s() == 60.0
    clock.now_s += 59.0
    assert not breaker.allow_request()
    clock.now_s += 1.0
    assert breaker.allow_request()


def test_a_failed_probe_with_retry_after_reopens_for_that_long(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_with(breaker, None)
    clock.now_s += 10.0
    assert breaker.allow_request()
    breaker.record_failure(45.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in_s() == 45.0


def test_an_unbounded_retry_after_opens_the_breaker_for_an_hour_at_most(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    open_with(breaker, math.inf)
    assert breaker.retry_in_s() == 3600.0
    clock.now_s += 3600.0
    assert breaker.allow_request()


@pytest.mark.parametrize("retry_after_s", [math.nan, -5.0])
def test_a_nan_or_negative_retry_after_leaves_the_cooldown_alone(
    breaker: CircuitBreaker, retry_after_s: float
) -> None:
    open_with(breaker, retry_after_s)
    assert breaker.retry_in_s() == 10.0


def test_a_success_forgets_the_retry_after(breaker: CircuitBreaker, clock: FakeClock) -> None:
    breaker.record_failure(100.0)
    breaker.record_success()
    open_with(breaker, None)
    assert breaker.retry_in_s() == 10.0
