"""A command that meets a setting refused for good (a certificate, a login, an ACL: the pool and
`ensure_topics` raise `ConfigurationError`) ends as invalid settings do: exit 2, the setting
named, never an unexpected internal error."""

from __future__ import annotations

from services.cli.failures import ExitCode, translate
from services.core.misconfiguration import ConfigurationError


def test_a_refused_setting_is_a_usage_failure_naming_the_setting() -> None:
    failed = translate(
        ConfigurationError("DATABASE_URL", "PostgreSQL refused the login (InvalidPasswordError)")
    )

    assert failed.exit_code is ExitCode.USAGE
    assert failed.to_json() == {
        "code": "SETTING_REFUSED",
        "message": "DATABASE_URL: PostgreSQL refused the login (InvalidPasswordError)",
        "exit_code": 2,
    }
