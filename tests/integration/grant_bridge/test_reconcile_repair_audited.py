"""`achievements reconcile --repair` is an operator command: it needs an operator's token, and
each upload it goes over is audited as that operator's action; a plain `reconcile` (read only)
needs no token and writes no audit row. Against a stand-in served in process."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from bridge_helpers import TOKEN, Standin

from services import cli

UPLOAD_ID = uuid.UUID("5a0c3d2e-7b1f-4c8a-9e6d-2f4b8c1a0e93")


@pytest.fixture
def reconcile_environment(
    database_url: str, standin: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")
    monkeypatch.setenv("GRANT_BRIDGE_GRANT_API_URL", standin.url)
    monkeypatch.setenv("GRANT_BRIDGE_TOKEN", TOKEN)
    monkeypatch.delenv("ACHIEVEMENTS_OPERATOR_TOKEN", raising=False)


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    # The command runs its own event loop, as it does from a shell; the stand-in serves on this one.
    status = await asyncio.to_thread(cli.main, [*argv, "--json"])
    # The stand-in's own log lines share this process's stdout: the command's object is last.
    return status, json.loads(capsys.readouterr().out.splitlines()[-1])


async def test_a_repair_needs_an_operator_and_is_audited_per_upload(
    reconcile_environment: None,
    operator_token: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checked = {"uploads_checked": 1, "differences": [], "requeued": []}
    assert await run_cli(capsys, "reconcile", str(UPLOAD_ID)) == (0, checked)
    status, refused = await run_cli(capsys, "reconcile", str(UPLOAD_ID), "--repair")
    assert (status, refused["code"]) == (2, "NO_OPERATOR_TOKEN")

    monkeypatch.setenv("ACHIEVEMENTS_OPERATOR_TOKEN", operator_token)
    assert await run_cli(capsys, "reconcile", str(UPLOAD_ID), "--repair") == (0, checked)

    status, trail = await run_cli(capsys, "audit")
    assert status == 0
    assert [(e["operator"], e["action"], e["target"]) for e in trail["events"]] == [
        ("test-operator", "operator_created", "operator:test-operator"),
        ("test-operator", "claims_repaired", f"upload:{UPLOAD_ID}"),
    ]
