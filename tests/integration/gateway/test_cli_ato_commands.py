"""`achievements status`, `errors [--csv]` and `withdraw` against a real gateway: the ATO's key
from ACHIEVEMENTS_API_KEY, one JSON object with `--json` on success and on refusal."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import structlog
from gateway_helpers import Client, insert_upload

from services import cli
from services.cli.api_key import API_KEY_VARIABLE
from services.upload_gateway.keys import NewKey

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


@pytest.fixture(autouse=True)
def gateway_logs_on_stderr() -> Iterator[None]:
    """The in-process gateway logs from the event loop's thread while the command prints from
    its own: on one stream, a log line could land inside a JSON line. Its logs go to stderr."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    yield
    structlog.reset_defaults()


async def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    key: NewKey,
    *argv: str,
) -> tuple[int, str]:
    monkeypatch.setenv(API_KEY_VARIABLE, key.api_key)
    capfd.readouterr()
    # The command runs its own event loop, as it does from a shell.
    code = await asyncio.to_thread(cli.main, list(argv))
    # The in-process gateway's own log lines share the captured output: leave them out.
    lines = capfd.readouterr().out.splitlines()
    return code, "\n".join(line for line in lines if not LOG_LINE.match(line))


async def test_status_errors_and_a_refused_withdrawal(
    client: Client,
    ato: NewKey,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    gateway = str(client.make_url("")).rstrip("/")
    stored_id = await insert_upload(
        pool, ato.ato_id, status="failed", rows_total=1, rows_invalid=1,
        counts_by_code={"COURSE_03": 1},
    )  # fmt: skip
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO row_issues (upload_id, row_number, position, code, severity, message)"
            " VALUES ($1, 2, 2, 'COURSE_03', 'error', 'Course code is not in the catalogue.')",
            stored_id,
        )
    upload_id = str(stored_id)

    code, out = await run_cli(
        monkeypatch, capfd, ato, "status", upload_id, "--json", "--gateway", gateway
    )
    status: dict[str, Any] = json.loads(out)
    assert (code, status["status"], status["rows_invalid"]) == (0, "failed", 1)

    code, out = await run_cli(
        monkeypatch, capfd, ato, "errors", upload_id, "--json", "--gateway", gateway
    )
    report = json.loads(out)
    assert code == 0
    assert [issue["code"] for issue in report["issues"]] == ["COURSE_03"]

    code, out = await run_cli(
        monkeypatch, capfd, ato, "errors", upload_id, "--csv", "--gateway", gateway
    )
    lines = out.splitlines()
    assert code == 0
    assert len(lines) == 2
    assert "COURSE_03" in lines[1]

    # Streaming and asked for as JSON: one object per row of the CSV report.
    code, out = await run_cli(
        monkeypatch, capfd, ato, "errors", upload_id, "--csv", "--json", "--gateway", gateway
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert len(rows) == 1
    assert "COURSE_03" in rows[0].values()

    code, out = await run_cli(
        monkeypatch, capfd, ato, "withdraw", upload_id, "--json", "--gateway", gateway
    )
    refusal = json.loads(out)
    assert code == cli.ExitCode.REFUSED
    assert refusal["http_status"] == 409
    assert refusal["code"]


async def test_another_atos_upload_is_not_found(
    client: Client,
    ato: NewKey,
    other_ato: NewKey,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    upload_id = str(await insert_upload(pool, other_ato.ato_id))
    code, out = await run_cli(
        monkeypatch, capfd, ato, "status", upload_id, "--json",
        "--gateway", str(client.make_url("")),
    )  # fmt: skip
    assert code == cli.ExitCode.REFUSED
    assert json.loads(out)["http_status"] == 404
