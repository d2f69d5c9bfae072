"""The audit trail: who did what to which upload, and when (migrations 0008, 0015, 0016 and
0017, `audit_events`).

A row holds a kind, the ATO, the API key or the person signed in through the portal (their
portal subject and display name: the ATO's staff, never a learner), the upload and the time:
identifiers only, never a learner's data, a file name or a key's secret, so the trail can be
kept longer than the data it describes (docs/retention.md). An operator's action
(services/core/operators.py) also names the operator and its target, each in a typed column: an
upload, an ATO, a key, an operator, a dead letter, a purge run, or the internal id of one
learner's request (never the learner's identifier). `operator_actions` reads them back for
`achievements audit`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import asyncpg

from services.core.people import Person


class AuditKind(StrEnum):
    """`audit_events.kind`; the migration's CHECK constraint lists the same words."""

    UPLOAD_RECEIVED = "upload_received"  # a new upload was recorded (not an idempotent replay)
    UPLOAD_WITHDRAWN = "upload_withdrawn"  # the ATO withdrew an upload
    ACHIEVEMENT_WITHDRAWN = "achievement_withdrawn"  # the ATO withdrew one achievement
    ERROR_REPORT_DOWNLOADED = "error_report_downloaded"  # an upload's error report was read
    ACHIEVEMENTS_LISTED = "achievements_listed"  # an upload's achievements were read
    # The rows to fix of a partially accepted upload were downloaded: learners' data as sent.
    ROWS_TO_FIX_DOWNLOADED = "rows_to_fix_downloaded"
    KEY_USED = "key_used"  # an API key authenticated a request
    LEARNER_FOUND = "learner_found"  # an operator looked a learner up (the identifier is not kept)
    LEARNER_EXPORTED = "learner_exported"  # an operator exported a learner's records
    LEARNER_ERASED = "learner_erased"  # an operator erased a learner's records
    UPLOAD_PURGED = "upload_purged"  # the retention purge removed the upload's file and data
    # Only an operator's command writes these, always with the operator and the target.
    PURGE_RAN = "purge_ran"  # a retention purge run (not a dry run), its `purge_runs` row
    OPERATOR_CREATED = "operator_created"  # a new operator (the first one created itself)
    OPERATOR_REVOKED = "operator_revoked"  # an operator's token was ended
    ATO_CREATED = "ato_created"  # a new ATO (with its first key: a key_created row too)
    KEY_CREATED = "key_created"  # a new API key of an ATO
    KEY_REVOKED = "key_revoked"  # an API key was ended
    DEAD_LETTER_REPLAYED = "dead_letter_replayed"  # re-published to its source topic
    CLAIMS_REPAIRED = "claims_repaired"  # `reconcile --repair` over one upload's claims


@dataclass(frozen=True, slots=True)
class Target:
    """What an operator's action was done to: the fields its kind needs (the schema's
    `audit_events_operator_action_named` lists which), every other one None."""

    ato_id: str | None = None
    key_id: uuid.UUID | None = None
    upload_id: uuid.UUID | None = None
    operator_id: uuid.UUID | None = None
    learner_request_id: uuid.UUID | None = None
    purge_run_id: int | None = None
    dead_letter: tuple[int, int] | None = None  # (partition, offset)


async def record_operator_action(
    connection: asyncpg.Connection | asyncpg.Pool,
    kind: AuditKind,
    operator_id: uuid.UUID,
    target: Target,
    at: datetime,
) -> None:
    """Appends one operator action, in the caller's transaction if it has one."""
    partition, offset = target.dead_letter or (None, None)
    await connection.execute(
        "INSERT INTO audit_events (kind, operator_id, ato_id, key_id, upload_id,"
        " target_operator_id, learner_request_id, purge_run_id, dead_letter_partition,"
        " dead_letter_offset, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        kind.value,
        operator_id,
        target.ato_id,
        target.key_id,
        target.upload_id,
        target.operator_id,
        target.learner_request_id,
        target.purge_run_id,
        partition,
        offset,
        at,
    )


async def record(
    connection: asyncpg.Connection,
    kind: AuditKind,
    ato_id: str | None,
    key_id: uuid.UUID | None,
    upload_id: uuid.UUID | None,
    at: datetime,
    person: Person | None = None,
) -> None:
    """Appends one event, in the caller's transaction if it has one (so an action that rolls
    back leaves no trace claiming it happened). Who acted is the API key, or the `person`
    signed in through the portal (their subject and display name)."""
    await connection.execute(
        "INSERT INTO audit_events (kind, ato_id, key_id, upload_id, occurred_at, person_subject,"
        " person_name) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        kind.value,
        ato_id,
        key_id,
        upload_id,
        at,
        person.subject if person is not None else None,
        person.name if person is not None else None,
    )


async def record_many(
    connection: asyncpg.Connection,
    kind: AuditKind,
    ato_ids: list[str],
    upload_ids: list[uuid.UUID],
    at: datetime,
    *,
    operator_id: uuid.UUID | None = None,
    learner_request_id: uuid.UUID | None = None,
) -> None:
    """One event per (ATO, upload) pair, without a key: what an operator's command did, naming
    the operator and, for a learner's request, its id."""
    await connection.execute(
        "INSERT INTO audit_events (kind, ato_id, upload_id, occurred_at, operator_id,"
        " learner_request_id)"
        " SELECT $1, ato_id, upload_id, $4, $5, $6 FROM unnest($2::text[], $3::uuid[])"
        " AS e (ato_id, upload_id)",
        kind.value,
        ato_ids,
        upload_ids,
        at,
        operator_id,
        learner_request_id,
    )


_LEARNER_REQUESTS: Final = frozenset(
    {AuditKind.LEARNER_FOUND, AuditKind.LEARNER_EXPORTED, AuditKind.LEARNER_ERASED}
)


def target_of(kind: str, row: dict[str, Any] | asyncpg.Record) -> str:
    """An operator action's target as `achievements audit` prints it: its kind and its id
    (`upload:<uuid>`, `learner-request:<uuid>`, `dead-letter:0:12`, ...)."""
    if kind in _LEARNER_REQUESTS:
        return f"learner-request:{row['learner_request_id']}"
    if kind == AuditKind.PURGE_RAN:
        return f"purge-run:{row['purge_run_id']}"
    if kind in (AuditKind.OPERATOR_CREATED, AuditKind.OPERATOR_REVOKED):
        return f"operator:{row['target_operator']}"
    if kind == AuditKind.ATO_CREATED:
        return f"ato:{row['ato_id']}"
    if kind in (AuditKind.KEY_CREATED, AuditKind.KEY_REVOKED):
        return f"key:{row['key_id']}"
    if kind == AuditKind.DEAD_LETTER_REPLAYED:
        return f"dead-letter:{row['dead_letter_partition']}:{row['dead_letter_offset']}"
    return f"upload:{row['upload_id']}"


_OPERATOR_ACTIONS: Final = """
SELECT e.occurred_at, o.name AS operator, e.kind, e.ato_id, e.key_id, e.upload_id,
       t.name AS target_operator, e.learner_request_id, e.purge_run_id,
       e.dead_letter_partition, e.dead_letter_offset
FROM audit_events e
JOIN operators o ON o.operator_id = e.operator_id
LEFT JOIN operators t ON t.operator_id = e.target_operator_id
WHERE e.operator_id IS NOT NULL
  AND ($1::timestamptz IS NULL OR e.occurred_at >= $1)
  AND ($2::text IS NULL OR o.name = $2)
ORDER BY e.occurred_at, e.event_id
"""


async def operator_actions(
    connection: asyncpg.Connection, since: datetime | None, operator: str | None
) -> list[dict[str, str]]:
    """The operators' actions since `since` (all when None), of the operator named `operator`
    (all when None), oldest first: `{"at", "operator", "action", "target"}` each. A learner's
    request is one action, however many of the ATO's uploads its rows name."""
    rows = await connection.fetch(_OPERATOR_ACTIONS, since, operator)
    actions = (
        (row["occurred_at"].isoformat(), row["operator"], row["kind"], target_of(row["kind"], row))
        for row in rows
    )
    return [
        {"at": at, "operator": name, "action": action, "target": target}
        for at, name, action, target in dict.fromkeys(actions)
    ]
