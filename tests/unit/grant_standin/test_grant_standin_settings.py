"""Settings from the environment, the stand-in's own reference data, and its import boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.grant_standin.catalogue import load_catalogue
from services.grant_standin.faults import FaultConfig
from services.grant_standin.settings import Settings

PACKAGE = Path(__file__).resolve().parents[3] / "services" / "grant_standin"
ALLOWED_PIPELINE_MODULES = {
    "services.core.db",
    "services.core.logging",
    "services.core.scheme.reference",
}


def test_defaults_match_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"GRANT_STANDIN_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.database_url.get_secret_value().endswith("@127.0.0.1:55432/grant_standin")
    assert (settings.host, settings.port) == ("127.0.0.1", 8090)
    assert settings.token.get_secret_value() == "dev-grant-token"
    assert settings.fault_config() == FaultConfig(slow_delay_s=35.0)


def test_faults_are_read_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "FAIL_BEFORE_STORE": "0.1",
        "FAIL_AFTER_STORE": "0.2",
        "SLOW": "0.3",
        "SLOW_DELAY_S": "4",
        "RETRY_AFTER_FRACTION": "0.5",
        "RETRY_AFTER_S": "6",
        "DOWN": "true",
        "SEED": "7",
    }.items():
        monkeypatch.setenv(f"GRANT_STANDIN_{name}", value)
    assert Settings().fault_config() == FaultConfig(
        fail_before_store=0.1,
        fail_after_store=0.2,
        slow=0.3,
        slow_delay_s=4.0,
        retry_after_fraction=0.5,
        retry_after_s=6,
        down=True,
        seed=7,
    )


def test_a_fraction_above_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRANT_STANDIN_FAIL_AFTER_STORE", "1.5")
    with pytest.raises(ValueError, match="fail_after_store"):
        Settings()


def test_the_token_is_not_shown_in_the_settings_repr() -> None:
    assert "s3cret" not in repr(Settings(token="s3cret"))


def test_the_bundled_catalogue_knows_courses_and_employers() -> None:
    catalogue = load_catalogue()
    course = catalogue.course(" sd-wah-101 ")
    assert course is not None
    assert course.grant_pence == 6000
    assert catalogue.course("NOPE-1") is None
    eligible = catalogue.employer("m1286101")
    assert eligible is not None
    assert eligible.grant_eligible
    ineligible = catalogue.employer("P8533900")
    assert ineligible is not None
    assert not ineligible.grant_eligible


def test_a_catalogue_folder_can_replace_the_bundled_copy(tmp_path: Path) -> None:
    (tmp_path / "courses.csv").write_text(
        "code,title,tier,duration_hours,grant_pence,valid_from,valid_to\n"
        "XX-1,Test,1,1,123,2020-01-01,\n"
    )
    (tmp_path / "employers.csv").write_text("levy_number,employer_name,grant_eligible\nA1,E,true\n")
    catalogue = load_catalogue(tmp_path)
    assert catalogue.course("XX-1") is not None
    assert catalogue.course("SD-WAH-101") is None


def test_the_stand_in_imports_nothing_else_of_the_pipeline() -> None:
    """It plays another team's system: only shared infrastructure may be imported."""
    imported: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    pipeline = {
        name
        for name in imported
        if name.startswith("services") and not name.startswith("services.grant_standin")
    }
    assert pipeline <= ALLOWED_PIPELINE_MODULES
    assert "services.core.db" in pipeline
