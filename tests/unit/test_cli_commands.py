"""The command line as one click tree: `-h` and `--help` on every command, `--version`, usage
errors as JSON when asked, the exit statuses in the help, and a learner's identifier never taken
from the command line. None of these reaches a server."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from importlib.metadata import version

import click
import pytest

from services import cli
from services.cli.failures import ExitCode


def every_command(
    command: click.Command = cli.achievements, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from every_command(sub, (*path, name))


COMMANDS = list(every_command())


def test_the_tree_has_every_command_group() -> None:
    assert set(cli.achievements.commands) == {
        "admin", "reference", "ato", "upload", "status", "errors", "withdraw", "check",
        "watch", "dlq", "reconcile", "purge", "learner", "exporter", "operator", "audit",
    }  # fmt: skip
    assert ("ato", "key", "revoke") in COMMANDS
    assert ("learner", "erase") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "achievements")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_every_command_has_help(
    path: tuple[str, ...], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*path, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: achievements {' '.join(path)}".rstrip())
    assert "-h, --help" in out


def test_every_leaf_command_takes_json() -> None:
    for path in COMMANDS:
        command: click.Command = cli.achievements
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        if not isinstance(command, click.Group):
            assert "as_json" in {param.name for param in command.params}, path


def test_the_version_is_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"achievements, version {version('achievements-pipeline')}\n"


def test_the_help_lists_every_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["-h"])
    out = capsys.readouterr().out
    for status in ExitCode:
        assert f"{status.value}  {status.name}" in out or f"{status.value} {status.name}" in out


def test_a_usage_error_asked_for_as_json_is_one_json_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["watch", "--topic", "nowhere", "--json"]) == ExitCode.USAGE
    failure = json.loads(capsys.readouterr().out)
    assert (failure["code"], failure["exit_code"]) == ("USAGE", 2)
    assert "--topic" in failure["message"]


def test_a_usage_error_without_json_is_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ato", "create"]) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Missing argument 'NAME'" in captured.err


def test_a_malformed_key_id_is_a_usage_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ato", "key", "revoke", "seven", "--json"]) == ExitCode.USAGE
    assert json.loads(capsys.readouterr().out)["code"] == "USAGE"


@pytest.fixture
def no_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (
        "ACHIEVEMENTS_LEARNER_ULN",
        "ACHIEVEMENTS_LEARNER_NI",
        "ACHIEVEMENTS_LEARNER_CITB_ID",
    ):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("option", ["--uln", "--ni", "--citb-id"])
def test_an_identifier_on_the_command_line_is_refused_without_repeating_it(
    option: str, no_learner: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["learner", "find", "--ato", "ATO-1", option, "1000000043", "--json"])
    out = capsys.readouterr().out
    assert status == ExitCode.USAGE
    failure = json.loads(out)
    assert failure["code"] == "USAGE"
    assert "ACHIEVEMENTS_LEARNER_ULN" in failure["message"]
    assert "1000000043" not in out


def test_two_identifiers_are_a_usage_failure(
    no_learner: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACHIEVEMENTS_LEARNER_ULN", "1000000043")
    monkeypatch.setattr("sys.stdin", io.StringIO("AB123456C\n"))
    status = cli.main(["learner", "erase", "--ato", "ATO-1", "--stdin", "ni", "--json"])
    out = capsys.readouterr().out
    assert status == ExitCode.USAGE
    assert json.loads(out)["message"].startswith("give exactly one identifier")
    assert "1000000043" not in out
    assert "AB123456C" not in out


def test_an_empty_identifier_is_a_usage_failure(
    no_learner: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("   \n"))
    status = cli.main(["learner", "export", "--ato", "ATO-1", "--stdin", "uln", "--json"])
    assert status == ExitCode.USAGE
    assert json.loads(capsys.readouterr().out)["code"] == "USAGE"
