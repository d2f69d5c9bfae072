"""Outside DEPLOYMENT_MODE=local the settings refuse what is unsafe in production: a weak or
example retention key, a grant URL without https, Kafka without TLS, a database URL without
verified TLS. Each refusal names the setting, never its value; a safe set is accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from services.core.settings import (
    DEV_RETENTION_KEY_SECRET,
    DeploymentMode,
    KafkaSettings,
    PostgresSettings,
    RetentionSettings,
    load_settings,
)
from services.grant_bridge.settings import GrantBridgeSettings
from services.grant_standin.settings import Settings as StandinSettings
from services.upload_gateway.settings import GatewaySettings
from services.validator.settings import ValidatorSettings
from tests.service_env import run_service

REPO_ROOT = Path(__file__).resolve().parents[3]
PRODUCTION = DeploymentMode.PRODUCTION
SAFE_URL = "postgresql://pipeline:Vq7-pw-from-the-vault@db.internal:5432/achievements"
SAFE_KEY = "k3y-of-48-bytes-from-the-vault-0123456789abcdefg"

# A safe production environment for every pipeline service and the stand-in.
SAFE_ENVIRONMENT = {
    "DATABASE_URL": f"{SAFE_URL}?sslmode=verify-full",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_USERNAME": "pipeline",
    "KAFKA_SASL_PASSWORD": "kafka-pw-from-the-vault",
    "RETENTION_KEY_SECRET": SAFE_KEY,
    "GRANT_BRIDGE_TOKEN": "grant-token-from-the-vault",
    "GRANT_BRIDGE_GRANT_API_URL": "https://grants.example.gov.uk",
    "GRANT_STANDIN_DATABASE_URL": f"{SAFE_URL}?sslmode=verify-ca",
    "GRANT_STANDIN_TOKEN": "standin-token-from-the-vault",
    "GRANT_STANDIN_ADMIN_TOKEN": "standin-admin-token-from-the-vault",
}


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The safe production environment; a test changes one variable of it."""
    monkeypatch.delenv("DEPLOYMENT_MODE")  # tests/conftest.py sets local for the whole suite
    for name, value in SAFE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def refusal(build: Any, capsys: pytest.CaptureFixture[str]) -> str:
    """What `load_settings` prints when it stops the process (exit status 2)."""
    with pytest.raises(SystemExit) as stopped:
        load_settings(build, "service")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def example_retention_keys() -> list[str]:
    """The values the repository's example files give RETENTION_KEY_SECRET."""
    values = []
    for document in yaml.safe_load_all(
        (REPO_ROOT / "deploy/kubernetes/secrets.example.yaml").read_text()
    ):
        key = (document or {}).get("stringData", {}).get("RETENTION_KEY_SECRET")
        if key is not None:
            values.append(key)
    env_files = [*REPO_ROOT.glob(".env*"), *(REPO_ROOT / "deploy").rglob(".env*")]
    for example in (path for path in env_files if "example" in path.name):
        for line in example.read_text().splitlines():
            if line.startswith("RETENTION_KEY_SECRET="):
                values.append(line.partition("=")[2].strip().strip("'\""))
    return values


def test_the_example_files_carry_a_retention_key() -> None:
    assert example_retention_keys() == ["CHANGE-ME"]


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("x", "RETENTION_KEY_SECRET must be at least 32 bytes"),
        ("a" * 31, "RETENTION_KEY_SECRET must be at least 32 bytes"),
        (DEV_RETENTION_KEY_SECRET, "RETENTION_KEY_SECRET is the development default"),
        ("CHANGE-ME", "RETENTION_KEY_SECRET is an example value"),
        ("change-me-change-me-change-me-change-me", "RETENTION_KEY_SECRET is an example value"),
        *[(key, "RETENTION_KEY_SECRET is") for key in example_retention_keys()],
    ],
)
def test_a_weak_or_example_retention_key_stops_the_process(
    capsys: pytest.CaptureFixture[str], key: str, problem: str
) -> None:
    err = refusal(
        lambda: RetentionSettings(deployment_mode=PRODUCTION, key_secret=SecretStr(key)), capsys
    )
    assert err.startswith(f"service: invalid settings: {problem}")
    assert key not in err


def test_a_retention_key_of_32_bytes_is_accepted() -> None:
    settings = RetentionSettings(deployment_mode=PRODUCTION, key_secret=SecretStr("é" * 16))
    assert len(settings.key_secret.get_secret_value().encode()) == 32


@pytest.mark.parametrize(
    "url", ["http://grants.example.gov.uk", "grants.example.gov.uk", "https://", "ftp://g.example"]
)
def test_a_grant_url_without_https_stops_the_process(
    production: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    production.setenv("GRANT_BRIDGE_GRANT_API_URL", url)
    err = refusal(GrantBridgeSettings, capsys)
    assert err == (
        "service: invalid settings: GRANT_BRIDGE_GRANT_API_URL must be an https URL"
        " (DEPLOYMENT_MODE is not 'local')\n"
    )


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_kafka_without_tls_stops_the_process(
    production: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    production.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
    err = refusal(KafkaSettings, capsys)
    assert err == (
        "service: invalid settings: KAFKA_SECURITY_PROTOCOL must be SSL or SASL_SSL"
        " (DEPLOYMENT_MODE is not 'local')\n"
    )


@pytest.mark.parametrize(
    ("query", "pgsslmode"),
    [
        ("", None),
        ("?sslmode=disable", None),
        ("?sslmode=prefer", None),
        ("?sslmode=require", None),
        ("", "require"),
        # The URL's mode is the one asyncpg uses, whatever PGSSLMODE says.
        ("?sslmode=require", "verify-full"),
    ],
)
@pytest.mark.parametrize(
    ("variable", "build"),
    [
        ("DATABASE_URL", PostgresSettings),
        ("GRANT_STANDIN_DATABASE_URL", StandinSettings),
    ],
)
def test_a_database_url_without_verified_tls_stops_the_process(
    production: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    query: str,
    pgsslmode: str | None,
    variable: str,
    build: Any,
) -> None:
    production.setenv(variable, f"{SAFE_URL}{query}")
    if pgsslmode is not None:
        production.setenv("PGSSLMODE", pgsslmode)
    err = refusal(build, capsys)
    assert err == (
        f"service: invalid settings: {variable} must ask for verified TLS: sslmode=verify-full"
        " (or verify-ca) in the URL or PGSSLMODE (DEPLOYMENT_MODE is not 'local')\n"
    )
    assert "Vq7-pw" not in err


@pytest.mark.parametrize(
    ("query", "pgsslmode"),
    [("?sslmode=verify-full", None), ("?sslmode=verify-ca", None), ("", "verify-full")],
)
def test_a_database_url_with_verified_tls_is_accepted(
    production: pytest.MonkeyPatch, query: str, pgsslmode: str | None
) -> None:
    production.setenv("DATABASE_URL", f"{SAFE_URL}{query}")
    if pgsslmode is not None:
        production.setenv("PGSSLMODE", pgsslmode)
    assert PostgresSettings().database_url.get_secret_value() == f"{SAFE_URL}{query}"


def test_a_safe_production_set_is_accepted_by_every_service(
    production: pytest.MonkeyPatch,
) -> None:
    gateway = load_settings(GatewaySettings, "gateway")
    validator = load_settings(ValidatorSettings, "validator")
    bridge = load_settings(GrantBridgeSettings, "bridge")
    standin = load_settings(StandinSettings, "grant-standin")

    assert gateway.common.kafka.security_protocol == "SASL_SSL"
    assert gateway.common.postgres.deployment_mode is PRODUCTION
    assert validator.retention.key_secret.get_secret_value() == SAFE_KEY
    assert bridge.grant_api_url == "https://grants.example.gov.uk"
    assert standin.deployment_mode is PRODUCTION


def test_local_mode_keeps_the_local_stack_as_it_is(production: pytest.MonkeyPatch) -> None:
    production.setenv("DEPLOYMENT_MODE", "local")
    for name in SAFE_ENVIRONMENT:
        production.delenv(name)

    bridge = GrantBridgeSettings()
    retention = RetentionSettings()

    assert bridge.grant_api_url == "http://127.0.0.1:8090"
    assert bridge.common.kafka.security_protocol == "PLAINTEXT"
    assert "sslmode" not in bridge.common.postgres.database_url.get_secret_value()
    assert retention.key_secret.get_secret_value() == DEV_RETENTION_KEY_SECRET


def test_a_validator_started_with_a_weak_key_exits_naming_it() -> None:
    finished = run_service(
        "services.validator", {**SAFE_ENVIRONMENT, "RETENTION_KEY_SECRET": "CHANGE-ME"}
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "validator: invalid settings: RETENTION_KEY_SECRET is an example value, refused"
        " (DEPLOYMENT_MODE is not 'local')"
    ]
