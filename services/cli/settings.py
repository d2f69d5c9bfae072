"""The command line's own settings (`ACHIEVEMENTS_*`), and the one way every command builds the
settings classes it needs: once, at its entry, an invalid one reported as `INVALID_SETTINGS`
(exit 2) naming the settings, never their values."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.cli.failures import CommandFailed, ExitCode
from services.core.settings import settings_problems

DEFAULT_CONNECT_TIMEOUT_S = 15.0


class CliSettings(BaseSettings):
    """What the operator or the ATO gives the command through its environment."""

    model_config = SettingsConfigDict(
        env_prefix="ACHIEVEMENTS_", extra="ignore", hide_input_in_errors=True
    )

    # ACHIEVEMENTS_CONNECT_TIMEOUT_S: how long a command waits to reach PostgreSQL or Kafka
    # before it gives up (`--connect-timeout` overrides it); the work after is not bounded by it.
    connect_timeout_s: float = Field(default=DEFAULT_CONNECT_TIMEOUT_S, gt=0)
    # ACHIEVEMENTS_API_KEY: an ATO's key for `upload`, `status`, `errors`, `withdraw`. Never an
    # argument: a command line is visible to every user of the machine and kept in history.
    api_key: SecretStr = SecretStr("")
    # ACHIEVEMENTS_OPERATOR_TOKEN: the operator running an operator command (`achievements
    # operator create` shows it once); never an argument, for the same reason.
    operator_token: SecretStr = SecretStr("")
    # ACHIEVEMENTS_LEARNER_ULN / _NI / _CITB_ID: the learner of `achievements learner ...`, for
    # the same reason never an argument.
    learner_uln: SecretStr | None = None
    learner_ni: SecretStr | None = None
    learner_citb_id: SecretStr | None = None


_Settings = TypeVar("_Settings")


def build_settings(factory: Callable[[], _Settings]) -> _Settings:
    """`factory()`, or `CommandFailed` (exit 2) naming each invalid setting and its problem."""
    try:
        return factory()
    except ValidationError as invalid:
        raise CommandFailed(
            ExitCode.USAGE, "INVALID_SETTINGS", f"invalid settings: {settings_problems(invalid)}"
        ) from None
