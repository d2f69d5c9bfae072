"""One learner's requests, as the ATO that holds their records passes them on: find, export and
erase by identifier (ULN, NI number or CITB individual id), across that ATO's uploads only.

Every query carries the ATO: the same learner uploaded by another ATO is that ATO's record, and
is neither shown nor changed here. What is found is the learner's achievements (the valid rows
of accepted uploads), with the issues stored for their rows. Erasing removes what the retention
purge would (docs/retention.md):
- a `held` achievement still inside its amendment window is withdrawn first, through
  `grant_states` as the ATO's own withdrawal is (and `claim.withdrawn` is written to the
  outbox), so no claim carrying the learner's data is ever sent;
- an achievement whose claim is settled (claimed, refused, withdrawn) or that is never claimed
  (`not_eligible`) has the keyed hashes of its duplicate keys stored and its personal fields
  replaced with NULL at once, and the masked values of its row's issues cleared;
- an achievement whose claim is under way (past its window, leased or sent) cannot be withdrawn
  and its claim needs the data: it is marked `erase_requested_at` and the next purge erases it as
  soon as the grant system has answered;
- the stored files of the uploads the learner's rows came from are deleted (after the outcome a
  file is needed for nothing); the uploads keep their status and counts.
Rows of the learner that were invalid (never an achievement) are not linked to the identifier
anywhere but in the stored file; deleting those files is left to the purge at the end of the
retention period (their error report holds at most a partly masked identifier until then).

An audit event (`learner_found`, `learner_exported`, `learner_erased`) records each request with
the ATO and the uploads concerned, never the identifier; made by an operator's command, it also
names the operator and the request's internal id (`Requester`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import asyncpg

from services.core import audit, grant_states
from services.core.db import create_pool
from services.core.events import ClaimWithdrawn, Topics
from services.core.outbox import enqueue
from services.core.retention import ACHIEVEMENT_KEY_COLUMNS, delete_files, erase_locked
from services.core.scheme.text import clean_cell, remove_white_space
from services.core.scheme.validation import CITB_ID_KIND, NI_NUMBER_KIND, ULN_KIND
from services.core.settings import CommonSettings, RetentionSettings
from services.core.states import ACCEPTING, IN_PROGRESS, GrantState
from services.core.storage import Storage, open_storage


class IdentifierKind(StrEnum):
    """Which identifier a request names; each value is the `achievements` column."""

    ULN = ULN_KIND
    NI_NUMBER = NI_NUMBER_KIND
    CITB_ID = CITB_ID_KIND


class NoIdentifier(ValueError):
    """The identifier is empty once normalised."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who made a request and its internal id: the audit trail's operator and target, so that
    the request can be named later without the learner's identifier."""

    operator_id: uuid.UUID
    request_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Learner:
    """One learner as one ATO knows them: the identifier normalised as the validator stores it
    (white space removed, letters upper-cased)."""

    ato_id: str
    kind: IdentifierKind
    identifier: str

    @classmethod
    def of(cls, ato_id: str, kind: IdentifierKind, identifier: str) -> Learner:
        normalised = remove_white_space(clean_cell(identifier)).upper()
        if not normalised:
            raise NoIdentifier(f"the {kind.value} is empty")
        return cls(ato_id, kind, normalised)


_FOUND_COLUMNS = (
    "a.achievement_id, a.upload_id, a.row_number, u.status AS upload_status,"
    " u.received_at, a.grant_state, a.purged_at, a.erase_requested_at"
)
_EXPORT_COLUMNS = (
    "a.achievement_id, a.upload_id, a.row_number, u.status AS upload_status, u.received_at,"
    " u.validated_at, a.provider_reference, a.course_code, a.achievement_date, a.forename,"
    " a.surname, a.date_of_birth, a.uln, a.ni_number, a.citb_individual_id, a.levy_number,"
    " a.notes, a.grant_eligible, a.grant_state, a.grant_code, a.grant_amount_pence,"
    " a.claimed_at, a.withdrawn_at, a.created_at, a.purged_at, a.erase_requested_at"
)


def _select(kind: IdentifierKind, columns: str, *, lock: bool = False) -> str:
    """$1 the ATO, $2 the identifier. Locked in id order, as `grant_states` locks them, so an
    erasure and a withdrawal of the same achievements queue instead of deadlocking."""
    order = (
        "ORDER BY a.achievement_id FOR UPDATE OF a"
        if lock
        else "ORDER BY u.received_at, a.row_number"
    )
    return f"""
        SELECT {columns} FROM achievements a JOIN uploads u ON u.upload_id = a.upload_id
        WHERE a.ato_id = $1 AND u.ato_id = $1 AND a.{kind.value} = $2
        {order}"""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _as_json(row: asyncpg.Record) -> dict[str, Any]:
    return {name: _json_value(value) for name, value in row.items()}


def _audit_pairs(learner: Learner, upload_ids: list[uuid.UUID]) -> tuple[list[str], list[Any]]:
    """(ATO, upload) per upload concerned; one event with no upload when there is none."""
    uploads: list[Any] = list(dict.fromkeys(upload_ids)) or [None]
    return [learner.ato_id] * len(uploads), uploads


async def _audit(
    connection: asyncpg.Connection,
    kind: audit.AuditKind,
    learner: Learner,
    upload_ids: list[uuid.UUID],
    now: datetime,
    by: Requester | None,
) -> None:
    await audit.record_many(
        connection,
        kind,
        *_audit_pairs(learner, upload_ids),
        now,
        operator_id=by.operator_id if by else None,
        learner_request_id=by.request_id if by else None,
    )


async def find(
    connection: asyncpg.Connection,
    learner: Learner,
    now: datetime,
    by: Requester | None = None,
) -> dict[str, Any]:
    """Where the learner is: upload, row, upload status and grant state of each achievement."""
    rows = await connection.fetch(
        _select(learner.kind, _FOUND_COLUMNS), learner.ato_id, learner.identifier
    )
    await _audit(
        connection, audit.AuditKind.LEARNER_FOUND, learner, [r["upload_id"] for r in rows], now, by
    )
    return {
        "ato_id": learner.ato_id,
        "identifier_kind": learner.kind.value,
        "achievements": [_as_json(row) for row in rows],
    }


async def export(
    connection: asyncpg.Connection,
    learner: Learner,
    now: datetime,
    by: Requester | None = None,
) -> dict[str, Any]:
    """Everything held about the learner in the ATO's records, as JSON: each achievement with
    its fields (personal ones included, NULL once erased) and the issues stored for its row."""
    rows = await connection.fetch(
        _select(learner.kind, _EXPORT_COLUMNS), learner.ato_id, learner.identifier
    )
    issues = await connection.fetch(
        "SELECT i.upload_id, i.row_number, i.column_name, i.code, i.severity, i.message,"
        " i.masked_value FROM row_issues i"
        " JOIN unnest($1::uuid[], $2::integer[]) AS r (upload_id, row_number)"
        " ON i.upload_id = r.upload_id AND i.row_number = r.row_number"
        " ORDER BY i.upload_id, i.row_number, i.position",
        [row["upload_id"] for row in rows],
        [row["row_number"] for row in rows],
    )
    by_row: dict[tuple[uuid.UUID, int], list[dict[str, Any]]] = {}
    for issue in issues:
        item = _as_json(issue)
        del item["upload_id"], item["row_number"]
        by_row.setdefault((issue["upload_id"], issue["row_number"]), []).append(item)
    records = []
    for row in rows:
        record = _as_json(row)
        record["issues"] = by_row.get((row["upload_id"], row["row_number"]), [])
        records.append(record)
    await _audit(
        connection,
        audit.AuditKind.LEARNER_EXPORTED,
        learner,
        [r["upload_id"] for r in rows],
        now,
        by,
    )
    return {
        "ato_id": learner.ato_id,
        "identifier_kind": learner.kind.value,
        "exported_at": now.isoformat(),
        "records": records,
    }


@dataclass(slots=True)
class Erasure:
    achievements_erased: int = 0
    achievements_withdrawn: int = 0
    # Claims under way: erased by the purge once the grant system has answered.
    achievements_deferred: int = 0
    # Uploads still being validated: their rows are not final yet; ask again after the outcome.
    uploads_in_progress: int = 0
    files_deleted: int = 0


async def erase(
    connection: asyncpg.Connection,
    storage: Storage,
    topics: Topics,
    retention: RetentionSettings,
    learner: Learner,
    now: datetime,
    by: Requester | None = None,
) -> dict[str, Any]:
    """Erases the learner from the ATO's records (see the module docstring), in one
    transaction; asking again changes nothing more."""
    erasure = Erasure()
    async with connection.transaction():
        found = await connection.fetch(
            _select(
                learner.kind,
                f"{ACHIEVEMENT_KEY_COLUMNS}, u.status AS upload_status,"
                " u.storage_key, u.purged_at AS upload_purged_at",
                lock=True,
            ),
            learner.ato_id,
            learner.identifier,
        )
        in_progress = {r["upload_id"] for r in found if r["upload_status"] in IN_PROGRESS}
        erasure.uploads_in_progress = len(in_progress)
        decided = [r for r in found if r["upload_status"] in ACCEPTING]
        for row in decided:
            if row["grant_state"] == GrantState.HELD and await grant_states.withdraw_achievement(
                connection, row["achievement_id"]
            ):
                erasure.achievements_withdrawn += 1
                await enqueue(
                    connection,
                    topics,
                    ClaimWithdrawn(
                        achievement_id=row["achievement_id"], upload_id=row["upload_id"]
                    ),
                )
        ids = [row["achievement_id"] for row in decided]
        await connection.execute(
            "UPDATE achievements SET erase_requested_at = coalesce(erase_requested_at, $2)"
            " WHERE achievement_id = ANY($1::uuid[])",
            ids,
            now,
        )
        # Read again: a withdrawal just changed some states.
        now_erasable = await connection.fetch(
            f"SELECT {ACHIEVEMENT_KEY_COLUMNS} FROM achievements a"
            " WHERE a.achievement_id = ANY($1::uuid[]) AND a.ato_id = $2"
            " AND a.purged_at IS NULL AND a.grant_state <> $3",
            ids,
            learner.ato_id,
            GrantState.HELD.value,
        )
        await erase_locked(connection, now_erasable, retention.key_secret, now)
        erasure.achievements_erased = len(now_erasable)
        erasure.achievements_deferred = await connection.fetchval(
            "SELECT count(*) FROM achievements a WHERE a.achievement_id = ANY($1::uuid[])"
            " AND a.purged_at IS NULL",
            ids,
        )
        files = {r["upload_id"]: r["storage_key"] for r in decided if r["upload_purged_at"] is None}
        # The file name too: ATOs sometimes name a file after a learner.
        await connection.execute(
            "UPDATE uploads SET file_name = upload_id::text || '.csv'"
            " WHERE upload_id = ANY($1::uuid[]) AND ato_id = $2",
            list({r["upload_id"] for r in decided}),
            learner.ato_id,
        )
        erasure.files_deleted = await delete_files(storage, list(files.values()))
        await _audit(
            connection,
            audit.AuditKind.LEARNER_ERASED,
            learner,
            [r["upload_id"] for r in decided],
            now,
            by,
        )
    return {
        "ato_id": learner.ato_id,
        "identifier_kind": learner.kind.value,
        "achievements_erased": erasure.achievements_erased,
        "achievements_withdrawn": erasure.achievements_withdrawn,
        "achievements_deferred": erasure.achievements_deferred,
        "uploads_in_progress": erasure.uploads_in_progress,
        "files_deleted": erasure.files_deleted,
    }


async def learner_command(
    common: CommonSettings,
    retention: RetentionSettings,
    *,
    action: str,
    ato_id: str,
    uln: str | None = None,
    ni_number: str | None = None,
    citb_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`achievements learner find|export|erase --ato ATO --uln/--ni/--citb-id ID`: exactly one
    identifier. Raises `ValueError` (a message naming no identifier) for a bad request."""
    given = [
        (kind, value)
        for kind, value in (
            (IdentifierKind.ULN, uln),
            (IdentifierKind.NI_NUMBER, ni_number),
            (IdentifierKind.CITB_ID, citb_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError("give exactly one of --uln, --ni and --citb-id")
    if action not in ("find", "export", "erase"):
        raise ValueError("the action is find, export or erase")
    learner = Learner.of(ato_id, *given[0])
    at = now or datetime.now(UTC)
    pool = await create_pool(common.postgres)
    try:
        async with pool.acquire() as connection:
            if action == "find":
                return await find(connection, learner, at)
            if action == "export":
                return await export(connection, learner, at)
            return await erase(
                connection,
                open_storage(common.storage),
                Topics(common.kafka.topic_prefix),
                retention,
                learner,
                at,
            )
    finally:
        await pool.close()
