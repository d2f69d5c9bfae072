"""Fixtures for the S3 backend's tests: the project's own S3 server (started once per session,
on free ports, with a data folder of its own), and settings that reach it under a prefix of
the test's own, so no test sees another's objects."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.core.storage import StorageSettings
from tests.s3_server import S3Server, running_s3_server, s3_settings_for


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual AWS variables, as a deployment gives them; nothing else of AWS's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def s3_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def s3_settings(s3_server: S3Server, s3_credentials: None, s3_prefix: str) -> StorageSettings:
    return s3_settings_for(s3_server, s3_prefix)
