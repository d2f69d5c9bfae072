"""One learner's requests (find, export, erase) reach that learner's records in one ATO's
uploads and nothing of another ATO's, even for the same learner."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.core.events import Topics
from services.core.learner_requests import (
    IdentifierKind,
    Learner,
    NoIdentifier,
    erase,
    export,
    find,
    learner_command,
)
from services.core.retention import purge
from services.core.settings import CommonSettings, PostgresSettings, RetentionSettings
from services.core.storage import FolderStorage
from tests.integration.validator.pipeline_helpers import validate_stored

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
LEARNER_ROW = (
    "PR-AMELINDA-77,SD-WAH-101,12/11/2026,Amelinda,Hartleyworth,14/03/1990,1000000043,"
    "AB123456C,H7654321,79049946,Prefers morning sessions"
)
# The same learner's achievement of another day, and another learner.
SECOND_COURSE_ROW = LEARNER_ROW.replace("12/11/2026", "05/11/2026")
OTHER_ROW = "REF-2,SD-WAH-101,12/11/2026,Bartholomew,Quince,02/07/1985,1234567899,,,79049946,"
RETENTION = RetentionSettings(days=30)
TOPICS = Topics("unused.")


def csv_file(*rows: str) -> bytes:
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


async def two_atos_with_the_same_learner(
    pool: asyncpg.Pool, root: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    mine = await validate_stored(pool, root, csv_file(LEARNER_ROW, OTHER_ROW))
    theirs = await validate_stored(pool, root, csv_file(LEARNER_ROW, OTHER_ROW))
    assert mine["ato_id"] != theirs["ato_id"]
    assert mine["status"] == theirs["status"] == "passed"
    return mine, theirs


def learner(ato_id: str, uln: str = "10 0000 0043") -> Learner:
    return Learner.of(ato_id, IdentifierKind.ULN, uln)


async def test_find_lists_the_learners_rows_in_this_atos_uploads_only(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    mine, theirs = await two_atos_with_the_same_learner(pool, tmp_path)
    second = await validate_stored(
        pool, tmp_path, csv_file(SECOND_COURSE_ROW), ato_id=mine["ato_id"]
    )
    now = datetime.now(UTC)
    async with pool.acquire() as connection:
        found = await find(connection, learner(mine["ato_id"]), now)
        by_ni = await find(
            connection, Learner.of(mine["ato_id"], IdentifierKind.NI_NUMBER, "ab 12 34 56 c"), now
        )

    rows = [(a["upload_id"], a["row_number"]) for a in found["achievements"]]
    assert rows == [(str(mine["upload_id"]), 2), (str(second["upload_id"]), 2)]
    assert [a["upload_status"] for a in found["achievements"]] == [
        mine["status"],
        second["status"],
    ]
    assert {a["grant_state"] for a in found["achievements"]} == {"held"}
    assert [a["upload_id"] for a in by_ni["achievements"]] == [a for a, _ in rows]
    assert str(theirs["upload_id"]) not in str(found)


async def test_export_returns_the_learners_records_as_json(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    mine, _ = await two_atos_with_the_same_learner(pool, tmp_path)
    async with pool.acquire() as connection:
        exported = await export(connection, learner(mine["ato_id"]), datetime.now(UTC))

    (record,) = exported["records"]
    assert record["forename"] == "Amelinda"
    assert record["surname"] == "Hartleyworth"
    assert record["date_of_birth"] == "1990-03-14"
    assert (record["uln"], record["ni_number"], record["citb_individual_id"]) == (
        "1000000043",
        "AB123456C",
        "H7654321",
    )
    assert record["notes"] == "Prefers morning sessions"
    assert record["upload_id"] == str(mine["upload_id"])
    assert record["issues"] == []


async def test_erase_withdraws_unclaimed_erases_settled_and_leaves_another_ato_untouched(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    mine, theirs = await two_atos_with_the_same_learner(pool, tmp_path)
    second = await validate_stored(
        pool, tmp_path, csv_file(SECOND_COURSE_ROW), ato_id=mine["ato_id"]
    )
    async with pool.acquire() as connection:
        # The first upload's claim was answered already; the second is still in its window.
        await connection.execute(
            "UPDATE achievements SET grant_state = 'claimed', claimed_at = now()"
            " WHERE upload_id = $1",
            mine["upload_id"],
        )
        result = await erase(
            connection,
            FolderStorage(tmp_path),
            TOPICS,
            RETENTION,
            learner(mine["ato_id"]),
            datetime.now(UTC),
        )
        mine_rows = await connection.fetch(
            "SELECT row_number, forename, surname, date_of_birth, uln, ni_number,"
            " citb_individual_id, notes, provider_reference, grant_state, course_code,"
            " purged_at FROM achievements WHERE ato_id = $1 ORDER BY upload_id, row_number",
            mine["ato_id"],
        )
        theirs_rows = await connection.fetch(
            "SELECT forename, uln, ni_number, purged_at FROM achievements"
            " WHERE ato_id = $1 AND row_number = 2",
            theirs["ato_id"],
        )
        withdrawn_events = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE payload::json->>'event_type' = 'claim.withdrawn'"
        )
        hashes = await connection.fetchval(
            "SELECT count(*) FROM purged_duplicate_keys WHERE ato_id = $1", mine["ato_id"]
        )
        names = await connection.fetch(
            "SELECT file_name FROM uploads WHERE ato_id = $1", mine["ato_id"]
        )

    assert result["achievements_erased"] == 2
    assert result["achievements_withdrawn"] == 1
    assert result["achievements_deferred"] == 0
    assert result["files_deleted"] == 2
    assert withdrawn_events == 1
    assert hashes == 3  # the claimed one's three keys; a withdrawn one never counts again
    erased = [r for r in mine_rows if r["purged_at"] is not None]
    assert len(erased) == 2
    for row in erased:
        assert [row[f] for f in ("forename", "surname", "date_of_birth", "uln", "ni_number")] == [
            None
        ] * 5
        assert row["citb_individual_id"] is None
        assert row["notes"] is None
        assert row["course_code"] == "SD-WAH-101"
    assert sorted(r["grant_state"] for r in erased) == ["claimed", "withdrawn"]
    # The other learner of my upload keeps their record.
    assert [r["forename"] for r in mine_rows if r["purged_at"] is None] == ["Bartholomew"]
    assert not FolderStorage(tmp_path).path(FolderStorage.key_for(second["upload_id"])).exists()
    assert all("Amelinda" not in r["file_name"] for r in names)
    # Another ATO's identical learner: untouched, and so is its file.
    assert [(r["forename"], r["uln"], r["ni_number"], r["purged_at"]) for r in theirs_rows] == [
        ("Amelinda", "1000000043", "AB123456C", None)
    ]
    assert FolderStorage(tmp_path).path(FolderStorage.key_for(theirs["upload_id"])).exists()
    async with pool.acquire() as connection:
        assert (await find(connection, learner(mine["ato_id"]), datetime.now(UTC)))[
            "achievements"
        ] == []
        assert (
            len(
                (await find(connection, learner(theirs["ato_id"]), datetime.now(UTC)))[
                    "achievements"
                ]
            )
            == 1
        )
        again = await erase(
            connection,
            FolderStorage(tmp_path),
            TOPICS,
            RETENTION,
            learner(mine["ato_id"]),
            datetime.now(UTC),
        )
    assert (again["achievements_erased"], again["files_deleted"]) == (0, 0)


async def test_a_claim_under_way_is_erased_by_the_purge_once_it_is_answered(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    mine, _ = await two_atos_with_the_same_learner(pool, tmp_path)
    async with pool.acquire() as connection:
        # Past its amendment window: the claim is the bridge's now, and needs the data.
        await connection.execute(
            "UPDATE uploads SET release_at = now() - interval '1 hour' WHERE upload_id = $1",
            mine["upload_id"],
        )
        result = await erase(
            connection,
            FolderStorage(tmp_path),
            TOPICS,
            RETENTION,
            learner(mine["ato_id"]),
            datetime.now(UTC),
        )
    assert (result["achievements_erased"], result["achievements_deferred"]) == (0, 1)

    # Long before the retention period ends, the purge erases it as soon as it is settled.
    soon = datetime.now(UTC) + timedelta(days=1)
    waiting = await purge(pool, FolderStorage(tmp_path), RETENTION, soon)
    assert waiting.achievements_purged == 0
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE achievements SET grant_state = 'claimed' WHERE upload_id = $1 AND uln IS NOT"
            " NULL AND row_number = 2",
            mine["upload_id"],
        )
    answered = await purge(pool, FolderStorage(tmp_path), RETENTION, soon)
    assert (answered.achievements_purged, answered.duplicate_keys_hashed) == (1, 3)
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM achievements WHERE forename = 'Amelinda' AND ato_id = $1",
                mine["ato_id"],
            )
            == 0
        )


async def test_requests_leave_an_audit_trail_without_the_identifier(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    mine, _ = await two_atos_with_the_same_learner(pool, tmp_path)
    async with pool.acquire() as connection:
        for request in (find, export):
            await request(connection, learner(mine["ato_id"]), datetime.now(UTC))
        await erase(
            connection,
            FolderStorage(tmp_path),
            TOPICS,
            RETENTION,
            learner(mine["ato_id"]),
            datetime.now(UTC),
        )
        events = await connection.fetch(
            "SELECT kind, ato_id, upload_id, key_id FROM audit_events ORDER BY event_id"
        )
    assert [(e["kind"], e["ato_id"], e["upload_id"]) for e in events] == [
        (kind, mine["ato_id"], mine["upload_id"])
        for kind in ("learner_found", "learner_exported", "learner_erased")
    ]
    assert "1000000043" not in str([dict(e) for e in events])


async def test_the_command_takes_exactly_one_identifier(database_url: str, tmp_path: Path) -> None:
    common = CommonSettings(postgres=PostgresSettings(database_url=database_url))
    with pytest.raises(ValueError, match="exactly one"):
        await learner_command(
            common, RETENTION, action="find", ato_id="ATO-X", uln="1000000043", ni_number="AB1"
        )
    with pytest.raises(NoIdentifier):
        await learner_command(common, RETENTION, action="find", ato_id="ATO-X", uln="   ")
    found = await learner_command(
        common, RETENTION, action="find", ato_id=f"ATO-{uuid.uuid4().hex[:6]}", citb_id="H7654321"
    )
    assert found["achievements"] == []
    assert found["identifier_kind"] == "citb_individual_id"
