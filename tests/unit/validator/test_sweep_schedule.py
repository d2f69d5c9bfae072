"""A busy chunk worker looks for uploads left undecided every `decide_sweep_s` on its clock,
counted from its last look, whether that look was due or made while idle."""

from __future__ import annotations

from services.validator.chunk_worker import SweepSchedule
from services.validator.settings import ValidatorSettings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_first_look_is_due_one_interval_after_the_worker_starts() -> None:
    clock = Clock(50.0)
    schedule = SweepSchedule(2.0, clock)

    clock.now = 51.9
    early = schedule.due()
    clock.now = 52.0
    on_time = schedule.due()

    assert (early, on_time) == (False, True)


def test_a_look_that_was_due_starts_the_next_interval() -> None:
    clock = Clock(0.0)
    schedule = SweepSchedule(2.0, clock)
    clock.now = 3.0
    assert schedule.due()

    clock.now = 4.9
    early = schedule.due()
    clock.now = 5.0
    on_time = schedule.due()

    assert (early, on_time) == (False, True)


def test_a_look_made_while_idle_starts_the_next_interval_too() -> None:
    clock = Clock(0.0)
    schedule = SweepSchedule(2.0, clock)
    clock.now = 1.5
    schedule.swept()

    clock.now = 3.0
    early = schedule.due()
    clock.now = 3.5
    on_time = schedule.due()

    assert (early, on_time) == (False, True)


def test_a_busy_worker_looks_every_two_seconds_unless_set() -> None:
    assert ValidatorSettings().decide_sweep_s == 2.0
    assert ValidatorSettings(decide_sweep_s=0.5).decide_sweep_s == 0.5
