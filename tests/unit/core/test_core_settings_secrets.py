"""Outside DEPLOYMENT_MODE=local, a missing or development secret stops a process at start with
one line naming the setting, never its value."""

from __future__ import annotations

import pytest

from services.core.settings import (
    DeploymentMode,
    PostgresSettings,
    load_settings,
)
from services.grant_bridge.settings import GrantBridgeSettings
from services.upload_gateway.settings import GatewaySettings
from services.validator.settings import ValidatorSettings
from tests.service_env import run_service

REAL_URL = "postgresql://achievements:s3cret-pw@db.internal:5432/achievements?sslmode=verify-full"


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No deployment mode set (production) and none of the secrets; Kafka and the grant API
    over TLS (tests/unit/core/test_core_production_settings.py refuses them without)."""
    monkeypatch.delenv("DEPLOYMENT_MODE")  # tests/conftest.py sets local for the whole suite
    for name in ("DATABASE_URL", "GRANT_BRIDGE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("GRANT_BRIDGE_GRANT_API_URL", "https://grants.example.test")
    return monkeypatch


def test_production_is_the_default(production: pytest.MonkeyPatch) -> None:
    production.setenv("DATABASE_URL", REAL_URL)
    assert PostgresSettings().deployment_mode is DeploymentMode.PRODUCTION


def test_local_mode_keeps_the_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("GRANT_BRIDGE_TOKEN", raising=False)
    assert ":achievements@127.0.0.1:55432/" in PostgresSettings().database_url.get_secret_value()
    assert GrantBridgeSettings().token.get_secret_value() == "dev-grant-token"


def test_an_unknown_mode_is_refused(production: pytest.MonkeyPatch) -> None:
    production.setenv("DEPLOYMENT_MODE", "staging")
    with pytest.raises(ValueError, match="deployment_mode"):
        PostgresSettings(database_url=REAL_URL)


def test_a_missing_database_url_is_refused(production: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL must be set"):
        PostgresSettings()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://achievements:achievements@db.internal:5432/achievements",
        "postgresql://achievements@db.internal:5432/achievements",
        "postgresql://achievements:@db.internal:5432/achievements",
    ],
)
def test_a_database_url_without_a_real_password_is_refused(
    production: pytest.MonkeyPatch, url: str
) -> None:
    production.setenv("DATABASE_URL", url)
    with pytest.raises(ValueError, match="DATABASE_URL has no password or the development one"):
        PostgresSettings()


def test_a_database_url_with_a_password_is_accepted(production: pytest.MonkeyPatch) -> None:
    production.setenv("DATABASE_URL", REAL_URL)
    assert PostgresSettings().database_url.get_secret_value() == REAL_URL
    production.setenv(
        "DATABASE_URL", "postgresql://u@db/achievements?password=s3cret-pw&sslmode=verify-ca"
    )
    assert "password=s3cret-pw&" in PostgresSettings().database_url.get_secret_value()


@pytest.mark.parametrize("settings_class", [GatewaySettings, ValidatorSettings])
def test_every_pipeline_service_needs_the_database_url(
    production: pytest.MonkeyPatch, settings_class: type[object]
) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL must be set"):
        settings_class()


def test_the_bridge_outside_local_mode_needs_its_token(production: pytest.MonkeyPatch) -> None:
    production.setenv("DATABASE_URL", REAL_URL)
    with pytest.raises(ValueError, match="GRANT_BRIDGE_TOKEN must be set"):
        GrantBridgeSettings()
    with pytest.raises(ValueError, match="GRANT_BRIDGE_TOKEN is the development default"):
        GrantBridgeSettings(token="dev-grant-token")
    production.setenv("GRANT_BRIDGE_TOKEN", "")
    with pytest.raises(ValueError, match="GRANT_BRIDGE_TOKEN must be set"):
        GrantBridgeSettings()
    production.setenv("GRANT_BRIDGE_TOKEN", "a-real-token")
    assert GrantBridgeSettings().token.get_secret_value() == "a-real-token"


def test_the_mode_can_be_given_to_one_settings_object(production: pytest.MonkeyPatch) -> None:
    production.setenv("DATABASE_URL", REAL_URL)
    assert GrantBridgeSettings(deployment_mode="local").token.get_secret_value()
    production.setenv("DEPLOYMENT_MODE", "local")
    with pytest.raises(ValueError, match="GRANT_BRIDGE_TOKEN must be set"):
        GrantBridgeSettings(deployment_mode="production")


def test_load_settings_ends_the_process_with_one_line(
    production: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    production.setenv("DATABASE_URL", "postgresql://u:achievements@db/x")
    with pytest.raises(SystemExit) as stopped:
        load_settings(PostgresSettings, "gateway")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("gateway: invalid settings: DATABASE_URL has no password")
    assert "achievements@db" not in err


def test_a_service_started_outside_local_mode_without_its_token_exits() -> None:
    finished = run_service(
        "services.grant_bridge",
        {
            "DATABASE_URL": REAL_URL,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "GRANT_BRIDGE_GRANT_API_URL": "https://grants.example.test",
        },
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "bridge: invalid settings: GRANT_BRIDGE_TOKEN must be set (DEPLOYMENT_MODE is not 'local')"
    ]
    assert "s3cret-pw" not in finished.stderr
