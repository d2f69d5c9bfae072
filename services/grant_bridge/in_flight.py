"""How many batch requests the bridge keeps out at once: pure state, no I/O.

Starts at the most allowed (`GRANT_BRIDGE_MAX_IN_FLIGHT`). A 429 halves it, down to one; it
then grows back by one request for every `limit` answers in a row without a 429, about one step
per round of requests, so a grant API that asked for less gets less for a while rather than the
full load at once again.

Requests already out when the limit was halved may bring their own 429s: those do not halve it
again. Each request carries the generation of the limit it was sent under (`sent`), and only a
429 to a request sent under the current generation counts, as TCP counts one loss per window.
"""

from __future__ import annotations


class InFlightLimit:
    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        self.limit = maximum
        self.generation = 0
        self._answers_since_change = 0

    def sent(self) -> int:
        """The generation a request sent now belongs to; hand it back with its answer."""
        return self.generation

    def rate_limited(self, generation: int) -> None:
        """A 429 to a request of `generation`."""
        if generation != self.generation:
            return  # sent before the last change: that change answered it already
        self.limit = max(1, self.limit // 2)
        self._changed()

    def answered(self, generation: int) -> None:
        """Any other answer (including a failure that is not a 429)."""
        if generation != self.generation or self.limit >= self.maximum:
            return
        self._answers_since_change += 1
        if self._answers_since_change >= self.limit:
            self.limit += 1
            self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self._answers_since_change = 0
