"""The audit trail records who did what to which upload, and when: identifiers and times only,
never a learner's data."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.core import audit, operators, purge_runs
from services.core.audit import AuditKind
from services.core.people import Person
from services.core.purge_runs import PurgeRun
from services.core.retention import purge
from services.core.settings import RetentionSettings
from services.core.storage import FolderStorage
from services.upload_gateway.keys import create_ato
from tests.integration.validator.pipeline_helpers import validate_stored

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
LEARNER_ROW = (
    "PR-AMELINDA-77,SD-WAH-101,12/11/2026,Amelinda,Hartleyworth,14/03/1990,1000000043,"
    "AB123456C,H7654321,79049946,Prefers morning sessions"
)
AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def test_the_schema_accepts_exactly_the_kinds_of_the_enum(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as connection:
        definition = await connection.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'audit_events_kind_check'"
        )
        operator = (await operators.create(connection, "night-purge", None, AT)).operator
        target = audit.Target(
            ato_id="ATO-1",
            key_id=uuid.uuid4(),
            upload_id=uuid.uuid4(),
            operator_id=operator.operator_id,
            learner_request_id=uuid.uuid4(),
            purge_run_id=await purge_runs.record(connection, PurgeRun(AT, AT, 0, 0, 0)),
            dead_letter=(0, 7),
        )
        for kind in AuditKind:
            await audit.record_operator_action(connection, kind, operator.operator_id, target, AT)
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO audit_events (kind, occurred_at) VALUES ('learner_renamed', now())"
            )
    assert set(re.findall(r"'([a-z_]+)'::text", definition)) == {k.value for k in AuditKind}


async def test_an_event_holds_ids_and_a_time_only(pool: asyncpg.Pool) -> None:
    key_id, upload_id = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as connection:
        await audit.record(connection, AuditKind.UPLOAD_RECEIVED, "ATO-1", key_id, upload_id, AT)
        await audit.record(connection, AuditKind.KEY_USED, "ATO-1", key_id, None, AT)
        rows = await connection.fetch("SELECT * FROM audit_events ORDER BY event_id")
        columns = await connection.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'audit_events'"
        )
    # No column that could carry a learner's data: the text columns besides the ATO are the kind
    # and the person signed in through the portal (the ATO's staff, from the portal's token).
    assert {(c["column_name"], c["data_type"]) for c in columns} == {
        ("event_id", "bigint"),
        ("kind", "text"),
        ("ato_id", "text"),
        ("key_id", "uuid"),
        ("upload_id", "uuid"),
        ("occurred_at", "timestamp with time zone"),
        ("operator_id", "uuid"),
        ("target_operator_id", "uuid"),
        ("learner_request_id", "uuid"),
        ("purge_run_id", "bigint"),
        ("dead_letter_partition", "integer"),
        ("dead_letter_offset", "bigint"),
        ("person_subject", "text"),
        ("person_name", "text"),
    }
    assert [
        (r["kind"], r["ato_id"], r["key_id"], r["upload_id"], r["occurred_at"]) for r in rows
    ] == [
        ("upload_received", "ATO-1", key_id, upload_id, AT),
        ("key_used", "ATO-1", key_id, None, AT),
    ]


async def test_an_event_of_a_person_signed_in_through_the_portal_names_them_and_no_key(
    pool: asyncpg.Pool,
) -> None:
    upload_id = uuid.uuid4()
    async with pool.acquire() as connection:
        await audit.record(
            connection,
            AuditKind.UPLOAD_WITHDRAWN,
            "ATO-1",
            None,
            upload_id,
            AT,
            Person("portal-user-1001", "Priya Shah"),
        )
        rows = await connection.fetch(
            "SELECT kind, key_id, upload_id, person_subject, person_name FROM audit_events"
        )

    assert [tuple(row.values()) for row in rows] == [
        ("upload_withdrawn", None, upload_id, "portal-user-1001", "Priya Shah")
    ]


async def test_an_action_that_rolls_back_leaves_no_event(pool: asyncpg.Pool) -> None:
    async def withdraw_and_fail(connection: asyncpg.Connection) -> None:
        async with connection.transaction():
            await audit.record(
                connection, AuditKind.UPLOAD_WITHDRAWN, "ATO-1", None, uuid.uuid4(), AT
            )
            raise RuntimeError("the withdrawal failed")

    async with pool.acquire() as connection:
        with pytest.raises(RuntimeError, match="withdrawal failed"):
            await withdraw_and_fail(connection)
        assert await connection.fetchval("SELECT count(*) FROM audit_events") == 0


async def test_the_purge_records_each_upload_without_personal_data(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as connection:
        ato_id = (await create_ato(connection, "Amelinda Hartleyworth Training")).ato_id
    upload = await validate_stored(
        pool, tmp_path, (f"{HEADER}\r\n{LEARNER_ROW}\r\n").encode(), ato_id=ato_id
    )
    now = upload["validated_at"] + timedelta(days=31)

    await purge(pool, FolderStorage(tmp_path), RetentionSettings(days=30), now)

    async with pool.acquire() as connection:
        rows = await connection.fetch("SELECT * FROM audit_events")
    assert [(r["kind"], r["ato_id"], r["upload_id"], r["key_id"]) for r in rows] == [
        ("upload_purged", ato_id, upload["upload_id"], None)
    ]
    text = str([dict(r) for r in rows])
    for needle in ("Amelinda", "Hartleyworth", "1000000043", "AB123456C", "H7654321", "1990"):
        assert needle not in text
