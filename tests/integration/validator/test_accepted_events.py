"""The `achievements.accepted` events of an upload: staged by its chunks, stamped with the
release time when the outcome is decided, each accepted achievement announced exactly once,
whatever the cross-row rules took away after the chunks were written."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from pipeline_helpers import validate_stored

from services.core.events import Topics
from services.core.settings import CommonSettings, StorageSettings
from services.validator.chunk_worker import ChunkWorker
from services.validator.settings import ValidatorSettings

ULNS = ("1000000043", "1234567899", "5555555554", "1111111110", "1234567805")
HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)


def settings(root: Path) -> ValidatorSettings:
    return ValidatorSettings(common=CommonSettings(storage=StorageSettings(root=root)))


def csv_file(*ulns: str) -> bytes:
    rows = [f"REF,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,{u},,,79049946," for u in ulns]
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


async def accepted_events(pool: asyncpg.Pool, upload_id: uuid.UUID) -> list[dict[str, object]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT payload::json AS payload FROM outbox WHERE payload::json->>'upload_id' = $1"
            " AND payload::json->>'event_type' = 'achievements.accepted' ORDER BY id",
            str(upload_id),
        )
    return [
        row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
        for row in rows
    ]


async def test_each_accepted_achievement_is_announced_once_with_the_release_time(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # Rows 2..8 in chunks of three: [2 3 4] [5 6 7] [8]. Row 4 repeats row 2 within its chunk
    # (DUP_01 found by the chunk); row 5 repeats row 3 across chunks (DUP_01 found only when
    # the outcome is decided, after chunk 1 staged its event part with row 5 in it).
    content = csv_file(ULNS[0], ULNS[1], ULNS[0], ULNS[1], ULNS[2], ULNS[3], ULNS[4])

    upload = await validate_stored(
        pool, tmp_path, content, policy="valid_rows", chunk_rows=3, accepted_event_chunk=2
    )

    assert (upload["status"], upload["rows_total"], upload["rows_invalid"]) == (
        "partially_accepted",
        7,
        2,
    )
    assert upload["counts_by_code"] == {"DUP_01": 2}
    assert [(i["row"], i["code"]) for i in upload["issues"]] == [(4, "DUP_01"), (5, "DUP_01")]
    events = await accepted_events(pool, upload["upload_id"])
    announced = [a for event in events for a in event["achievements"]]  # type: ignore[attr-defined]
    assert [a["row_number"] for a in announced] == [2, 3, 6, 7, 8]
    # At most two per event (the setting), in parts of their chunks: [2 3], then chunk 1's
    # [5 6] rebuilt without row 5 and its [7], then [8].
    assert [len(event["achievements"]) for event in events] == [2, 1, 1, 1]  # type: ignore[arg-type]
    assert len({event["event_id"] for event in events}) == 4
    release = upload["release_at"].isoformat().replace("+00:00", "Z")
    assert {a["release_at"] for a in announced} == {release}
    async with pool.acquire() as connection:
        stored = await connection.fetch(
            "SELECT achievement_id, row_number, grant_eligible FROM achievements"
            " WHERE upload_id = $1 ORDER BY row_number",
            upload["upload_id"],
        )
        staged_left = await connection.fetchval(
            "SELECT count(*) FROM accepted_event_parts WHERE upload_id = $1", upload["upload_id"]
        )
    assert [(str(r["achievement_id"]), r["row_number"], r["grant_eligible"]) for r in stored] == [
        (a["achievement_id"], a["row_number"], a["grant_eligible"]) for a in announced
    ]
    assert staged_left == 0


async def test_an_upload_whose_chunks_staged_no_parts_is_announced_from_its_achievements(
    pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks written before parts were staged (a validator of the previous version): the
    outcome builds the events from the achievements table instead."""
    from services.validator import chunk_validation

    def no_parts(self: chunk_validation.ChunkResult, part_size: int) -> list[object]:
        return []

    monkeypatch.setattr(chunk_validation.ChunkResult, "event_parts", no_parts)
    content = csv_file(*ULNS)

    upload = await validate_stored(
        pool, tmp_path, content, policy="valid_rows", chunk_rows=2, accepted_event_chunk=3
    )

    assert upload["status"] == "passed"
    events = await accepted_events(pool, upload["upload_id"])
    assert [[a["row_number"] for a in e["achievements"]] for e in events] == [  # type: ignore[attr-defined]
        [2, 3, 4],
        [5, 6],
    ]


async def test_what_a_decided_upload_left_behind_is_forgotten_by_the_next_idle_worker(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The tasks, keys and staged events go just after the outcome's commit; what a worker
    that died in between left is forgotten by the next worker with nothing else to do."""
    upload = await validate_stored(pool, tmp_path, csv_file(*ULNS), chunk_rows=2)
    upload_id = upload["upload_id"]
    tables = ("validation_chunks", "accepted_event_parts")

    async def left(connection: asyncpg.Connection) -> list[int]:
        return [
            await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE upload_id = $1", upload_id
            )
            for table in tables
        ]

    async with pool.acquire() as connection:
        assert upload["status"] == "passed"
        assert await left(connection) == [0, 0]
        # As a worker that died between the outcome and forgetting would leave them:
        await connection.execute(
            "INSERT INTO validation_chunks"
            " (upload_id, chunk_no, ato_id, segments, state, duplicate_keys)"
            " VALUES ($1, 0, $2, '{0,10,2}', 'done', 'keys')",
            upload_id,
            upload["ato_id"],
        )
        await connection.execute(
            "INSERT INTO accepted_event_parts VALUES ($1, 0, 0, 2, 2, 1, '[]')", upload_id
        )

    steps = await ChunkWorker(settings(tmp_path), pool, Topics("unused.")).run_until_idle()

    assert steps == 1
    async with pool.acquire() as connection:
        assert await left(connection) == [0, 0]
