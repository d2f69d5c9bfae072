"""The grant bridge's side of the claims: record pending claims, lease due ones, record what the
grant API said, with the events each step publishes.

The state changes themselves, and the guards that keep them apart from an ATO's withdrawal,
are `services.core.grant_states`'s. No transaction is ever held across an HTTP call: a lease
(`lease_until`, `lease_token`) reserves claims for one bridge, the send happens outside any
transaction, and the outcome is recorded in one transaction that only applies while the lease
is still this bridge's.

Every function takes a connection and runs its own transaction on it; the loops acquire it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.core import grant_states
from services.core.events import (
    AcceptedAchievement,
    AchievementsAccepted,
    ClaimAccepted,
    ClaimRefused,
    ClaimSubmitted,
    Event,
    Topics,
)
from services.core.grant_states import ClaimOutcome
from services.core.logging import get_logger
from services.core.outbox import enqueue_many
from services.core.states import ClaimState
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
log = get_logger()


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
    return await grant_states.insert_pending_claims(
        connection, upload_id, ids, [claim_id_for(achievement_id) for achievement_id in ids]
    )


async def store_accepted_event(
    connection: asyncpg.Connection, event: AchievementsAccepted
) -> StoredEvent:
    """Applies one event once: its event_id and its claims are committed together."""
    eligible = sum(1 for a in event.achievements if a.grant_eligible)
    async with connection.transaction():
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


async def lease_due(
    connection: asyncpg.Connection,
    *,
    limit: int,
    lease_s: float,
    release_grace_s: float,
) -> Lease:
    """Leases up to `limit` released, due claims in a short transaction of its own; closes
    (never sends) the withdrawn ones, without an event: the gateway published
    `claim.withdrawn` with the withdrawal itself. See `grant_states.lease_due_claims`."""
    token = uuid.uuid4()
    async with connection.transaction():
        due = await grant_states.lease_due_claims(
            connection,
            limit=limit,
            lease_s=lease_s,
            release_grace_s=release_grace_s,
            token=token,
        )
    return Lease(
        token=token,
        claims=[LeasedClaim(ClaimData.from_row(row), row["attempts"]) for row in due.to_send],
        closed=due.closed,
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
    connection: asyncpg.Connection,
    topics: Topics,
    lease_token: uuid.UUID,
    outcomes: Sequence[Outcome],
) -> Recorded:
    """Records the answers of one lease in one transaction, with their outbox events."""
    if not outcomes:
        return Recorded()
    by_claim = {o.claim.data.claim_id: o for o in outcomes}
    async with connection.transaction():
        owned = await grant_states.lock_leased_claims(connection, lease_token, list(by_claim))
        rows: list[ClaimOutcome] = []
        events: list[Event] = []
        counts = {"accepted": 0, "refused": 0, "retrying": 0}
        for claim_id, first_send in owned.items():
            outcome = by_claim[claim_id]
            data = outcome.claim.data
            ids = {
                "achievement_id": data.achievement_id,
                "upload_id": data.upload_id,
                "claim_id": data.claim_id,
            }
            result = outcome.result
            sent = result is not None
            if sent and first_send:
                events.append(ClaimSubmitted(**ids))
            match result:
                case Accepted(amount) | Replayed(amount):
                    rows.append(ClaimOutcome(claim_id, ClaimState.ACCEPTED, sent, amount=amount))
                    events.append(ClaimAccepted(**ids, grant_amount_pence=amount))
                    counts["accepted"] += 1
                case Refused(code):
                    rows.append(ClaimOutcome(claim_id, ClaimState.REFUSED, sent, code=code))
                    events.append(ClaimRefused(**ids, code=code))
                    counts["refused"] += 1
                case Transient(reason):
                    rows.append(
                        ClaimOutcome(
                            claim_id, ClaimState.PENDING, sent, outcome.retry_in_s, code=reason
                        )
                    )
                    counts["retrying"] += 1
                case None:
                    pending = ClaimOutcome(claim_id, ClaimState.PENDING, sent, outcome.retry_in_s)
                    rows.append(pending)
                    counts["retrying"] += 1
        recorded = await grant_states.record_claim_outcomes(connection, lease_token, rows)
        if recorded.achievements_not_held:
            # The withdrawal guard makes this impossible; if it happens, the grant system holds
            # a claim the pipeline does not expect: reconcile by hand.
            log.error(
                "claim_answer_not_applied",
                achievements=[str(a) for a in recorded.achievements_not_held],
            )
        await enqueue_many(connection, topics, events)
    return Recorded(**counts, lost_lease=len(outcomes) - len(owned))
