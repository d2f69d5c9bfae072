"""A circuit breaker for the grant API: pure state, time from an injected clock.

Closed: requests flow; `failure_threshold` consecutive transient failures open it. Open: no
requests until the cool-down has passed, then half-open. Half-open: one probe at a time; its
success closes the breaker, its failure opens it again for another cool-down.

The cool-down is `cooldown_s`, or longer when the grant API asked for it: a failure that came
with a Retry-After keeps the breaker open at least until that moment (the latest such moment
seen since the last success, clamped to `MAX_RETRY_AFTER_S`). A failure that arrives while the
breaker is already open (an answer to a request sent before it opened) restarts the cool-down
and may lengthen the open period, never shorten it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from services.grant_bridge.backoff import clamp_retry_after_s


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._open_until = 0.0
        # The latest moment a Retry-After asked for since the last success (clock time).
        self._retry_after_until = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The state now: an open breaker whose cool-down has passed reads as half-open."""
        if self._state is BreakerState.OPEN and self.retry_in_s() == 0.0:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in_s(self) -> float:
        """Seconds until a request may go (0 when one may go now)."""
        if self._state is BreakerState.OPEN:
            return max(self._open_until - self._clock(), 0.0)
        if self._state is BreakerState.HALF_OPEN and self._probe_in_flight:
            # The probe's answer decides; callers poll until then.
            return self._cooldown_s
        return 0.0

    def allow_request(self) -> bool:
        """True when a request may be sent now; in half-open it hands out the single probe."""
        if self._state is BreakerState.OPEN:
            if self.retry_in_s() > 0.0:
                return False
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self._state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                return False
            self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._retry_after_until = 0.0
        self._probe_in_flight = False

    def record_failure(self, retry_after_s: float | None = None) -> None:
        """A transient failure; `retry_after_s` is the answer's Retry-After, when it had one."""
        now = self._clock()
        retry_after_s = clamp_retry_after_s(retry_after_s)
        if retry_after_s is not None:
            self._retry_after_until = max(self._retry_after_until, now + retry_after_s)
        self._failures += 1
        if self._state is not BreakerState.CLOSED or self._failures >= self._threshold:
            # Opening, a failed probe, or a late answer to a request sent before the breaker
            # opened: a full cool-down from now, and never shorter than before.
            self._state = BreakerState.OPEN
            self._open_until = max(
                self._open_until, now + self._cooldown_s, self._retry_after_until
            )
            self._probe_in_flight = False
