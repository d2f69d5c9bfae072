"""A circuit breaker for the grant API: pure state, time from an injected clock.

Closed: requests flow; `failure_threshold` consecutive transient failures open it. Open: no
requests until `cooldown_s` has passed, then half-open. Half-open: one probe at a time; its
success closes the breaker, its failure opens it again for another cool-down.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


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
        self._opened_at = 0.0
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
            return max(self._opened_at + self._cooldown_s - self._clock(), 0.0)
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
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self._probe_in_flight = False
