"""The fault injector draws faults as configured, reproducibly with a seed."""

from __future__ import annotations

import pytest

from services.grant_standin.faults import FaultConfig, FaultInjector, FaultPlan, InvalidFaults


def plans(injector: FaultInjector, count: int = 200) -> list[FaultPlan]:
    return [injector.plan() for _ in range(count)]


def test_no_faults_by_default() -> None:
    assert set(plans(FaultInjector(FaultConfig()))) == {FaultPlan()}


def test_a_fraction_of_one_applies_to_every_request() -> None:
    injector = FaultInjector(FaultConfig(fail_after_store=1.0, slow=1.0, slow_delay_s=2.5))
    assert set(plans(injector)) == {FaultPlan(delay_s=2.5, fail_after_store=True)}


def test_too_many_requests_comes_before_failing_before_store() -> None:
    injector = FaultInjector(
        FaultConfig(retry_after_fraction=1.0, retry_after_s=4, fail_before_store=1.0)
    )
    assert injector.plan() == FaultPlan(retry_after_s=4)


def test_failing_before_store_excludes_the_later_faults() -> None:
    injector = FaultInjector(FaultConfig(fail_before_store=1.0, fail_after_store=1.0, slow=1.0))
    assert injector.plan() == FaultPlan(fail_before_store=True)


def test_the_same_seed_gives_the_same_faults() -> None:
    config = FaultConfig(fail_before_store=0.3, slow=0.2, seed=11)
    assert plans(FaultInjector(config)) == plans(FaultInjector(config))
    other = FaultConfig(fail_before_store=0.3, slow=0.2, seed=12)
    assert plans(FaultInjector(config)) != plans(FaultInjector(other))


def test_a_fraction_is_roughly_that_share_of_requests() -> None:
    injector = FaultInjector(FaultConfig(fail_before_store=0.25, seed=5))
    failed = sum(plan.fail_before_store for plan in plans(injector, 4000))
    assert 850 <= failed <= 1150


def test_an_update_changes_only_the_fields_given() -> None:
    injector = FaultInjector(FaultConfig(slow=0.5, slow_delay_s=3.0))
    updated = injector.update({"down": True})
    assert updated == FaultConfig(slow=0.5, slow_delay_s=3.0, down=True)
    assert injector.down


def test_an_update_with_a_seed_restarts_the_generator() -> None:
    injector = FaultInjector(FaultConfig(fail_after_store=0.5, seed=1))
    first = plans(injector, 20)
    injector.update({"seed": 1})
    assert plans(injector, 20) == first


@pytest.mark.parametrize(
    "changes",
    [{"slow": -0.1}, {"fail_after_store": 2}, {"retry_after_s": -1}, {"unknown": True}],
)
def test_an_invalid_update_is_refused_and_changes_nothing(changes: dict[str, object]) -> None:
    injector = FaultInjector(FaultConfig(slow=0.5))
    with pytest.raises(InvalidFaults):
        injector.update(changes)
    assert injector.config == FaultConfig(slow=0.5)


def test_reset_restores_the_start_up_faults() -> None:
    start_up = FaultConfig(fail_before_store=0.1, seed=3)
    injector = FaultInjector(start_up)
    first = plans(injector, 10)
    injector.update({"down": True, "fail_before_store": 1.0})
    assert injector.reset() == start_up
    assert plans(injector, 10) == first
