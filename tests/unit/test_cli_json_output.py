"""Every `achievements` command with `--json` prints one JSON object, on success and on failure
(`code`, `message`), and ends with a documented exit status; `watch` lines are readable."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiokafka import ConsumerRecord

from services import cli, upload_client
from services.cli.api_key import API_KEY_VARIABLE
from services.cli.failures import ExitCode
from services.cli.progress import UploadProgress
from services.cli.reconcile import compare_claims
from services.cli.watch import EventFilter, event_line
from services.core.events import Topics

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def unconfigured_logging() -> Iterator[None]:
    """`main(argv)` in-process leaves logging as the caller has it; an earlier test of the same
    process may have configured structlog to print on a stream these tests read."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_VARIABLE, "ato_key")


def fake_upload(result: dict[str, Any] | None = None, error: Exception | None = None) -> Any:
    async def upload_file(path: Path, **_: Any) -> dict[str, Any]:
        if error is not None:
            raise error
        assert result is not None
        return result

    return upload_file


def one_json_object(out: str) -> dict[str, Any]:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    parsed: dict[str, Any] = json.loads(lines[0])
    return parsed


def test_a_file_the_gateway_refuses_at_once_is_one_json_failure(
    api_key: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = upload_client.UploadError(422, "FILE_01", "The file is not a CSV (a workbook).")
    monkeypatch.setattr(upload_client, "upload_file", fake_upload(error=refusal))
    code = cli.main(["upload", "june.xlsx", "--json"])
    failure = one_json_object(capsys.readouterr().out)
    assert code == ExitCode.REFUSED == 3
    assert failure == {
        "code": "FILE_01",
        "message": "The file is not a CSV (a workbook).",
        "http_status": 422,
        "exit_code": 3,
    }


def test_a_successful_upload_is_one_json_object(
    api_key: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = {"upload_id": "u-1", "status": "received"}
    monkeypatch.setattr(upload_client, "upload_file", fake_upload(upload))
    assert cli.main(["upload", "june.csv", "--json"]) == ExitCode.OK
    assert one_json_object(capsys.readouterr().out) == upload


def test_waiting_for_an_upload_that_accepts_nothing_exits_1(
    api_key: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = {"upload_id": "u-1", "status": "rejected"}
    monkeypatch.setattr(upload_client, "upload_file", fake_upload(upload))
    assert cli.main(["upload", "june.csv", "--wait", "--json"]) == ExitCode.NOTHING_ACCEPTED
    assert one_json_object(capsys.readouterr().out)["status"] == "rejected"


@pytest.mark.parametrize(
    ("error", "exit_code", "code"),
    [
        (aiohttp.ClientConnectionError("refused"), ExitCode.UNAVAILABLE, "GATEWAY_UNREACHABLE"),
        (upload_client.UploadError(503, "UNAVAILABLE", "busy"), ExitCode.UNAVAILABLE, None),
        (TimeoutError("still validating"), ExitCode.TIMED_OUT, "TIMED_OUT"),
        (FileNotFoundError(2, "No such file", "june.csv"), ExitCode.FILE_UNREADABLE, None),
    ],
)
def test_each_failure_has_its_exit_status_and_a_code(
    api_key: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    exit_code: int,
    code: str | None,
) -> None:
    monkeypatch.setattr(upload_client, "upload_file", fake_upload(error=error))
    assert cli.main(["upload", "june.csv", "--json"]) == exit_code
    failure = one_json_object(capsys.readouterr().out)
    assert failure["exit_code"] == exit_code
    assert failure["message"]
    if code is not None:
        assert failure["code"] == code


def test_without_a_key_json_asked_for_gets_a_json_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(API_KEY_VARIABLE, raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # noqa: SIM115 (closed by pytest)
    assert cli.main(["status", "u-1", "--json"]) == ExitCode.USAGE
    assert one_json_object(capsys.readouterr().out)["code"] == "NO_API_KEY"


def test_status_of_an_unknown_upload_is_a_json_refusal(
    api_key: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def upload(self: upload_client.GatewayClient, upload_id: str) -> dict[str, Any]:
        raise upload_client.UploadError(404, "NOT_FOUND", "No such upload.")

    monkeypatch.setattr(upload_client.GatewayClient, "upload", upload)
    assert cli.main(["status", "u-1", "--json"]) == ExitCode.REFUSED
    assert one_json_object(capsys.readouterr().out)["code"] == "NOT_FOUND"


def test_a_malformed_dead_letter_id_is_a_usage_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["dlq", "show", "seven", "--json"]) == ExitCode.USAGE
    assert one_json_object(capsys.readouterr().out)["code"] == "USAGE"


def record(topic: str, payload: object, headers: list[tuple[str, bytes]] | None = None) -> Any:
    value = json.dumps(payload).encode() if payload is not None else b"\xff\xfe"
    return ConsumerRecord(
        topic=topic,
        partition=1,
        offset=7,
        timestamp=1_764_410_400_000,
        timestamp_type=0,
        key=b"u-1",
        value=value,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=len(value),
        headers=headers or [],
    )


def test_a_watched_event_is_one_readable_line() -> None:
    topics = Topics("p.")
    event = {
        "event_id": "e-1",
        "event_type": "achievements.accepted",
        "schema_version": 1,
        "occurred_at": "2026-11-29T10:00:00+00:00",
        "upload_id": "u-1",
        "ato_id": "ATO1",
        "achievements": [{"row_number": 2}, {"row_number": 3}],
    }
    line = event_line(record(topics.accepted, event), topics)
    assert "\n" not in line
    assert line.startswith("2026-11-29 10:00:00 accepted")
    assert "achievements.accepted" in line
    assert "upload_id=u-1 ato_id=ATO1 achievements=[2]" in line
    assert "event_id" not in line


def test_a_dead_letter_that_is_no_event_still_gets_a_line() -> None:
    topics = Topics()
    headers = [("dlq.source_topic", topics.uploads.encode()), ("dlq.error", b"not json")]
    line = event_line(record(topics.dead_letter, None, headers), topics)
    assert "dead-letter <not an event: 2 bytes> from uploads" in line
    assert "error='not json'" in line


def test_the_filter_matches_type_globs_ato_and_upload() -> None:
    event = {"event_type": "claim.accepted", "upload_id": "u-1", "ato_id": "ATO1"}
    assert EventFilter(["claim.*"]).matches(event)
    assert not EventFilter(["upload.*"]).matches(event)
    assert EventFilter(ato="ATO1", upload="u-1").matches(event)
    assert not EventFilter(ato="ATO2").matches(event)
    assert not EventFilter(upload="u-2").matches(event)
    assert EventFilter().matches(None)
    assert not EventFilter(ato="ATO1").matches(None)


def test_the_runbook_documents_every_exit_status() -> None:
    runbook = (REPO_ROOT / "docs" / "operations.md").read_text()
    for status in ExitCode:
        assert f"| {status.value} | `{status.name}`" in runbook, status.name


def test_on_a_terminal_the_upload_shows_bytes_sent_then_rows_validated(tmp_path: Path) -> None:
    from rich.console import Console

    screen = io.StringIO()
    file = tmp_path / "june.csv"
    file.write_bytes(b"x" * 1000)
    progress = UploadProgress(Console(file=screen, force_terminal=True, width=100), wait=True)
    with progress:
        progress.start_bytes(file)
        progress.bytes_sent(1000)
        progress.upload_seen({"status": "validating", "rows_processed": 20_000})
        progress.upload_seen({"status": "passed", "rows_processed": 40_000, "rows_total": 40_000})
    shown = screen.getvalue()
    assert "sending" in shown
    assert "1.0 kB" in shown
    assert "40,000 rows" in shown
    assert "passed" in shown


def test_in_a_pipe_the_upload_shows_no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    progress = UploadProgress.for_output(enabled=True, wait=True)
    with progress:
        progress.upload_seen({"status": "validating", "rows_processed": 5})
    assert sys.stderr.getvalue() == ""


def test_reconcile_reports_every_kind_of_difference() -> None:
    ours = [
        {"claim_id": "a", "row_number": 2, "state": "pending", "grant_amount_pence": None,
         "levy_number": "M1"},
        {"claim_id": "b", "row_number": 3, "state": "accepted", "grant_amount_pence": 500,
         "levy_number": "M1"},
        {"claim_id": "c", "row_number": 4, "state": "accepted", "grant_amount_pence": 500,
         "levy_number": "m1 "},
        {"claim_id": "d", "row_number": 5, "state": "accepted", "grant_amount_pence": 500,
         "levy_number": "M1"},
        {"claim_id": "e", "row_number": 6, "state": "refused", "grant_amount_pence": None,
         "levy_number": "M1"},
        {"claim_id": "f", "row_number": 7, "state": "withdrawn", "grant_amount_pence": None,
         "levy_number": "M1"},
        {"claim_id": "g", "row_number": 8, "state": "pending", "grant_amount_pence": None,
         "levy_number": "M1"},
    ]  # fmt: skip
    theirs = [
        {"claim_id": "a", "row_number": 2, "status": "accepted", "grant_amount_pence": 500,
         "levy_registration_number": "M1"},
        {"claim_id": "c", "row_number": 4, "status": "accepted", "grant_amount_pence": 500,
         "levy_registration_number": "M1"},
        {"claim_id": "d", "row_number": 5, "status": "accepted", "grant_amount_pence": 700,
         "levy_registration_number": "T9"},
        {"claim_id": "e", "row_number": 6, "status": "accepted", "grant_amount_pence": 500,
         "levy_registration_number": "M1"},
        {"claim_id": "z", "row_number": 9, "status": "accepted", "grant_amount_pence": 500,
         "levy_registration_number": "M1"},
    ]  # fmt: skip
    found = {(d["claim_id"], d["kind"]) for d in compare_claims(ours, theirs)}
    assert found == {
        ("a", "held_there_unsent_here"),
        ("b", "accepted_here_missing_there"),
        ("d", "amount_differs"),
        ("d", "levy_number_differs"),
        ("e", "refused_here_held_there"),
        ("z", "unknown_here"),
    }


def test_reconcile_needs_an_upload_or_a_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reconcile", "--json"]) == ExitCode.USAGE
    assert one_json_object(capsys.readouterr().out)["code"] == "USAGE"


def test_an_unforeseen_error_is_a_json_failure_naming_only_its_type(
    api_key: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def upload(self: upload_client.GatewayClient, upload_id: str) -> dict[str, Any]:
        raise RuntimeError("row 7: Jane Example, 1000000043")

    monkeypatch.setattr(upload_client.GatewayClient, "upload", upload)
    assert cli.main(["status", "u-1", "--json"]) == ExitCode.INTERNAL_ERROR == 70
    assert one_json_object(capsys.readouterr().out) == {
        "code": "INTERNAL_ERROR",
        "message": "unexpected RuntimeError",
        "exit_code": 70,
    }
