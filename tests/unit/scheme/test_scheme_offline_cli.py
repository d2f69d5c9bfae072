"""`achievements check`: arguments, output and exit status (section 7)."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest
from scheme_builders import VALID_ULNS, cells, csv_text, write

from services.cli import check as offline_check
from services.cli import main as achievements

CORPUS = Path(__file__).parent / "corpus"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = achievements(["check", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


class TestExitStatus:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("01_valid.csv", 0),
            ("02_warnings_only.csv", 0),
            ("03_row_errors.csv", 1),
            ("17_empty.csv", 1),
        ],
    )
    def test_zero_when_accepted_one_when_failed_or_rejected(
        self, capsys: pytest.CaptureFixture[str], name: str, expected: int
    ) -> None:
        status, _, _ = run(capsys, str(CORPUS / name), "--today", "2026-11-20", "--json")
        assert status == expected

    def test_partially_accepted_exits_zero(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        path = write(tmp_path, "p.csv", csv_text([cells(ULN=VALID_ULNS[0]), cells(ULN="1")]))
        argv = [str(path), "--today", "2026-11-20", "--policy", "valid_rows", "--json"]
        status, out, _ = run(capsys, *argv)
        assert status == 0
        assert json.loads(out)["status"] == "partially_accepted"

    @pytest.mark.parametrize(
        "argv",
        [
            [],
            ["a.csv", "b.csv"],
            ["{file}", "--today", "20/11/2026"],
            ["{file}", "--today", "20261120"],
            ["{file}", "--today", "2026-02-30"],
            ["{file}", "--policy", "some_rows"],
            ["{file}", "--verbose"],
        ],
    )
    def test_usage_errors_exit_two_with_a_message(
        self, capsys: pytest.CaptureFixture[str], argv: list[str]
    ) -> None:
        file = str(CORPUS / "01_valid.csv")
        status, out, err = run(capsys, *[arg.format(file=file) for arg in argv])
        assert status == 2
        assert out == ""
        assert "Usage: achievements check" in err

    def test_a_missing_file_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        status, out, err = run(capsys, str(tmp_path / "nope.csv"))
        assert status == 2
        assert out == ""
        assert "no such file" in err

    def test_a_usage_error_asked_for_as_json_is_one_json_object(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        missing = run(capsys, str(tmp_path / "nope.csv"), "--json")
        bad_date = run(capsys, str(CORPUS / "01_valid.csv"), "--today", "20261120", "--json")
        for status, out, _ in (missing, bad_date):
            assert status == 2
            failure = json.loads(out)
            assert (failure["code"], failure["exit_code"]) == ("USAGE", 2)
        assert json.loads(missing[1])["message"].startswith("no such file: ")
        assert "YYYY-MM-DD" in json.loads(bad_date[1])["message"]

    def test_a_folder_is_a_usage_error(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        status, _, _ = run(capsys, str(tmp_path))
        assert status == 2

    def test_help_exits_zero(self, capsys: pytest.CaptureFixture[str]) -> None:
        status, out, _ = run(capsys, "--help")
        assert status == 0
        assert "--policy" in out


class TestOutput:
    def test_json_is_one_object_equal_to_the_corpus_expectation(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = CORPUS / "20_duplicates.csv"
        _, out, _ = run(capsys, str(path), "--today", "2026-11-20", "--json")
        assert out.count("\n") == 1
        expected = json.loads(path.with_name(path.name + ".expected.json").read_text())
        assert json.loads(out) == expected

    def test_table_shows_the_summary_and_one_line_per_issue(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _, out, _ = run(capsys, str(CORPUS / "20_duplicates.csv"), "--today", "2026-11-20")
        lines = out.splitlines()
        assert lines[:4] == [
            "file:     20_duplicates.csv",
            "encoding: utf-8",
            "status:   failed",
            "rows:     7 total, 3 valid, 4 invalid, 0 with warnings",
        ]
        assert lines[5].split() == ["Row", "Column", "Code", "Severity", "Message"]
        assert lines[6].split()[:4] == ["2", "LearnerForename", "NAME_01", "error"]
        assert lines[7].split()[:4] == ["3", "(row)", "DUP_01", "error"]
        assert len(lines) == 10

    def test_table_for_a_rejected_file_shows_the_file_error(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _, out, _ = run(capsys, str(CORPUS / "07_utf16.csv"))
        assert "status:   rejected" in out
        assert "encoding: -" in out
        assert "FILE_01: The file contains NUL bytes" in out

    def test_today_defaults_to_the_date_in_london(
        self,
        capsys: pytest.CaptureFixture[str],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # 23:30 UTC on 31 March 2026 is already 1 April in London (BST).
        class FrozenDateTime(datetime):
            @classmethod
            def now(cls, tz: object = None) -> FrozenDateTime:  # type: ignore[override]
                instant = datetime(2026, 3, 31, 23, 30, tzinfo=offline_check.ZoneInfo("UTC"))
                return instant.astimezone(tz)  # type: ignore[arg-type,return-value]

        monkeypatch.setattr(offline_check, "datetime", FrozenDateTime)
        path = write(tmp_path, "d.csv", csv_text([cells(AchievementDate="01/04/2026")]))
        status, out, _ = run(capsys, str(path), "--json")
        assert json.loads(out)["status"] == "passed"
        assert status == 0
        assert date(2026, 4, 1) == FrozenDateTime.now(offline_check.UK_TIME).date()
