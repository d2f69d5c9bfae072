"""The audit trail: who did what to which upload, and when (migration 0008, `audit_events`).

A row holds a kind, the ATO, the API key, the upload and the time: identifiers only, never a
learner's data, a file name or a key's secret, so the trail can be kept longer than the data
it describes (docs/retention.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import asyncpg


class AuditKind(StrEnum):
    """`audit_events.kind`; the migration's CHECK constraint lists the same words."""

    UPLOAD_RECEIVED = "upload_received"  # a new upload was recorded (not an idempotent replay)
    UPLOAD_WITHDRAWN = "upload_withdrawn"  # the ATO withdrew an upload
    ACHIEVEMENT_WITHDRAWN = "achievement_withdrawn"  # the ATO withdrew one achievement
    ERROR_REPORT_DOWNLOADED = "error_report_downloaded"  # an upload's error report was read
    ACHIEVEMENTS_LISTED = "achievements_listed"  # an upload's achievements were read
    KEY_USED = "key_used"  # an API key authenticated a request
    LEARNER_FOUND = "learner_found"  # an operator looked a learner up (the identifier is not kept)
    LEARNER_EXPORTED = "learner_exported"  # an operator exported a learner's records
    LEARNER_ERASED = "learner_erased"  # an operator erased a learner's records
    UPLOAD_PURGED = "upload_purged"  # the retention purge removed the upload's file and data


async def record(
    connection: asyncpg.Connection,
    kind: AuditKind,
    ato_id: str | None,
    key_id: uuid.UUID | None,
    upload_id: uuid.UUID | None,
    at: datetime,
) -> None:
    """Appends one event, in the caller's transaction if it has one (so an action that rolls
    back leaves no trace claiming it happened)."""
    await connection.execute(
        "INSERT INTO audit_events (kind, ato_id, key_id, upload_id, occurred_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        kind.value,
        ato_id,
        key_id,
        upload_id,
        at,
    )


async def record_many(
    connection: asyncpg.Connection,
    kind: AuditKind,
    ato_ids: list[str],
    upload_ids: list[uuid.UUID],
    at: datetime,
) -> None:
    """One event per (ATO, upload) pair, without a key: what an operator's command did."""
    await connection.execute(
        "INSERT INTO audit_events (kind, ato_id, upload_id, occurred_at)"
        " SELECT $1, ato_id, upload_id, $4 FROM unnest($2::text[], $3::uuid[])"
        " AS e (ato_id, upload_id)",
        kind.value,
        ato_ids,
        upload_ids,
        at,
    )
