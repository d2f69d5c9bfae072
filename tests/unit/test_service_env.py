"""What the shell that ran the tests exported for the project never reaches a test, and a
service a test starts gets only what it needs plus the test's own settings."""

from __future__ import annotations

import os

import pytest

from tests.service_env import PASSED_ON, is_project_variable, service_env, strip_project_variables


def test_the_test_process_holds_no_project_variable_but_local_mode() -> None:
    project = {name: value for name, value in os.environ.items() if is_project_variable(name)}
    assert project == {"DEPLOYMENT_MODE": "local"}


def test_the_project_variables_are_stripped_and_only_they() -> None:
    environ = {
        "DATABASE_URL": "postgresql://u:pw@db/x",
        "DEPLOYMENT_MODE": "production",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "GRANT_BRIDGE_TOKEN": "t",
        "GRANT_STANDIN_PORT": "1",
        "EXPORTER_PORT": "9141",
        "RETENTION_KEY_SECRET": "k",
        "STORAGE_ROOT": "/s",
        "SCHEME_MAX_ROWS": "3",
        "DB_POOL_MAX_SIZE": "2",
        "LOG_LEVEL": "DEBUG",
        "PGSSLMODE": "verify-full",
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "PGHOST": "elsewhere",
        "KAFKA": "not a prefix",
    }

    stripped = strip_project_variables(environ)

    assert environ == {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "PGHOST": "elsewhere",
        "KAFKA": "not a prefix",
    }
    assert len(stripped) == 12
    assert "postgresql://u:pw@db/x" not in stripped


def test_a_started_service_gets_what_it_needs_and_its_settings_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("SOMETHING_ELSE", "from the shell")

    env = service_env({"DEPLOYMENT_MODE": "local", "GATEWAY_PORT": "8081"})

    assert env["PATH"] == "/usr/bin"
    assert env["HOME"] == "/home/me"
    assert env["GATEWAY_PORT"] == "8081"
    assert "SOMETHING_ELSE" not in env
    assert set(env) <= {*PASSED_ON, "DEPLOYMENT_MODE", "GATEWAY_PORT"}
