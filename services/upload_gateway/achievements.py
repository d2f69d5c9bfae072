"""Accepted achievements as the ATO sees them (no learner data), and withdrawing one."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.core import grant_states
from services.core.events import ClaimWithdrawn, Topics
from services.core.outbox import enqueue
from services.core.states import ACCEPTING, GrantState
from services.upload_gateway.domain_errors import (
    AlreadyWithdrawn,
    AmendmentWindowClosed,
    NotFound,
    UploadNotAccepted,
)
from services.upload_gateway.uploads import get_upload

# Deliberately no names, dates of birth or identifiers: this listing is about grant state.
_COLUMNS = (
    "a.achievement_id, a.upload_id, a.row_number, a.course_code, a.achievement_date,"
    f" a.grant_eligible, a.grant_state, {grant_states.RELEASE_AT} AS release_at, a.grant_code,"
    " a.grant_amount_pence, a.claimed_at, a.withdrawn_at"
)
# The validator writes an upload's achievements chunk by chunk; they exist for the ATO only
# once the upload's outcome accepted them.
_VISIBLE = (
    "a.upload_id = $1 AND EXISTS (SELECT 1 FROM uploads u WHERE u.upload_id = a.upload_id"
    " AND u.status = ANY($2::text[]))"
)


@dataclass(frozen=True, slots=True)
class Achievement:
    achievement_id: uuid.UUID
    upload_id: uuid.UUID
    row_number: int
    course_code: str
    achievement_date: date
    grant_eligible: bool
    grant_state: str
    release_at: datetime
    grant_code: str | None
    grant_amount_pence: int | None
    claimed_at: datetime | None
    withdrawn_at: datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Achievement:
        return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return {
            "achievement_id": str(self.achievement_id),
            "upload_id": str(self.upload_id),
            "row_number": self.row_number,
            "course_code": self.course_code,
            "achievement_date": self.achievement_date.isoformat(),
            "grant_eligible": self.grant_eligible,
            "grant_state": self.grant_state,
            "release_at": self.release_at.isoformat(),
            "grant_code": self.grant_code,
            "grant_amount_pence": self.grant_amount_pence,
            "claimed_at": self.claimed_at.isoformat() if self.claimed_at else None,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
        }


async def list_achievements(
    connection: asyncpg.Connection,
    ato_id: str,
    upload_id: uuid.UUID,
    *,
    limit: int,
    offset: int,
) -> tuple[list[Achievement], int]:
    """(one page in row order, how many the upload has)."""
    await get_upload(connection, ato_id, upload_id)  # 404 for a missing or foreign upload
    accepting = sorted(ACCEPTING)
    total: int = await connection.fetchval(
        f"SELECT count(*) FROM achievements a WHERE {_VISIBLE}", upload_id, accepting
    )
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM achievements a WHERE {_VISIBLE}"
        " ORDER BY a.row_number LIMIT $3 OFFSET $4",
        upload_id,
        accepting,
        limit,
        offset,
    )
    return [Achievement.from_row(row) for row in rows], total


async def withdraw_achievement(
    connection: asyncpg.Connection, topics: Topics, ato_id: str, achievement_id: uuid.UUID
) -> Achievement:
    """Withdraws one achievement while it is still inside its amendment window.

    The row lock taken first orders this against the grant bridge's lease, which locks the same
    row: whichever locks it first wins, and the loser sees the winner's committed state (the
    lease passes over a row it cannot lock; the guarded update refuses a row whose claim a
    lease took, `grant_states`).
    """
    async with connection.transaction():
        row = await connection.fetchrow(
            "SELECT a.upload_id, a.grant_state, u.status AS upload_status"
            " FROM achievements a JOIN uploads u USING (upload_id)"
            " WHERE a.achievement_id = $1 AND u.ato_id = $2 AND a.ato_id = $2"
            " FOR UPDATE OF a",
            achievement_id,
            ato_id,
        )
        if row is None:
            raise NotFound("achievement")
        if row["grant_state"] == GrantState.WITHDRAWN:
            raise AlreadyWithdrawn("achievement")
        if row["upload_status"] not in ACCEPTING:
            raise UploadNotAccepted("achievement", row["upload_status"])
        if not await grant_states.withdraw_achievement(connection, achievement_id):
            raise AmendmentWindowClosed()
        await enqueue(
            connection,
            topics,
            ClaimWithdrawn(achievement_id=achievement_id, upload_id=row["upload_id"]),
        )
        updated = await connection.fetchrow(
            f"SELECT {_COLUMNS} FROM achievements a WHERE a.achievement_id = $1", achievement_id
        )
        return Achievement.from_row(updated)
