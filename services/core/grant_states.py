"""Every change of an achievement's grant state and of a grant claim's state: the one module
that writes `achievements.grant_state` after an achievement is recorded, and `grant_claims.state`.

Why one module, and why in core: two services move these states (the gateway withdraws; the
bridge leases claims and records the grant system's answers), and what keeps them from
contradicting each other is one rule with a half on each side. The bridge's lease and an ATO's
withdrawal lock the same `achievements` rows, and each statement re-checks in its WHERE clause
the states the other one leaves behind. Kept together, that rule is read and changed in one
place; the gateway and the bridge only call these functions. (The validator inserts
achievements with `states.initial_grant_state`, and changes them no further.)

How the lease and a withdrawal exclude each other, per achievement:
- The lease locks each due claim *and its achievement* `FOR UPDATE ... SKIP LOCKED`: an
  achievement a withdrawal holds is passed over this round, and one withdrawn before is closed
  as withdrawn, never sent. Only a `held`, released achievement's claim is leased for sending.
- A withdrawal locks its achievements first, then changes them in a later statement whose guard
  asks that `release_at` is still ahead at that statement's start and that no claim of the
  achievement has been leased, sent or closed. A lease that committed while the withdrawal
  waited for the locks (or before its transaction began) is therefore seen, and wins.
- An answer is recorded only while the claim is still pending under this bridge's lease token,
  and only onto a `held` achievement: it never overwrites `withdrawn`, and an accepted claim is
  never closed as withdrawn (closing, too, asks for a pending claim).
No transaction here spans the HTTP call to the grant API: the lease commits, the bridge sends,
and the answers are recorded in a new transaction guarded by the lease token.

Locks are taken in one order, achievements before (or without waiting for) claims: the lease
never waits (SKIP LOCKED), a withdrawal reads claims without locking them, and recording
answers locks claims and then achievements that no withdrawal can hold any more (their claims
are leased, so the withdrawal guard refuses them). So these statements cannot deadlock.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.core.states import (
    ANSWERED,
    GRANT_STATE_OF_CLAIM,
    SENDABLE,
    WITHDRAWABLE,
    ClaimState,
    GrantState,
    sql_list,
    sql_literal,
)

# When an achievement's amendment window ends: its upload's `release_at`, stamped once when the
# outcome was decided (the validator writes achievements chunk by chunk before that moment).
# Achievements accepted before uploads carried it have their own, and keep it.
RELEASE_AT = (
    "coalesce(a.release_at, (SELECT u.release_at FROM uploads u WHERE u.upload_id = a.upload_id))"
)

_PENDING = sql_literal(ClaimState.PENDING)
_HELD = sql_literal(SENDABLE)
_WITHDRAWN = sql_literal(GrantState.WITHDRAWN)

# A claim that may have reached the grant system, or is closed: its achievement stays as it is.
_CLAIM_UNDER_WAY = f"""EXISTS (
    SELECT 1 FROM grant_claims c WHERE c.achievement_id = a.achievement_id
      AND (c.state <> {_PENDING} OR c.lease_token IS NOT NULL OR c.submitted_at IS NOT NULL))"""

# The withdrawal guard on an achievement `a`, judged when the statement runs: after the locks.
_WITHDRAWABLE = f"""(a.grant_state IN ({sql_list(WITHDRAWABLE)})
    AND {RELEASE_AT} > statement_timestamp()
    AND NOT {_CLAIM_UNDER_WAY})"""


async def _lock_achievements(connection: asyncpg.Connection, where: str, key: uuid.UUID) -> None:
    # In id order, so two withdrawals touching the same rows queue instead of deadlocking.
    await connection.execute(
        f"SELECT 1 FROM achievements WHERE {where} = $1 ORDER BY achievement_id FOR UPDATE", key
    )


@dataclass(frozen=True, slots=True)
class UploadWithdrawal:
    withdrawn: list[uuid.UUID]  # achievements withdrawn now (empty when blocked)
    blocked: int  # achievements that can no longer be withdrawn; if any, none was withdrawn


_WITHDRAW_UPLOAD = f"""
WITH judged AS (
    SELECT a.grant_state = {_WITHDRAWN} AS already, coalesce({_WITHDRAWABLE}, false) AS allowed
    FROM achievements a WHERE a.upload_id = $1
), blocked AS (
    SELECT count(*) AS n FROM judged WHERE NOT already AND NOT allowed
), withdrawn AS (
    UPDATE achievements a SET grant_state = {_WITHDRAWN}, withdrawn_at = now()
    WHERE a.upload_id = $1 AND {_WITHDRAWABLE} AND (SELECT n FROM blocked) = 0
    RETURNING a.achievement_id
)
SELECT (SELECT n FROM blocked) AS blocked,
       ARRAY(SELECT achievement_id FROM withdrawn ORDER BY achievement_id) AS withdrawn
"""


async def withdraw_upload_achievements(
    connection: asyncpg.Connection, upload_id: uuid.UUID
) -> UploadWithdrawal:
    """Withdraws every achievement of an upload that is not withdrawn already, or none of them
    when one can no longer be withdrawn (past its window, answered, or its claim under way)."""
    await _lock_achievements(connection, "upload_id", upload_id)
    row = await connection.fetchrow(_WITHDRAW_UPLOAD, upload_id)
    return UploadWithdrawal(withdrawn=list(row["withdrawn"]), blocked=int(row["blocked"]))


async def withdraw_achievement(connection: asyncpg.Connection, achievement_id: uuid.UUID) -> bool:
    """Withdraws one achievement; False (and nothing changed) when it can no longer be."""
    await _lock_achievements(connection, "achievement_id", achievement_id)
    result: str = await connection.execute(
        f"UPDATE achievements a SET grant_state = {_WITHDRAWN}, withdrawn_at = now()"
        f" WHERE a.achievement_id = $1 AND {_WITHDRAWABLE}",
        achievement_id,
    )
    return result == "UPDATE 1"


async def insert_pending_claims(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    achievement_ids: Sequence[uuid.UUID],
    claim_ids: Sequence[uuid.UUID],
) -> tuple[int, int]:
    """A pending claim per grant-eligible achievement of the upload among those given, unless it
    has one; returns (inserted, found). Eligibility and release time come from the achievement
    row. A withdrawn achievement gets one too: the next lease closes it as withdrawn."""
    row = await connection.fetchrow(
        f"""
        WITH wanted AS (
            SELECT a.achievement_id, a.upload_id, a.row_number, {RELEASE_AT} AS release_at,
                   i.claim_id
            FROM unnest($1::uuid[], $2::uuid[]) AS i (achievement_id, claim_id)
            JOIN achievements a ON a.achievement_id = i.achievement_id
            WHERE a.upload_id = $3 AND a.grant_eligible
        ), inserted AS (
            INSERT INTO grant_claims (claim_id, achievement_id, upload_id, row_number,
                                      release_at, next_attempt_at, state)
            SELECT claim_id, achievement_id, upload_id, row_number, release_at, release_at,
                   {_PENDING}
            FROM wanted
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM wanted) AS found
        """,
        list(achievement_ids),
        list(claim_ids),
        upload_id,
    )
    return int(row["inserted"]), int(row["found"])


@dataclass(frozen=True, slots=True)
class DueLease:
    to_send: list[asyncpg.Record]  # leased claims joined with their achievements' columns
    closed: int  # closed without a send: withdrawn, or in no state to claim


_LOCK_DUE = f"""
SELECT c.claim_id
FROM grant_claims c JOIN achievements a ON a.achievement_id = c.achievement_id
WHERE c.state = {_PENDING}
  AND c.next_attempt_at <= now()
  AND c.release_at <= now() - make_interval(secs => $2)
  AND (c.lease_until IS NULL OR c.lease_until <= now())
ORDER BY c.next_attempt_at
LIMIT $1
FOR UPDATE OF c, a SKIP LOCKED
"""

# The achievement may be sent: held, and released by the database clock.
_SENDABLE = f"(a.grant_state = {_HELD} AND {RELEASE_AT} <= now())"

_LEASE = f"""
UPDATE grant_claims c
SET lease_until = now() + make_interval(secs => $2), lease_token = $3, updated_at = now()
FROM achievements a
WHERE c.claim_id = ANY($1::uuid[]) AND a.achievement_id = c.achievement_id
  AND c.state = {_PENDING} AND {_SENDABLE}
RETURNING c.claim_id, c.attempts, a.achievement_id, a.upload_id, a.row_number, a.ato_id,
    a.levy_number, a.course_code, a.achievement_date, a.provider_reference, a.forename,
    a.surname, a.date_of_birth, a.uln, a.ni_number, a.citb_individual_id, a.notes
"""

_CLOSE_UNSENDABLE = f"""
UPDATE grant_claims c
SET state = CASE WHEN a.grant_state = {_WITHDRAWN} THEN {sql_literal(ClaimState.WITHDRAWN)}
                 ELSE {sql_literal(ClaimState.SKIPPED)} END,
    lease_until = NULL, lease_token = NULL, closed_at = now(), updated_at = now()
FROM achievements a
WHERE c.claim_id = ANY($1::uuid[]) AND a.achievement_id = c.achievement_id
  AND c.state = {_PENDING} AND c.lease_token IS DISTINCT FROM $2
  AND {_SENDABLE} IS NOT TRUE
"""


async def requeue_pending_claims(
    connection: asyncpg.Connection, claim_ids: list[uuid.UUID]
) -> list[uuid.UUID]:
    """Pending claims made due now (`achievements reconcile --repair`: the grant system holds
    them, so a resend, which carries the same idempotency key, settles them); a claim another
    bridge has leased is left to it. Returns the claims re-queued."""
    rows = await connection.fetch(
        f"""
        UPDATE grant_claims SET next_attempt_at = now()
        WHERE claim_id = ANY($1::uuid[]) AND state = {_PENDING}
          AND (lease_until IS NULL OR lease_until < now())
        RETURNING claim_id
        """,
        claim_ids,
    )
    return [row["claim_id"] for row in rows]


async def lease_due_claims(
    connection: asyncpg.Connection,
    *,
    limit: int,
    lease_s: float,
    release_grace_s: float,
    token: uuid.UUID,
) -> DueLease:
    """Leases up to `limit` released, due claims whose achievements may be sent, and closes the
    others it locked (withdrawn, or in no state to claim) so they are never sent.

    Claims and achievements are locked `FOR UPDATE ... SKIP LOCKED`: several bridges lease at
    once without waiting for each other, and an achievement a withdrawal holds is left alone.
    `now()` is the database clock, the one `release_at` was stamped against.
    """
    locked = await connection.fetch(_LOCK_DUE, limit, release_grace_s)
    if not locked:
        return DueLease(to_send=[], closed=0)
    claim_ids = [row["claim_id"] for row in locked]
    to_send = await connection.fetch(_LEASE, claim_ids, lease_s, token)
    closed: str = await connection.execute(_CLOSE_UNSENDABLE, claim_ids, token)
    return DueLease(to_send=list(to_send), closed=int(closed.rsplit(" ", 1)[1]))


async def lock_leased_claims(
    connection: asyncpg.Connection, token: uuid.UUID, claim_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, bool]:
    """The given claims still pending under this lease, locked; each with whether it was never
    sent before. A claim missing here lost its lease (it ran out; another bridge took over)."""
    rows = await connection.fetch(
        "SELECT claim_id, submitted_at IS NULL AS first_send FROM grant_claims"
        f" WHERE claim_id = ANY($1::uuid[]) AND state = {_PENDING} AND lease_token = $2"
        " FOR UPDATE",
        list(claim_ids),
        token,
    )
    return {row["claim_id"]: bool(row["first_send"]) for row in rows}


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """What became of one leased claim: answered, or back to pending for a later round."""

    claim_id: uuid.UUID
    state: ClaimState  # PENDING (retry), or an answer: ACCEPTED, REFUSED
    sent: bool  # a request carried it this round
    retry_in_s: float = 0.0
    code: str | None = None  # the refusal code, or why it is retried
    amount: int | None = None  # grant_amount_pence of an accepted claim

    def __post_init__(self) -> None:
        if self.state is not ClaimState.PENDING and self.state not in ANSWERED:
            raise ValueError(f"an outcome cannot close a claim as {self.state}")


@dataclass(frozen=True, slots=True)
class RecordedOutcomes:
    claims: int  # claims updated (still under this lease)
    # Answered claims whose achievement was no longer held, so kept its state: never expected.
    achievements_not_held: list[uuid.UUID]


# The grant state each answer gives the achievement, from the documented mapping.
_ANSWER_TO_GRANT = ", ".join(
    f"({sql_literal(claim)}, {sql_literal(grant)})"
    for claim in sorted(ANSWERED)
    if (grant := GRANT_STATE_OF_CLAIM[claim]) is not None
)

_RECORD = f"""
WITH o AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::float8[], $5::text[], $6::int[])
        AS o (claim_id, state, sent, retry_in_s, code, amount)
), claims AS (
    UPDATE grant_claims c
    SET state = o.state,
        attempts = c.attempts + o.sent::int,
        submitted_at = CASE WHEN o.sent THEN coalesce(c.submitted_at, now())
                            ELSE c.submitted_at END,
        next_attempt_at = now() + make_interval(secs => o.retry_in_s),
        lease_until = NULL, lease_token = NULL,
        last_error_code = coalesce(o.code, c.last_error_code),
        grant_amount_pence = o.amount,
        closed_at = CASE WHEN o.state <> {_PENDING} THEN now() END,
        updated_at = now()
    FROM o
    WHERE c.claim_id = o.claim_id AND c.state = {_PENDING} AND c.lease_token = $7
    RETURNING c.achievement_id, o.state, o.code, o.amount
), answered AS (
    SELECT claims.*, m.grant_state
    FROM claims JOIN (VALUES {_ANSWER_TO_GRANT}) AS m (claim_state, grant_state)
        ON m.claim_state = claims.state
), applied AS (
    UPDATE achievements a
    SET grant_state = answered.grant_state, grant_amount_pence = answered.amount,
        grant_code = answered.code,
        claimed_at = CASE WHEN answered.grant_state = {sql_literal(GrantState.CLAIMED)}
                          THEN now() ELSE a.claimed_at END
    FROM answered
    WHERE a.achievement_id = answered.achievement_id AND a.grant_state = {_HELD}
    RETURNING a.achievement_id
)
SELECT (SELECT count(*) FROM claims) AS claims,
       ARRAY(SELECT achievement_id FROM answered
             EXCEPT SELECT achievement_id FROM applied) AS not_held
"""


async def record_claim_outcomes(
    connection: asyncpg.Connection, token: uuid.UUID, outcomes: Sequence[ClaimOutcome]
) -> RecordedOutcomes:
    """Records each outcome on its claim while the claim is pending under this lease, and an
    answer on the achievement while it is held (accepted → claimed, refused → refused)."""
    if not outcomes:
        return RecordedOutcomes(claims=0, achievements_not_held=[])
    row = await connection.fetchrow(
        _RECORD,
        [o.claim_id for o in outcomes],
        [o.state.value for o in outcomes],
        [o.sent for o in outcomes],
        [o.retry_in_s for o in outcomes],
        [o.code for o in outcomes],
        [o.amount for o in outcomes],
        token,
    )
    return RecordedOutcomes(claims=int(row["claims"]), achievements_not_held=list(row["not_held"]))
