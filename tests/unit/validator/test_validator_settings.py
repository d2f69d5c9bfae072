"""The validator's settings own the amendment window it stamps on accepted rows, read from the
bridge's variable; the settings every service shares no longer carry it."""

from __future__ import annotations

import pytest

from services.core.settings import CommonSettings
from services.validator.settings import ValidatorSettings


def test_the_amendment_window_is_two_days_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRANT_BRIDGE_AMENDMENT_WINDOW_S", raising=False)
    assert ValidatorSettings().amendment_window_s == 172_800


def test_the_amendment_window_is_read_from_the_bridges_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRANT_BRIDGE_AMENDMENT_WINDOW_S", "10")
    monkeypatch.setenv("VALIDATOR_AMENDMENT_WINDOW_S", "99")  # not the validator's prefix
    assert ValidatorSettings().amendment_window_s == 10


def test_the_amendment_window_can_be_given_to_one_settings_object() -> None:
    assert ValidatorSettings(amendment_window_s=3).amendment_window_s == 3


def test_a_negative_amendment_window_is_refused() -> None:
    with pytest.raises(ValueError, match="amendment_window_s"):
        ValidatorSettings(amendment_window_s=-1)


def test_the_shared_settings_carry_no_bridge_setting() -> None:
    assert "amendment" not in CommonSettings.model_fields


def test_a_small_upload_is_planned_in_halves_of_at_least_the_minimum() -> None:
    settings = ValidatorSettings(chunk_bytes=4_000_000, split_parts=2, split_min_bytes=100_000)

    assert settings.for_upload_of(1_500_000).chunk_bytes == 750_000
    assert settings.for_upload_of(3_000).chunk_bytes == 100_000  # one chunk in any case


def test_a_big_upload_is_planned_with_the_configured_chunks() -> None:
    settings = ValidatorSettings(chunk_bytes=4_000_000, split_parts=2, split_min_bytes=100_000)

    assert settings.for_upload_of(8_000_000) is settings
    assert settings.for_upload_of(200_000_000) is settings
