"""`achievements purge` and `achievements learner …` from the command line, against a test
database: wired to the retention and learner-request code, JSON out, usage errors exit 2."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from services.cli import main


@pytest.fixture
def operator_environment(
    database_url: str, operator_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ACHIEVEMENTS_OPERATOR_TOKEN", operator_token)
    monkeypatch.setenv("STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")
    return tmp_path


def test_purge_reports_what_it_did_as_one_json_object(
    operator_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orphan = operator_environment / "left.part"
    orphan.write_bytes(b"half an upload")
    old = 1_000_000_000  # 2001: far older than a day
    os.utime(orphan, (old, old))

    status = main(["purge", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (report["dry_run"], report["uploads_purged"], report["part_files_deleted"]) == (
        False,
        0,
        1,
    )
    assert not orphan.exists()


def test_a_learner_request_without_exactly_one_identifier_is_a_usage_error(
    operator_environment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["learner", "erase", "--ato", "ATO-1", "--json"])

    assert status == 2
    assert json.loads(capsys.readouterr().out)["code"] == "USAGE"


def test_a_learner_with_no_records_is_found_nowhere(
    operator_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ACHIEVEMENTS_LEARNER_ULN", "1000000043")
    status = main(["learner", "find", "--ato", "ATO-1", "--json"])

    found = json.loads(capsys.readouterr().out)
    assert status == 0
    assert found["achievements"] == []


def test_a_learner_named_on_standard_input_is_found_nowhere(
    operator_environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("AB 12 34 56 C\n"))
    status = main(["learner", "export", "--ato", "ATO-1", "--stdin", "ni", "--json"])

    exported = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (exported["identifier_kind"], exported["records"]) == ("ni_number", [])
