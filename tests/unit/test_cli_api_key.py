"""`achievements upload` takes the ATO API key from ACHIEVEMENTS_API_KEY or a prompt, never
from the command line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from services import cli, upload_client
from services.cli import api_key
from services.cli.api_key import API_KEY_VARIABLE


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records what the upload would send instead of sending it."""
    calls: list[dict[str, Any]] = []

    async def fake_upload(path: Path, *, api_key: str, **_: Any) -> dict[str, Any]:
        calls.append({"file": str(path), "api_key": api_key})
        return {"upload_id": "u-1", "status": "received"}

    monkeypatch.setattr(upload_client, "upload_file", fake_upload)
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    return calls


def test_the_key_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, uploads: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv(API_KEY_VARIABLE, "ato_from_env")
    monkeypatch.setattr("sys.stdin", io.StringIO())
    assert cli.main(["upload", "file.csv"]) == 0
    assert uploads == [{"file": "file.csv", "api_key": "ato_from_env"}]


def test_on_a_terminal_the_key_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, uploads: list[dict[str, Any]]
) -> None:
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return "ato_typed\n"

    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr(api_key.getpass, "getpass", getpass)
    assert cli.main(["upload", "file.csv"]) == 0
    assert prompts == ["ATO API key: "]
    assert uploads == [{"file": "file.csv", "api_key": "ato_typed"}]


def test_without_a_key_or_a_terminal_the_command_stops(
    monkeypatch: pytest.MonkeyPatch,
    uploads: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO())
    assert cli.main(["upload", "file.csv"]) == 2
    assert "set ACHIEVEMENTS_API_KEY" in capsys.readouterr().err
    assert uploads == []


def test_the_removed_option_is_refused_with_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
    uploads: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(API_KEY_VARIABLE, "ato_from_env")
    assert cli.main(["upload", "file.csv", "--api-key", "ato_on_the_command_line"]) == 2
    err = capsys.readouterr().err
    assert "--api-key was removed: set ACHIEVEMENTS_API_KEY" in err
    assert "ato_on_the_command_line" not in err
    assert uploads == []


def test_the_option_is_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["upload", "--help"]) == 0
    assert "--api-key" not in capsys.readouterr().out
