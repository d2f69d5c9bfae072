"""Operators accountable: `achievements operator create|revoke`, the token every operator command
needs (ACHIEVEMENTS_OPERATOR_TOKEN), and `achievements audit`, against a test database.

The first operator is created on the database's credentials alone; after that only an operator
can create another, a revoked token is refused, and every operator action leaves an audit row
naming its operator and a target that is never a learner's identifier."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from services.cli import main
from services.core.db import create_pool
from services.core.settings import DeploymentMode, PostgresSettings
from tests.integration.validator.pipeline_helpers import validate_stored

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
LEARNER_ROW = (
    "PR-AMELINDA-77,SD-WAH-101,12/11/2026,Amelinda,Hartleyworth,14/03/1990,1000000043,"
    "AB123456C,H7654321,79049946,Prefers morning sessions"
)
PERSONAL = ("Amelinda", "Hartleyworth", "1000000043", "AB123456C", "H7654321", "1990")


@pytest.fixture
def environment(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("DEPLOYMENT_MODE", "local")
    for variable in (
        "ACHIEVEMENTS_OPERATOR_TOKEN",
        "ACHIEVEMENTS_LEARNER_ULN",
        "ACHIEVEMENTS_LEARNER_NI",
        "ACHIEVEMENTS_LEARNER_CITB_ID",
    ):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


class Cli:
    """`achievements ... --json` as a shell runs it, as the operator holding `token` (none
    when None): its exit status and its one JSON object."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def __call__(self, *argv: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
        if token is None:
            self._monkeypatch.delenv("ACHIEVEMENTS_OPERATOR_TOKEN", raising=False)
        else:
            self._monkeypatch.setenv("ACHIEVEMENTS_OPERATOR_TOKEN", token)
        self._capsys.readouterr()
        status = main([*argv, "--json"])
        out = self._capsys.readouterr().out
        return status, json.loads(out)


@pytest.fixture
def cli(
    environment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Cli:
    return Cli(monkeypatch, capsys)


def without_times(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(event["operator"], event["action"], event["target"]) for event in events]


def bootstrap(cli: Cli, name: str = "Ops Lead") -> str:
    status, created = cli("operator", "create", name)
    assert status == 0, created
    token: str = created["token"]
    return token


def test_the_first_operator_needs_only_the_database_then_only_an_operator_creates_one(
    cli: Cli,
) -> None:
    status, first = cli("operator", "create", "Ops Lead")
    assert status == 0
    assert first["operator"] == "Ops Lead"
    assert first["token"].startswith("op_")

    # The bootstrap is over: the database's credentials no longer suffice.
    assert cli("operator", "create", "Night Purge") == (
        2,
        {
            "code": "NO_OPERATOR_TOKEN",
            "message": "an operator exists: an operator command needs an operator's token in"
            " ACHIEVEMENTS_OPERATOR_TOKEN",
            "exit_code": 2,
        },
    )
    status, refused = cli("operator", "create", "Night Purge", token="op_" + "0" * 32 + "_x")
    assert (status, refused["code"]) == (3, "OPERATOR_REFUSED")
    status, second = cli("operator", "create", "Night Purge", token=first["token"])
    assert (status, second["operator"]) == (0, "Night Purge")
    assert second["token"] != first["token"]
    status, taken = cli("operator", "create", "Night Purge", token=first["token"])
    assert (status, taken["code"]) == (3, "OPERATOR_EXISTS")

    status, trail = cli("audit", token=second["token"])
    assert status == 0
    assert without_times(trail["events"]) == [
        ("Ops Lead", "operator_created", "operator:Ops Lead"),
        ("Ops Lead", "operator_created", "operator:Night Purge"),
    ]


def test_the_token_is_stored_only_as_a_hash(cli: Cli, database_url: str) -> None:
    token = bootstrap(cli)

    async def stored() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch("SELECT * FROM operators")
        finally:
            await connection.close()

    rows = asyncio.run(stored())
    assert len(rows) == 1
    stored_text = repr([dict(row) for row in rows])
    secret = token.split("_", 2)[2]  # op_<operator id>_<secret>; the secret may hold "_"
    assert token not in stored_text
    assert secret not in stored_text
    assert len(rows[0]["token_hash"]) == 32  # SHA-256


def test_a_revoked_token_is_refused(cli: Cli) -> None:
    lead = bootstrap(cli)
    _, night = cli("operator", "create", "Night Purge", token=lead)

    assert cli("operator", "revoke", "Night Purge", token=lead) == (
        0,
        {"operator": "Night Purge", "revoked": True},
    )

    assert cli("purge", token=night["token"]) == (
        3,
        {
            "code": "OPERATOR_REFUSED",
            "message": "ACHIEVEMENTS_OPERATOR_TOKEN holds no active operator's token",
            "exit_code": 3,
        },
    )
    status, refused = cli("audit", token=night["token"])
    assert (status, refused["code"]) == (3, "OPERATOR_REFUSED")
    # Gone already, and the last active operator stays.
    assert cli("operator", "revoke", "Night Purge", token=lead) == (
        1,
        {"operator": "Night Purge", "revoked": False},
    )
    status, last = cli("operator", "revoke", "Ops Lead", token=lead)
    assert (status, last["code"]) == (3, "LAST_OPERATOR")
    _, trail = cli("audit", token=lead)
    assert without_times(trail["events"])[-1] == (
        "Ops Lead",
        "operator_revoked",
        "operator:Night Purge",
    )


def test_an_operator_command_without_a_token_does_nothing(cli: Cli, database_url: str) -> None:
    bootstrap(cli)

    for argv in (("ato", "create", "Example Training Ltd"), ("purge",), ("audit",)):
        status, failure = cli(*argv)
        assert (status, failure["code"]) == (2, "NO_OPERATOR_TOKEN"), argv

    async def atos() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            count: int = await connection.fetchval("SELECT count(*) FROM atos")
            return count
        finally:
            await connection.close()

    assert asyncio.run(atos()) == 0


async def _validated_upload(database_url: str, storage: Path, ato_id: str) -> uuid.UUID:
    """One accepted upload of the learner's row for `ato_id`, its outcome then dated 40 days
    back so that the purge takes it."""
    pool = await create_pool(
        PostgresSettings(database_url=SecretStr(database_url), deployment_mode=DeploymentMode.LOCAL)
    )
    try:
        upload = await validate_stored(
            pool, storage, f"{HEADER}\r\n{LEARNER_ROW}\r\n".encode(), ato_id=ato_id
        )
        await pool.execute(
            "UPDATE uploads SET validated_at = validated_at - interval '40 days'"
            " WHERE upload_id = $1",
            upload["upload_id"],
        )
        upload_id: uuid.UUID = upload["upload_id"]
        return upload_id
    finally:
        await pool.close()


async def _last_purge_run(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        run_id: int = await connection.fetchval("SELECT max(run_id) FROM purge_runs")
        return run_id
    finally:
        await connection.close()


def test_every_operator_action_leaves_an_audit_row_naming_its_operator(
    cli: Cli, environment: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = datetime.now(UTC)
    lead = bootstrap(cli)

    _, ato = cli("ato", "create", "Amelinda Hartleyworth Training", token=lead)
    _, second_key = cli("ato", "key", "create", ato["ato_id"], token=lead)
    assert cli("ato", "key", "revoke", second_key["key_id"], token=lead)[0] == 0
    upload_id = asyncio.run(_validated_upload(database_url, environment, ato["ato_id"]))
    monkeypatch.setenv("ACHIEVEMENTS_LEARNER_ULN", "1000000043")
    requests = []
    for action in ("find", "export", "erase"):
        status, result = cli("learner", action, "--ato", ato["ato_id"], token=lead)
        assert status == 0, result
        requests.append(result["request_id"])
    assert cli("purge", token=lead)[0] == 0
    run_id = asyncio.run(_last_purge_run(database_url))

    status, trail = cli("audit", token=lead)

    assert status == 0
    assert without_times(trail["events"]) == [
        ("Ops Lead", "operator_created", "operator:Ops Lead"),
        ("Ops Lead", "ato_created", f"ato:{ato['ato_id']}"),
        ("Ops Lead", "key_created", f"key:{ato['key_id']}"),
        ("Ops Lead", "key_created", f"key:{second_key['key_id']}"),
        ("Ops Lead", "key_revoked", f"key:{second_key['key_id']}"),
        ("Ops Lead", "learner_found", f"learner-request:{requests[0]}"),
        ("Ops Lead", "learner_exported", f"learner-request:{requests[1]}"),
        ("Ops Lead", "learner_erased", f"learner-request:{requests[2]}"),
        ("Ops Lead", "upload_purged", f"upload:{upload_id}"),
        ("Ops Lead", "purge_ran", f"purge-run:{run_id}"),
    ]
    times = [datetime.fromisoformat(event["at"]) for event in trail["events"]]
    assert times == sorted(times)
    assert started <= times[0]
    assert times[-1] <= datetime.now(UTC)
    text = json.dumps(trail)
    for needle in PERSONAL:
        assert needle not in text


def test_the_audit_is_filtered_by_operator_and_time(cli: Cli) -> None:
    lead = bootstrap(cli)
    _, night = cli("operator", "create", "Night Purge", token=lead)
    assert cli("purge", token=night["token"])[0] == 0

    _, theirs = cli("audit", "--operator", "Night Purge", token=lead)
    assert [(e["operator"], e["action"]) for e in theirs["events"]] == [
        ("Night Purge", "purge_ran")
    ]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert cli("audit", "--since", tomorrow, token=lead) == (0, {"events": []})
    _, nobody = cli("audit", "--operator", "Nobody", token=lead)
    assert nobody == {"events": []}
