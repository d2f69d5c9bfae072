"""Fault injection: which requests the stand-in answers badly on purpose, and how.

Each fault is drawn independently for every claim-creating request (POST /v1/claims and
POST /v1/claim-batches), always four draws in the same order, so a seeded generator gives the
same sequence of faults whatever the fractions are. The faults are applied in this order:
429 with Retry-After, 503 before storing, (the claims are stored), delay, 503 after storing.
`down` refuses every request but the admin endpoints with 503.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class FaultFields(BaseModel):
    """The fault settings, declared once for the start-up settings and for run-time changes."""

    # Fractions of claim-creating requests, 0 (never) to 1 (always).
    fail_before_store: float = Field(default=0.0, ge=0.0, le=1.0)
    fail_after_store: float = Field(default=0.0, ge=0.0, le=1.0)
    slow: float = Field(default=0.0, ge=0.0, le=1.0)
    # Longer than a client's usual 30 s timeout, so a slow answer is a timed-out request.
    slow_delay_s: float = Field(default=35.0, ge=0.0)
    retry_after_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: int = Field(default=1, ge=0)
    down: bool = False
    # Seeds the generator when set (tests); None draws from system entropy.
    seed: int | None = None


class FaultConfig(FaultFields):
    """The faults in force; also the body of PUT /admin/faults (every field optional there)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InvalidFaults(ValueError):
    """A fault change that names an unknown field or a value out of range."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What happens to one claim-creating request."""

    retry_after_s: int | None = None  # answer 429 with this Retry-After, store nothing
    fail_before_store: bool = False  # answer 503, store nothing
    delay_s: float = 0.0  # after storing, wait this long before answering
    fail_after_store: bool = False  # after storing (and any delay), answer 503


class FaultInjector:
    """The current fault configuration and the random generator that applies it."""

    def __init__(self, config: FaultConfig) -> None:
        self._initial = config
        self._config = config
        self._random = random.Random(config.seed)

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def down(self) -> bool:
        return self._config.down

    def update(self, changes: Mapping[str, object]) -> FaultConfig:
        """Applies the given fields; the others keep their current values.

        A `seed` among the changes restarts the generator from that seed.
        """
        try:
            merged = FaultConfig.model_validate({**self._config.model_dump(), **changes})
        except ValidationError as error:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in error.errors())
            raise InvalidFaults(f"invalid fault settings: {fields}") from None
        self._config = merged
        if "seed" in changes:
            self._random = random.Random(merged.seed)
        return merged

    def reset(self) -> FaultConfig:
        """Back to the faults the process started with, generator re-seeded."""
        self._config = self._initial
        self._random = random.Random(self._initial.seed)
        return self._config

    def plan(self) -> FaultPlan:
        config = self._config
        retry_draw, before_draw, slow_draw, after_draw = (self._random.random() for _ in range(4))
        if retry_draw < config.retry_after_fraction:
            return FaultPlan(retry_after_s=config.retry_after_s)
        if before_draw < config.fail_before_store:
            return FaultPlan(fail_before_store=True)
        return FaultPlan(
            delay_s=config.slow_delay_s if slow_draw < config.slow else 0.0,
            fail_after_store=after_draw < config.fail_after_store,
        )
