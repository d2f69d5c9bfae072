"""The scheme's file limits are one settings group, read by the gateway, the validator and
`achievements check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli import main as achievements
from services.core.settings import SchemeLimits
from services.upload_gateway.settings import GatewaySettings
from services.validator.settings import ValidatorSettings

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes\r\n"
)
ROW = "R1,SMSTS-R,01/03/2026,Ann,Smith,01/01/1990,1000000043,,,,\r\n"


def test_the_defaults_are_the_schemes_200_mb_and_a_million_rows() -> None:
    limits = SchemeLimits()
    assert (limits.max_upload_bytes, limits.max_rows) == (200 * 1024 * 1024, 1_000_000)


def test_gateway_and_validator_read_the_same_scheme_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEME_MAX_UPLOAD_BYTES", "4096")
    monkeypatch.setenv("SCHEME_MAX_ROWS", "7")
    expected = SchemeLimits(max_upload_bytes=4096, max_rows=7)
    assert GatewaySettings().limits == expected
    assert ValidatorSettings().limits == expected
    assert "max_upload_bytes" not in GatewaySettings.model_fields
    assert "max_rows" not in ValidatorSettings.model_fields
    assert "max_upload_bytes" not in ValidatorSettings.model_fields


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        SchemeLimits(max_rows=0)


def csv_file(tmp_path: Path, rows: int) -> str:
    path = tmp_path / "june.csv"
    path.write_text(HEADER + ROW * rows, encoding="utf-8")
    return str(path)


def test_achievements_check_reads_the_scheme_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = csv_file(tmp_path, 3)
    monkeypatch.setenv("SCHEME_MAX_ROWS", "2")
    assert achievements(["check", path, "--today", "2026-03-05", "--json"]) == 1
    assert '"code":"FILE_05"' in capsys.readouterr().out
    monkeypatch.setenv("SCHEME_MAX_ROWS", "3")
    monkeypatch.setenv("SCHEME_MAX_UPLOAD_BYTES", "100")
    assert achievements(["check", path, "--today", "2026-03-05", "--json"]) == 1
    assert '"code":"FILE_03"' in capsys.readouterr().out
    monkeypatch.setenv("SCHEME_MAX_UPLOAD_BYTES", "4096")
    achievements(["check", path, "--today", "2026-03-05", "--json"])
    assert '"file_errors":[]' in capsys.readouterr().out


def test_the_command_line_passes_the_scheme_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = csv_file(tmp_path, 3)
    monkeypatch.setenv("SCHEME_MAX_ROWS", "2")
    assert achievements(["check", path, "--today", "2026-03-05", "--json"]) == 1
    assert '"code":"FILE_05"' in capsys.readouterr().out
