"""An operator command without ACHIEVEMENTS_OPERATOR_TOKEN stops before it connects to
anything: `NO_OPERATOR_TOKEN`, exit 2, naming the variable."""

from __future__ import annotations

import json

import pytest

from services import cli
from services.cli.failures import ExitCode

OPERATOR_COMMANDS = [
    ["ato", "create", "Example Training Ltd"],
    ["ato", "key", "create", "ATO-1"],
    ["ato", "key", "revoke", "6f1c1b1e-5d5c-4c4e-9a55-2f8f6d1c0a01"],
    ["purge"],
    ["purge", "--dry-run"],
    ["learner", "find", "--ato", "ATO-1"],
    ["learner", "erase", "--ato", "ATO-1"],
    ["operator", "revoke", "Night Purge"],
    ["audit"],
    ["dlq", "replay", "0:1"],
    ["reconcile", "6f1c1b1e-5d5c-4c4e-9a55-2f8f6d1c0a01", "--repair"],
]


@pytest.mark.parametrize("argv", OPERATOR_COMMANDS, ids=" ".join)
def test_an_operator_command_without_a_token_stops_at_once(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ACHIEVEMENTS_OPERATOR_TOKEN", raising=False)
    monkeypatch.setenv("ACHIEVEMENTS_LEARNER_ULN", "1000000043")
    # Nothing listens here: a command that tried to connect would fail otherwise.
    monkeypatch.setenv("DATABASE_URL", "postgresql://achievements:achievements@127.0.0.1:9/none")
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")

    status = cli.main([*argv, "--json"])

    assert status == ExitCode.USAGE
    assert json.loads(capsys.readouterr().out) == {
        "code": "NO_OPERATOR_TOKEN",
        "message": "an operator command needs an operator's token in ACHIEVEMENTS_OPERATOR_TOKEN",
        "exit_code": 2,
    }


def test_a_blank_token_is_no_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACHIEVEMENTS_OPERATOR_TOKEN", "   ")

    assert cli.main(["audit", "--json"]) == ExitCode.USAGE
    assert json.loads(capsys.readouterr().out)["code"] == "NO_OPERATOR_TOKEN"
