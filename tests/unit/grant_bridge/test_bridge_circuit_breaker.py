"""The circuit breaker opens on consecutive transient failures, half-opens after a cool-down,
and lets exactly one probe through then."""

from __future__ import annotations

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
