"""The S3 backend's settings and credentials, without a server: what is required, the shared
credentials file, and that the client is loaded only when S3 is chosen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.core.storage import StorageSettings
from services.core.storage.s3 import S3Storage, credentials

REPO = Path(__file__).parents[3]


def test_s3_needs_a_bucket_and_parts_s3_accepts() -> None:
    with pytest.raises(ValueError, match="STORAGE_S3_BUCKET"):
        StorageSettings(backend="s3")
    with pytest.raises(ValueError, match="STORAGE_S3_PART_BYTES"):
        StorageSettings(backend="s3", s3_bucket="b", s3_part_bytes=1024 * 1024)
    settings = StorageSettings(backend="s3", s3_bucket="b")
    assert (settings.s3_part_bytes, settings.s3_part_concurrency) == (8 * 1024 * 1024, 2)


def test_the_settings_come_from_storage_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    monkeypatch.setenv("STORAGE_S3_ENDPOINT", "https://s3.example.internal")
    monkeypatch.setenv("STORAGE_S3_BUCKET", "uploads")
    monkeypatch.setenv("STORAGE_S3_PREFIX", "staging/")
    monkeypatch.setenv("STORAGE_S3_PATH_STYLE", "false")
    settings = StorageSettings()
    assert (settings.backend, settings.s3_bucket, settings.s3_prefix) == (
        "s3",
        "uploads",
        "staging/",
    )
    assert settings.s3_path_style is False
    storage = S3Storage(settings)
    assert storage.describe() == {
        "backend": "s3",
        "endpoint": "https://s3.example.internal",
        "bucket": "uploads",
        "prefix": "staging/",
    }


def test_credentials_come_from_the_shared_file_when_the_variables_give_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    file = tmp_path / "credentials"
    file.write_text(
        "[default]\naws_access_key_id = AKIDEFAULT\naws_secret_access_key = s1\n\n"
        "[pipeline]\naws_access_key_id = AKIPIPE\naws_secret_access_key = s2\n"
        "aws_session_token = t2\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(file))

    assert credentials(StorageSettings()) == {
        "access_key_id": "AKIDEFAULT",
        "secret_access_key": "s1",
    }
    monkeypatch.setenv("AWS_PROFILE", "pipeline")
    assert credentials(StorageSettings()) == {
        "access_key_id": "AKIPIPE",
        "secret_access_key": "s2",
        "session_token": "t2",
    }
    monkeypatch.setenv("AWS_PROFILE", "absent")
    assert credentials(StorageSettings()) == {}
    # The variables win over the file.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIVAR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "svar")
    assert credentials(StorageSettings()) == {
        "access_key_id": "AKIVAR",
        "secret_access_key": "svar",
    }
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    assert credentials(StorageSettings()) == {}


def test_the_folder_backend_never_loads_the_s3_client() -> None:
    program = (
        "import sys, services.core.storage as s\n"
        "s.open_storage(s.StorageSettings())\n"
        "print('obstore' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
