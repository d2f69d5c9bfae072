"""The retention purge: once an upload's outcome is older than the retention period its file,
masked values and learner fields are gone, its status and counts stay, and DUP_02 and FILE_07
still recognise what it accepted."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import polars as pl
import pytest
from pydantic import SecretStr, ValidationError

from services.core.retention import purge, purge_command
from services.core.settings import (
    DEV_RETENTION_KEY_SECRET,
    CommonSettings,
    PostgresSettings,
    RetentionSettings,
    StorageSettings,
)
from services.core.storage import FolderStorage
from services.validator import duplicates
from tests.integration.validator.pipeline_helpers import validate_stored

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
# One learner, every personal field distinctive enough to be searched for anywhere.
LEARNER = {
    "provider_reference": "PR-AMELINDA-77",
    "forename": "Amelinda",
    "surname": "Hartleyworth",
    "uln": "1000000043",
    "ni_number": "AB123456C",
    "citb_individual_id": "H7654321",
    "notes": "Prefers morning sessions",
}
LEARNER_ROW = (
    "PR-AMELINDA-77,SD-WAH-101,12/11/2026,Amelinda,Hartleyworth,14/03/1990,1000000043,"
    "AB123456C,H7654321,79049946,Prefers morning sessions"
)
OTHER_ROW = "REF-2,SD-WAH-101,12/11/2026,Bartholomew,Quince,02/07/1985,1234567899,,,79049946,"
# An invalid ULN (check digit): its issue carries a partly masked value.
INVALID_ROW = "REF-3,SD-WAH-101,12/11/2026,Cosima,Pendle,02/07/1985,1000000044,,,79049946,"
FILE_NAME = "Amelinda Hartleyworth.csv"
SETTINGS = RetentionSettings(days=30, batch_size=2, upload_batch_size=2)


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


async def accept(
    pool: asyncpg.Pool, root: Path, content: bytes, ato_id: str | None = None
) -> dict[str, Any]:
    """Validates an upload through the pipeline and names its file after the learner."""
    upload = await validate_stored(pool, root, content, policy="valid_rows", ato_id=ato_id)
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE uploads SET file_name = $2 WHERE upload_id = $1", upload["upload_id"], FILE_NAME
        )
    return upload


async def settle_claims(pool: asyncpg.Pool, upload_id: uuid.UUID) -> None:
    """What the grant bridge records when the grant system accepts the claims."""
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE achievements SET grant_state = 'claimed', claimed_at = now(),"
            " grant_amount_pence = 1000 WHERE upload_id = $1 AND grant_state = 'held'",
            upload_id,
        )


def after_retention(upload: dict[str, Any], days: int = 31) -> datetime:
    outcome: datetime = upload["validated_at"]
    return outcome + timedelta(days=days)


async def text_columns(connection: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await connection.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND data_type IN"
        " ('text', 'character varying', 'jsonb', 'json', 'ARRAY', 'USER-DEFINED')"
        " ORDER BY table_name, column_name"
    )
    return [(row["table_name"], row["column_name"]) for row in rows]


async def where_found(pool: asyncpg.Pool, needles: list[str]) -> list[str]:
    """Every (table.column, needle) where a text column of any table holds a needle."""
    found = []
    async with pool.acquire() as connection:
        for table, column in await text_columns(connection):
            for needle in needles:
                hits = await connection.fetchval(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE $1',
                    f"%{needle}%",
                )
                if hits:
                    found.append(f"{table}.{column}: {needle}")
        dates = await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type = 'date'"
        )
        for row in dates:
            hits = await connection.fetchval(
                f'SELECT count(*) FROM "{row["table_name"]}" WHERE "{row["column_name"]}"'
                " = '1990-03-14'::date"
            )
            if hits:
                found.append(f"{row['table_name']}.{row['column_name']}: date of birth")
    return found


def files_holding(root: Path, needles: list[str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {n}" for n in needles if n.encode() in data]
    return found


NEEDLES = [*LEARNER.values(), "Bartholomew", "Quince", "1234567899", "Amelinda Hartleyworth"]


async def test_a_purged_upload_keeps_its_status_and_counts_and_holds_no_personal_data(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    upload = await accept(pool, tmp_path, csv_file(LEARNER_ROW, OTHER_ROW, INVALID_ROW))
    assert upload["status"] == "partially_accepted"
    await settle_claims(pool, upload["upload_id"])
    kept = (
        "status, rows_total, rows_valid, rows_invalid, rows_warned, counts_by_code, sha256,"
        " size_bytes, validated_at, received_at"
    )
    kept_of_achievements = (
        "SELECT row_number, course_code, achievement_date, levy_number, grant_eligible,"
        " grant_state, grant_amount_pence, claimed_at FROM achievements WHERE upload_id = $1"
        " ORDER BY row_number"
    )
    async with pool.acquire() as connection:
        before = await connection.fetchrow(
            f"SELECT {kept} FROM uploads WHERE upload_id = $1", upload["upload_id"]
        )
        achievements_before = await connection.fetch(kept_of_achievements, upload["upload_id"])
        masked_before = await connection.fetchval(
            "SELECT count(*) FROM row_issues WHERE masked_value IS NOT NULL"
        )
        # A chunk task with its duplicate keys, as a validator that died just after deciding
        # the outcome (and before forgetting the tasks) would leave it, with no validator since.
        await connection.execute(
            "INSERT INTO validation_chunks"
            " (upload_id, chunk_no, ato_id, segments, state, duplicate_keys)"
            " VALUES ($1, 0, $2, '{0,10,2}', 'done', $3)",
            upload["upload_id"],
            upload["ato_id"],
            b"SD-WAH-101|2026-11-12|uln|1234567899",
        )
    assert len(achievements_before) == 2
    assert masked_before >= 1
    assert await where_found(pool, NEEDLES)  # the search finds them before the purge
    assert files_holding(tmp_path, NEEDLES)

    report = await purge(pool, FolderStorage(tmp_path), SETTINGS, after_retention(upload))

    assert (report.uploads_purged, report.files_deleted, report.achievements_purged) == (1, 1, 2)
    assert report.duplicate_keys_hashed == 4  # three identifiers of one learner, one of another
    async with pool.acquire() as connection:
        after = await connection.fetchrow(
            f"SELECT {kept} FROM uploads WHERE upload_id = $1", upload["upload_id"]
        )
        achievements_after = await connection.fetch(kept_of_achievements, upload["upload_id"])
        marks = await connection.fetchrow(
            "SELECT purged_at, achievements_purged_at, file_name FROM uploads WHERE upload_id = $1",
            upload["upload_id"],
        )
        masked_after = await connection.fetchval(
            "SELECT count(*) FROM row_issues WHERE masked_value IS NOT NULL"
        )
        issues_after = await connection.fetchval("SELECT count(*) FROM row_issues")
    assert after == before
    assert achievements_after == achievements_before
    assert marks["purged_at"] is not None
    assert marks["achievements_purged_at"] is not None
    assert marks["file_name"] == f"{upload['upload_id']}.csv"
    assert (masked_after, issues_after) == (0, 1)  # the issue stays, without its value
    assert await where_found(pool, NEEDLES) == []
    assert files_holding(tmp_path, NEEDLES) == []
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM validation_chunks") == 0

    again = await purge(pool, FolderStorage(tmp_path), SETTINGS, after_retention(upload, 40))
    assert (again.uploads_purged, again.achievements_purged, again.files_deleted) == (0, 0, 0)


async def test_nothing_is_purged_before_the_retention_period_nor_an_unsettled_claim(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    upload = await accept(pool, tmp_path, csv_file(LEARNER_ROW))
    storage = FolderStorage(tmp_path)

    early = await purge(pool, storage, SETTINGS, after_retention(upload, 29))
    assert (early.uploads_purged, early.achievements_purged) == (0, 0)
    assert storage.path(FolderStorage.key_for(upload["upload_id"])).exists()

    # Past the period the file goes, but a claim not yet answered keeps its learner's fields.
    async with pool.acquire() as connection:
        state = await connection.fetchval(
            "SELECT grant_state FROM achievements WHERE upload_id = $1", upload["upload_id"]
        )
    assert state == "held"
    late = await purge(pool, storage, SETTINGS, after_retention(upload))
    assert (late.uploads_purged, late.achievements_purged) == (1, 0)
    assert not storage.path(FolderStorage.key_for(upload["upload_id"])).exists()
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT forename FROM achievements WHERE upload_id = $1", upload["upload_id"]
            )
            == LEARNER["forename"]
        )

    await settle_claims(pool, upload["upload_id"])
    settled = await purge(pool, storage, SETTINGS, after_retention(upload, 32))
    assert (settled.uploads_purged, settled.achievements_purged) == (0, 1)
    assert await where_found(pool, list(LEARNER.values())) == []


async def test_a_retention_in_seconds_purges_within_the_hour(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    upload = await accept(pool, tmp_path, csv_file(LEARNER_ROW))
    storage = FolderStorage(tmp_path)
    ten_minutes = RetentionSettings(seconds=600, batch_size=2, upload_batch_size=2)
    outcome = upload["validated_at"]

    early = await purge(pool, storage, ten_minutes, outcome + timedelta(seconds=599))
    assert early.uploads_purged == 0
    late = await purge(pool, storage, ten_minutes, outcome + timedelta(seconds=601))
    assert late.uploads_purged == 1
    assert not storage.path(FolderStorage.key_for(upload["upload_id"])).exists()


async def test_sent_events_and_old_processed_event_records_are_deleted(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    settings = RetentionSettings(
        sent_events_kept_s=600, processed_events_kept_s=3600, work_batch_size=2
    )
    async with pool.acquire() as connection:
        for key, sent_at in (
            ("sent-long-ago-1", now - timedelta(seconds=601)),
            ("sent-long-ago-2", now - timedelta(hours=5)),
            ("sent-long-ago-3", now - timedelta(days=2)),
            ("sent-just-now", now - timedelta(seconds=599)),
            ("never-sent", None),
        ):
            await connection.execute(
                "INSERT INTO outbox (topic, key, event_type, payload, sent_at)"
                " VALUES ('t', $1, 'upload.validated', '{}', $2)",
                key,
                sent_at,
            )
        for processed_at in (now - timedelta(seconds=3601), now - timedelta(seconds=3599)):
            await connection.execute(
                "INSERT INTO processed_events (consumer, event_id, processed_at)"
                " VALUES ('grant-bridge', $1, $2)",
                uuid.uuid4(),
                processed_at,
            )

    report = await purge(pool, FolderStorage(tmp_path), settings, now)

    assert (report.sent_events_deleted, report.processed_events_deleted) == (3, 1)
    async with pool.acquire() as connection:
        kept = await connection.fetch("SELECT key FROM outbox ORDER BY key")
        assert [row["key"] for row in kept] == ["never-sent", "sent-just-now"]
        assert await connection.fetchval("SELECT count(*) FROM processed_events") == 1


async def test_dup_02_still_fires_for_a_re_upload_of_a_purged_achievement(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await accept(pool, tmp_path, csv_file(LEARNER_ROW))
    await settle_claims(pool, first["upload_id"])
    await purge(pool, FolderStorage(tmp_path), SETTINGS, after_retention(first))
    ato_id = first["ato_id"]
    # The chunk's keys as the validator builds them, for a new upload of the same ATO.
    keys = pl.DataFrame(
        {
            "row_number": [2, 3, 4],
            "key": [
                "SD-WAH-101|2026-11-12|uln|1000000043",
                "SD-WAH-101|2026-11-12|ni_number|AB123456C",
                "SD-WAH-101|2026-11-12|uln|1234567899",
            ],
        },
        schema={"row_number": pl.Int32, "key": pl.String},
    )
    new_upload = uuid.uuid4()
    async with pool.acquire() as connection:
        found = await duplicates.chunk_earlier_upload_duplicates(
            connection, ato_id, new_upload, keys, SETTINGS
        )
        other_ato = await duplicates.chunk_earlier_upload_duplicates(
            connection, "ATO-SOMEONE-ELSE", new_upload, keys, SETTINGS
        )
        other_key = await duplicates.chunk_earlier_upload_duplicates(
            connection,
            ato_id,
            new_upload,
            keys,
            RetentionSettings(key_secret=SecretStr("another-secret")),
        )
        stored = await connection.fetch("SELECT key_hmac FROM purged_duplicate_keys")
    assert found == {2, 3}
    assert other_ato == set()
    assert other_key == set()  # matched by the keyed hash: the identifiers are gone
    assert all(b"1000000043" not in row["key_hmac"] for row in stored)

    # Through the whole pipeline: another file with the same achievement, then the same bytes.
    again = await validate_stored(
        pool, tmp_path, csv_file(OTHER_ROW, LEARNER_ROW), policy="valid_rows", ato_id=ato_id
    )
    assert again["counts_by_code"] == {"DUP_02": 1}
    assert [(i["row"], i["code"]) for i in again["issues"]] == [(3, "DUP_02")]
    same_bytes = await validate_stored(pool, tmp_path, csv_file(LEARNER_ROW), ato_id=ato_id)
    assert (same_bytes["status"], same_bytes["file_error_code"]) == ("rejected", "FILE_07")


async def test_a_withdrawn_purged_achievement_is_no_duplicate(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await accept(pool, tmp_path, csv_file(LEARNER_ROW))
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE achievements SET grant_state = 'withdrawn', withdrawn_at = now()"
            " WHERE upload_id = $1",
            first["upload_id"],
        )
    report = await purge(pool, FolderStorage(tmp_path), SETTINGS, after_retention(first))
    assert (report.achievements_purged, report.duplicate_keys_hashed) == (1, 0)

    # Other bytes (the same ones would be FILE_07: the upload itself was not withdrawn).
    again = await validate_stored(
        pool, tmp_path, csv_file(OTHER_ROW, LEARNER_ROW), ato_id=first["ato_id"]
    )
    assert (again["status"], again["counts_by_code"]) == ("passed", {})


async def test_orphaned_part_files_older_than_a_day_are_removed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    now = datetime.fromisoformat("2026-12-01T12:00:00+00:00")
    folder = tmp_path / "uploads"
    folder.mkdir()
    old_part, fresh_part, stored = folder / "a.part", folder / "b.part", folder / "c.csv"
    for path in (old_part, fresh_part, stored):
        path.write_bytes(b"Amelinda")
    two_days_ago = (now - timedelta(days=2)).timestamp()
    os.utime(old_part, (two_days_ago, two_days_ago))
    os.utime(stored, (two_days_ago, two_days_ago))
    an_hour_ago = (now - timedelta(hours=1)).timestamp()
    os.utime(fresh_part, (an_hour_ago, an_hour_ago))
    storage = FolderStorage(tmp_path)

    preview = await purge(pool, storage, SETTINGS, now, dry_run=True)
    assert preview.part_files_deleted == 1
    assert old_part.exists()

    report = await purge(pool, storage, SETTINGS, now)

    assert report.part_files_deleted == 1
    assert (old_part.exists(), fresh_part.exists(), stored.exists()) == (False, True, True)


async def test_a_dry_run_counts_what_a_run_would_do_and_changes_nothing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    upload = await accept(pool, tmp_path, csv_file(LEARNER_ROW, OTHER_ROW, INVALID_ROW))
    await settle_claims(pool, upload["upload_id"])
    storage = FolderStorage(tmp_path)

    preview = await purge(pool, storage, SETTINGS, after_retention(upload), dry_run=True)

    assert (preview.uploads_purged, preview.files_deleted, preview.achievements_purged) == (1, 1, 2)
    assert preview.masked_values_cleared >= 1
    assert files_holding(tmp_path, ["Amelinda"])
    assert "achievements.forename: Amelinda" in await where_found(pool, ["Amelinda"])
    report = await purge(pool, storage, SETTINGS, after_retention(upload))
    assert (report.uploads_purged, report.files_deleted, report.achievements_purged) == (1, 1, 2)
    assert report.masked_values_cleared == preview.masked_values_cleared


async def test_purges_running_at_once_share_the_work_and_leave_nothing(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await accept(pool, tmp_path, csv_file(LEARNER_ROW, OTHER_ROW))
    uploads = [first]
    for day in range(2, 7):
        content = csv_file(LEARNER_ROW.replace("12/11/2026", f"0{day}/11/2026"))
        uploads.append(await accept(pool, tmp_path, content, ato_id=first["ato_id"]))
    for upload in uploads:
        await settle_claims(pool, upload["upload_id"])
    now = max(after_retention(upload) for upload in uploads)
    storage = FolderStorage(tmp_path)

    reports = await asyncio.gather(*(purge(pool, storage, SETTINGS, now) for _ in range(3)))

    assert sum(r.uploads_purged for r in reports) == len(uploads)
    assert sum(r.achievements_purged for r in reports) == len(uploads) + 1
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM uploads WHERE achievements_purged_at IS NULL"
            )
            == 0
        )
        # Each purged achievement's keys once, however many purges saw it.
        assert await connection.fetchval("SELECT count(*) FROM purged_duplicate_keys") == (
            3 * len(uploads) + 1
        )
    assert await where_found(pool, NEEDLES) == []


def test_the_hash_key_is_required_outside_local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", "production")
    monkeypatch.delenv("RETENTION_KEY_SECRET", raising=False)
    with pytest.raises(ValidationError, match="RETENTION_KEY_SECRET must be set"):
        RetentionSettings()
    monkeypatch.setenv("RETENTION_KEY_SECRET", DEV_RETENTION_KEY_SECRET)
    with pytest.raises(ValidationError, match="development default") as refused:
        RetentionSettings()
    assert DEV_RETENTION_KEY_SECRET not in str(refused.value)
    monkeypatch.setenv("RETENTION_KEY_SECRET", "a-real-secret-of-32-bytes-from-the-vault")
    monkeypatch.setenv("RETENTION_DAYS", "90")
    settings = RetentionSettings()
    assert settings.days == 90
    monkeypatch.setenv("RETENTION_SECONDS", "600")
    with pytest.raises(ValidationError, match="RETENTION_SECONDS is for tests"):
        RetentionSettings()
    assert settings.key_secret.get_secret_value() == "a-real-secret-of-32-bytes-from-the-vault"


async def test_the_command_answers_with_json_counts(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    upload = await accept(pool, tmp_path, csv_file(LEARNER_ROW))
    await settle_claims(pool, upload["upload_id"])
    common = CommonSettings(
        postgres=PostgresSettings(database_url=database_url),
        storage=StorageSettings(root=tmp_path),
    )
    now = after_retention(upload)

    preview = await purge_command(common, SETTINGS, dry_run=True, now=now)
    done = await purge_command(common, SETTINGS, now=now)

    assert preview == done | {"dry_run": True, "duplicate_keys_hashed": 0}
    assert json.loads(json.dumps(done)) == {
        "dry_run": False,
        "cutoff": (now - timedelta(days=30)).isoformat(),
        "uploads_purged": 1,
        "files_deleted": 1,
        "masked_values_cleared": 0,
        "achievements_purged": 1,
        "duplicate_keys_hashed": 3,
        "part_files_deleted": 0,
        "sent_events_deleted": 0,
        "processed_events_deleted": 0,
    }


async def test_rejected_and_withdrawn_uploads_lose_their_files_too(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    storage = FolderStorage(tmp_path)
    rejected = await validate_stored(pool, tmp_path, b"Amelinda,Hartleyworth,1000000043\r\n")
    assert rejected["status"] == "rejected"
    withdrawn = await accept(pool, tmp_path, csv_file(LEARNER_ROW), ato_id=rejected["ato_id"])
    withdrawn_at = withdrawn["validated_at"] + timedelta(days=10)
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE uploads SET withdrawn_at = $2 WHERE upload_id = $1",
            withdrawn["upload_id"],
            withdrawn_at,
        )
        await connection.execute(
            "UPDATE achievements SET grant_state = 'withdrawn', withdrawn_at = $2"
            " WHERE upload_id = $1",
            withdrawn["upload_id"],
            withdrawn_at,
        )

    # The withdrawal is the withdrawn upload's outcome: its period starts then.
    first = await purge(pool, storage, SETTINGS, after_retention(withdrawn))
    assert first.uploads_purged == 1
    assert not storage.path(FolderStorage.key_for(rejected["upload_id"])).exists()
    assert storage.path(FolderStorage.key_for(withdrawn["upload_id"])).exists()

    second = await purge(pool, storage, SETTINGS, withdrawn_at + timedelta(days=31))
    assert (second.uploads_purged, second.achievements_purged) == (1, 1)
    assert files_holding(tmp_path, NEEDLES) == []
    assert await where_found(pool, NEEDLES) == []
    async with pool.acquire() as connection:
        statuses = await connection.fetch(
            "SELECT status, file_error_code FROM uploads ORDER BY received_at"
        )
    assert [(s["status"], s["file_error_code"]) for s in statuses] == [
        ("rejected", rejected["file_error_code"]),
        (withdrawn["status"], None),
    ]
