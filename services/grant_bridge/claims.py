"""The grant bridge's SQL: record pending claims, lease due ones, record what the grant API said.

No transaction is ever held across an HTTP call: a lease (`lease_until`, `lease_token`) reserves
claims for one bridge, the send happens outside any transaction, and the outcome is recorded in
one transaction that only applies while the lease is still this bridge's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.core.events import (
    AcceptedAchievement,
    AchievementsAccepted,
    ClaimAccepted,
    ClaimRefused,
    ClaimSubmitted,
    Event,
    Topics,
)
from services.core.outbox import enqueue_many
from services.grant_bridge.grant_client import (
    Accepted,
    ClaimData,
    ClaimResult,
    Refused,
    Replayed,
    Transient,
    claim_id_for,
)

CONSUMER_NAME = "grant-bridge"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    duplicate: bool  # the event_id was applied before: nothing changed
    eligible: int  # grant-eligible achievements in the event
    recorded: int  # pending claims inserted now (fewer on a redelivery or a repeated id)
    missing: int  # eligible ids with no achievements row


async def record_pending(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    achievements: Sequence[AcceptedAchievement],
) -> tuple[int, int]:
    """Inserts a pending claim per eligible achievement; returns (inserted, found).

    Eligibility and release time come from the achievements row, the source of truth that the
    gateway's withdrawal also reads; the event only says which rows to look at.
    """
    ids = [a.achievement_id for a in achievements if a.grant_eligible]
    if not ids:
        return 0, 0
    row = await connection.fetchrow(
        """
        WITH wanted AS (
            SELECT a.achievement_id, a.upload_id, a.row_number, a.release_at, i.claim_id
            FROM unnest($1::uuid[], $2::uuid[]) AS i (achievement_id, claim_id)
            JOIN achievements a ON a.achievement_id = i.achievement_id
            WHERE a.upload_id = $3 AND a.grant_eligible
        ), inserted AS (
            INSERT INTO grant_claims
                (claim_id, achievement_id, upload_id, row_number, release_at, next_attempt_at)
            SELECT claim_id, achievement_id, upload_id, row_number, release_at, release_at
            FROM wanted
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM wanted) AS found
        """,
        ids,
        [claim_id_for(achievement_id) for achievement_id in ids],
        upload_id,
    )
    return int(row["inserted"]), int(row["found"])


async def store_accepted_event(pool: asyncpg.Pool, event: AchievementsAccepted) -> StoredEvent:
    """Applies one event once: its event_id and its claims are committed together."""
    eligible = sum(1 for a in event.achievements if a.grant_eligible)
    async with pool.acquire(timeout=30) as connection, connection.transaction():
        fresh = await connection.fetchval(
            "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING true",
            CONSUMER_NAME,
            event.event_id,
        )
        if not fresh:
            return StoredEvent(duplicate=True, eligible=eligible, recorded=0, missing=0)
        inserted, found = await record_pending(connection, event.upload_id, event.achievements)
    return StoredEvent(
        duplicate=False,
        eligible=eligible,
        recorded=inserted,
        missing=len({a.achievement_id for a in event.achievements if a.grant_eligible}) - found,
    )


@dataclass(frozen=True, slots=True)
class LeasedClaim:
    data: ClaimData
    attempts: int  # sends before this one


@dataclass(frozen=True, slots=True)
class Lease:
    token: uuid.UUID
    claims: list[LeasedClaim]  # to send
    closed: int  # leased but closed without a send (withdrawn or otherwise not claimable)


_LEASE_SQL = """
WITH due AS (
    SELECT claim_id, achievement_id FROM grant_claims
    WHERE state = 'pending'
      AND next_attempt_at <= now()
      AND release_at <= now() - make_interval(secs => $2)
      AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE grant_claims c
SET lease_until = now() + make_interval(secs => $3), lease_token = $4, updated_at = now()
FROM due JOIN achievements a ON a.achievement_id = due.achievement_id
WHERE c.claim_id = due.claim_id
RETURNING c.claim_id, c.attempts, a.grant_state, a.release_at <= now() AS released,
    a.achievement_id, a.upload_id, a.row_number, a.ato_id, a.levy_number, a.course_code,
    a.achievement_date, a.provider_reference, a.forename, a.surname, a.date_of_birth, a.uln,
    a.ni_number, a.citb_individual_id, a.notes
"""


async def lease_due(
    pool: asyncpg.Pool,
    *,
    limit: int,
    lease_s: float,
    release_grace_s: float,
) -> Lease:
    """Leases up to `limit` released, due claims; closes (never sends) the withdrawn ones,
    without an event: the gateway published `claim.withdrawn` with the withdrawal itself.

    `FOR UPDATE SKIP LOCKED` lets several bridges lease at once without waiting for or taking
    each other's rows; `now()` is the database clock, the one `release_at` was stamped against.
    """
    token = uuid.uuid4()
    async with pool.acquire(timeout=30) as connection, connection.transaction():
        rows = await connection.fetch(_LEASE_SQL, limit, release_grace_s, lease_s, token)
        to_send: list[LeasedClaim] = []
        to_close: list[asyncpg.Record] = []
        for row in rows:
            if row["grant_state"] == "held" and row["released"]:
                to_send.append(LeasedClaim(ClaimData.from_row(row), row["attempts"]))
            else:
                to_close.append(row)
        if to_close:
            await _close_unsent(connection, to_close)
    return Lease(token=token, claims=to_send, closed=len(to_close))


async def _close_unsent(connection: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> None:
    states = ["withdrawn" if row["grant_state"] == "withdrawn" else "skipped" for row in rows]
    await connection.execute(
        """
        UPDATE grant_claims c
        SET state = o.state, lease_until = NULL, lease_token = NULL, closed_at = now(),
            updated_at = now()
        FROM unnest($1::uuid[], $2::text[]) AS o (claim_id, state)
        WHERE c.claim_id = o.claim_id
        """,
        [row["claim_id"] for row in rows],
        states,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    claim: LeasedClaim
    # None: not sent (the breaker opened before its turn); the lease is released.
    result: ClaimResult | None
    retry_in_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    accepted: int = 0
    refused: int = 0
    retrying: int = 0
    lost_lease: int = 0  # outcomes ignored: the lease had expired and another bridge took over


async def record_outcomes(
    pool: asyncpg.Pool, topics: Topics, lease_token: uuid.UUID, outcomes: Sequence[Outcome]
) -> Recorded:
    """Records the answers of one lease in one transaction, with their outbox events."""
    if not outcomes:
        return Recorded()
    by_claim = {o.claim.data.claim_id: o for o in outcomes}
    async with pool.acquire(timeout=30) as connection, connection.transaction():
        owned = await connection.fetch(
            "SELECT claim_id, submitted_at IS NULL AS first_send FROM grant_claims"
            " WHERE claim_id = ANY($1::uuid[]) AND state = 'pending' AND lease_token = $2"
            " FOR UPDATE",
            list(by_claim),
            lease_token,
        )
        claim_rows: list[tuple[uuid.UUID, str, bool, float, str | None, int | None]] = []
        achievement_rows: list[tuple[uuid.UUID, str, int | None, str | None]] = []
        events: list[Event] = []
        counts = {"accepted": 0, "refused": 0, "retrying": 0}
        for row in owned:
            outcome = by_claim[row["claim_id"]]
            data = outcome.claim.data
            ids = {
                "achievement_id": data.achievement_id,
                "upload_id": data.upload_id,
                "claim_id": data.claim_id,
            }
            result = outcome.result
            sent = result is not None
            if sent and row["first_send"]:
                events.append(ClaimSubmitted(**ids))
            match result:
                case Accepted(amount) | Replayed(amount):
                    claim_rows.append((data.claim_id, "accepted", sent, 0.0, None, amount))
                    achievement_rows.append((data.achievement_id, "claimed", amount, None))
                    events.append(ClaimAccepted(**ids, grant_amount_pence=amount))
                    counts["accepted"] += 1
                case Refused(code):
                    claim_rows.append((data.claim_id, "refused", sent, 0.0, code, None))
                    achievement_rows.append((data.achievement_id, "refused", None, code))
                    events.append(ClaimRefused(**ids, code=code))
                    counts["refused"] += 1
                case Transient(reason):
                    claim_rows.append(
                        (data.claim_id, "pending", sent, outcome.retry_in_s, reason, None)
                    )
                    counts["retrying"] += 1
                case None:
                    claim_rows.append(
                        (data.claim_id, "pending", sent, outcome.retry_in_s, None, None)
                    )
                    counts["retrying"] += 1
        if claim_rows:
            await connection.execute(
                """
                UPDATE grant_claims c
                SET state = o.state,
                    attempts = c.attempts + o.sent::int,
                    submitted_at = CASE WHEN o.sent THEN coalesce(c.submitted_at, now())
                                        ELSE c.submitted_at END,
                    next_attempt_at = now() + make_interval(secs => o.retry_in_s),
                    lease_until = NULL, lease_token = NULL,
                    last_error_code = coalesce(o.code, c.last_error_code),
                    grant_amount_pence = o.amount,
                    closed_at = CASE WHEN o.state <> 'pending' THEN now() END,
                    updated_at = now()
                FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::float8[], $5::text[],
                            $6::int[]) AS o (claim_id, state, sent, retry_in_s, code, amount)
                WHERE c.claim_id = o.claim_id
                """,
                *map(list, zip(*claim_rows, strict=True)),
            )
        if achievement_rows:
            # The grant system's answer is the fact, whatever the row says now.
            await connection.execute(
                """
                UPDATE achievements a
                SET grant_state = o.state, grant_amount_pence = o.amount, grant_code = o.code,
                    claimed_at = CASE WHEN o.state = 'claimed' THEN now() ELSE a.claimed_at END
                FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[])
                    AS o (achievement_id, state, amount, code)
                WHERE a.achievement_id = o.achievement_id
                """,
                *map(list, zip(*achievement_rows, strict=True)),
            )
        await enqueue_many(connection, topics, events)
    return Recorded(**counts, lost_lease=len(outcomes) - len(owned))


async def pending_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'pending'")
    return count
