"""Settings from the environment, the stand-in's own reference data, and its import boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.grant_standin.catalogue import load_catalogue
from services.grant_standin.faults import FaultConfig
from services.grant_standin.settings import DEFAULT_DATABASE_URL, Settings

PACKAGE = Path(__file__).resolve().parents[3] / "services" / "grant_standin"
SAFE_URL = "postgresql://u:pw-1@db/grant_standin?sslmode=verify-full"
ALLOWED_PIPELINE_MODULES = {
    "services.core.db",
    "services.core.logging",
    "services.core.serving",
    "services.core.scheme.reference",
    "services.core.settings",
}


def test_defaults_match_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"GRANT_STANDIN_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.database_url.get_secret_value().endswith("@127.0.0.1:55432/grant_standin")
    assert (settings.host, settings.port) == ("127.0.0.1", 8090)
    assert settings.token.get_secret_value() == "dev-grant-token"
    assert settings.admin_token.get_secret_value() == "dev-standin-admin-token"
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


def test_the_tokens_are_not_shown_in_the_settings_repr() -> None:
    settings = Settings(token="s3cret", admin_token="adm1n")
    assert "s3cret" not in repr(settings)
    assert "adm1n" not in repr(settings)


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("DEPLOYMENT_MODE", "production")
    for name in Settings.model_fields:
        monkeypatch.delenv(f"GRANT_STANDIN_{name.upper()}", raising=False)
    monkeypatch.setenv("GRANT_STANDIN_DATABASE_URL", SAFE_URL)
    monkeypatch.setenv("GRANT_STANDIN_TOKEN", "claims-token")
    monkeypatch.setenv("GRANT_STANDIN_ADMIN_TOKEN", "admin-token")
    return monkeypatch


def test_outside_local_mode_every_secret_is_set(production: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.token.get_secret_value() == "claims-token"
    assert settings.admin_token.get_secret_value() == "admin-token"


@pytest.mark.parametrize(
    "variable", ["GRANT_STANDIN_DATABASE_URL", "GRANT_STANDIN_TOKEN", "GRANT_STANDIN_ADMIN_TOKEN"]
)
def test_outside_local_mode_a_missing_secret_is_refused(
    production: pytest.MonkeyPatch, variable: str
) -> None:
    production.delenv(variable)
    with pytest.raises(ValueError, match=f"{variable} must be set") as refused:
        Settings()
    assert "pw-1" not in str(refused.value)
    assert "claims-token" not in str(refused.value)


def test_outside_local_mode_the_development_values_are_refused(
    production: pytest.MonkeyPatch,
) -> None:
    production.setenv("GRANT_STANDIN_DATABASE_URL", DEFAULT_DATABASE_URL)
    with pytest.raises(ValueError, match="GRANT_STANDIN_DATABASE_URL has no password or the dev"):
        Settings()
    production.setenv("GRANT_STANDIN_DATABASE_URL", SAFE_URL)
    production.setenv("GRANT_STANDIN_ADMIN_TOKEN", "dev-standin-admin-token")
    with pytest.raises(ValueError, match="GRANT_STANDIN_ADMIN_TOKEN is the development default"):
        Settings()


def test_the_admin_token_differs_from_the_claims_token() -> None:
    with pytest.raises(ValueError, match="GRANT_STANDIN_ADMIN_TOKEN must differ"):
        Settings(token="same", admin_token="same")


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
