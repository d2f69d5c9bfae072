"""A withdrawal and the bridge's claim of the same achievement exclude each other: either the
withdrawal wins (withdrawn, its claim never sent) or the claim does (claimed, not withdrawn),
never both. Real PostgreSQL and the stand-in, whose requests are counted per claim id; the end of
the amendment window is set in the database, never waited for."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog
from asyncpg.transaction import Transaction
from bridge_helpers import Seeded, Standin, bridge_settings, seed_upload

from services.core.events import Topics
from services.core.settings import KafkaSettings
from services.core.states import ClaimState, GrantState
from services.grant_bridge.claims import (
    Outcome,
    lease_due,
    record_outcomes,
    store_accepted_event,
)
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import Accepted, GrantClient, claim_id_for, new_session
from services.upload_gateway import achievements, uploads
from services.upload_gateway.domain_errors import DomainError

ITERATIONS = 50
TOPICS = Topics("race.")  # events only go to the outbox here: no Kafka needed
WINDOW_CLOSED = "AMENDMENT_WINDOW_CLOSED"
WITHDRAWN = "withdrawn"

# The amendment window of these uploads ends now: one instant for achievements and claims,
# taken after their achievements are locked (in id order, as a withdrawal locks them), so a
# withdrawal that got there first has committed before it.
LOCK_ACHIEVEMENTS = """
SELECT 1 FROM achievements WHERE upload_id = ANY($1::uuid[]) ORDER BY achievement_id FOR UPDATE
"""
END_WINDOW = """
WITH ended AS (
    UPDATE achievements SET release_at = statement_timestamp()
    WHERE upload_id = ANY($1::uuid[])
)
UPDATE grant_claims SET release_at = statement_timestamp(), next_attempt_at = statement_timestamp()
WHERE upload_id = ANY($1::uuid[])
"""
OUTCOMES = """
SELECT a.achievement_id, a.upload_id, a.grant_state, a.withdrawn_at IS NOT NULL AS stamped,
       c.claim_id, c.state AS claim_state
FROM achievements a JOIN grant_claims c USING (achievement_id)
WHERE a.upload_id = ANY($1::uuid[])
"""


@asynccontextmanager
async def forwarder_for(
    pool: asyncpg.Pool, database_url: str, standin: Standin
) -> AsyncIterator[Forwarder]:
    settings = bridge_settings(
        database_url, KafkaSettings(topic_prefix="race."), standin, release_grace_s=0.0
    )
    session = new_session(
        token=settings.token.get_secret_value(),
        timeout_s=settings.client_timeout_s,
        max_connections=settings.single_concurrency,
    )
    try:
        yield Forwarder(settings, pool, GrantClient(session, settings.grant_api_url), TOPICS)
    finally:
        await session.close()


async def end_window(pool: asyncpg.Pool, *seeded: Seeded) -> None:
    upload_ids = [s.upload_id for s in seeded]
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(LOCK_ACHIEVEMENTS, upload_ids)
        await connection.execute(END_WINDOW, upload_ids)


async def record_claims(pool: asyncpg.Pool, *seeded: Seeded) -> None:
    async with pool.acquire() as connection:
        for upload in seeded:
            await store_accepted_event(connection, upload.event())


async def begin_early(connection: asyncpg.Connection) -> Transaction:
    """A transaction whose `now()` is fixed already: a withdrawal request that is running when
    the window ends."""
    transaction = connection.transaction()
    await transaction.start()
    await connection.fetchval("SELECT now()")
    return transaction


async def answer_of(request: Awaitable[object]) -> str:
    try:
        await request
    except DomainError as error:
        return error.code
    return WITHDRAWN


async def answer_and_commit(transaction: Transaction, request: Awaitable[object]) -> str:
    answer = await answer_of(request)
    await transaction.commit()  # a refusal changed nothing; commit all the same
    return answer


async def drain(forwarder: Forwarder, pool: asyncpg.Pool, upload_ids: list[uuid.UUID]) -> None:
    """Bridge rounds until every claim of these uploads is closed (all are due by now)."""
    for _ in range(20):
        pending = await pool.fetchval(
            "SELECT count(*) FROM grant_claims WHERE upload_id = ANY($1::uuid[]) AND state = $2",
            upload_ids,
            ClaimState.PENDING,
        )
        if pending == 0:
            return
        await forwarder.forward_once()
    raise AssertionError("claims still pending after the bridge's rounds")


async def race_once(
    pool: asyncpg.Pool, forwarder: Forwarder, rng: random.Random, whole: Seeded, single: Seeded
) -> dict[str, str]:
    """Both withdrawals, already running when the window ends, race the end of the window and
    the bridge's round, started in a shuffled order; returns each withdrawal's answer."""
    target = single.future[0]
    async with pool.acquire() as upload_connection, pool.acquire() as single_connection:
        upload_transaction = await begin_early(upload_connection)
        single_transaction = await begin_early(single_connection)

        async def withdraw_whole() -> str:
            return await answer_and_commit(
                upload_transaction,
                uploads.withdraw_upload(upload_connection, TOPICS, whole.ato_id, whole.upload_id),
            )

        async def withdraw_one() -> str:
            return await answer_and_commit(
                single_transaction,
                achievements.withdraw_achievement(single_connection, TOPICS, single.ato_id, target),
            )

        async def window_ends_and_bridge_runs() -> str:
            await end_window(pool, whole, single)
            await forwarder.forward_once()
            return "bridge"

        racers: list[Callable[[], Coroutine[Any, Any, str]]] = [
            withdraw_whole,
            withdraw_one,
            window_ends_and_bridge_runs,
        ]
        rng.shuffle(racers)
        tasks = {racer.__name__: asyncio.create_task(racer()) for racer in racers}
        await asyncio.gather(*tasks.values())
    return {name: task.result() for name, task in tasks.items()}


async def test_withdrawals_exactly_at_release_at_never_let_a_claim_through(
    pool: asyncpg.Pool, database_url: str, standin: Standin
) -> None:
    """Many rounds of a whole-upload withdrawal and a single-achievement withdrawal at the end
    of the window against the bridge's lease. Per achievement: withdrawn and never sent, or
    claimed and not withdrawn; and the answer each withdrawal got says which."""
    rng = random.Random(20_260_301)
    won = Counter[str]()
    async with forwarder_for(pool, database_url, standin) as forwarder:
        for iteration in range(ITERATIONS):
            uln_base = 1_800_000_000 + 10 * iteration
            whole = await seed_upload(pool, future=3, release_in_s=3600, uln_base=uln_base)
            single = await seed_upload(pool, future=2, release_in_s=3600, uln_base=uln_base + 5)
            target, untouched = single.future
            await record_claims(pool, whole, single)

            answers = await race_once(pool, forwarder, rng, whole, single)
            upload_ids = [whole.upload_id, single.upload_id]
            await drain(forwarder, pool, upload_ids)

            rows = {row["achievement_id"]: row for row in await pool.fetch(OUTCOMES, upload_ids)}
            assert len(rows) == 5
            for achievement_id, row in rows.items():
                calls = standin.counter.per_claim[str(row["claim_id"])]
                assert row["claim_id"] == claim_id_for(achievement_id)
                if row["grant_state"] == GrantState.WITHDRAWN:
                    assert (row["stamped"], row["claim_state"], calls) == (
                        True,
                        ClaimState.WITHDRAWN,
                        0,
                    ), (iteration, answers)
                else:
                    assert (row["grant_state"], row["stamped"], row["claim_state"], calls) == (
                        GrantState.CLAIMED,
                        False,
                        ClaimState.ACCEPTED,
                        1,
                    ), (iteration, answers)

            whole_states = {rows[a]["grant_state"] for a in whole.future}
            assert len(whole_states) == 1  # all of the upload or none of it
            whole_withdrawn = whole_states == {GrantState.WITHDRAWN}
            assert answers["withdraw_whole"] == (WITHDRAWN if whole_withdrawn else WINDOW_CLOSED)
            upload_stamped = await pool.fetchval(
                "SELECT withdrawn_at IS NOT NULL FROM uploads WHERE upload_id = $1",
                whole.upload_id,
            )
            assert upload_stamped is whole_withdrawn
            one_withdrawn = rows[target]["grant_state"] == GrantState.WITHDRAWN
            assert answers["withdraw_one"] == (WITHDRAWN if one_withdrawn else WINDOW_CLOSED)
            assert rows[untouched]["grant_state"] == GrantState.CLAIMED
            won.update(
                [
                    "withdrawal" if whole_withdrawn else "claim",
                    "withdrawal" if one_withdrawn else "claim",
                ]
            )

    stored = [len(await standin.claims_of(u)) for u in await upload_ids_of(pool)]
    assert sum(stored) == sum(standin.counter.per_claim.values())  # each request stored a claim
    assert set(standin.counter.per_claim.values()) == {1}
    # The shuffled starts let each side win some rounds.
    assert won["withdrawal"] > 0, won
    assert won["claim"] > 0, won


async def upload_ids_of(pool: asyncpg.Pool) -> list[uuid.UUID]:
    return [row["upload_id"] for row in await pool.fetch("SELECT upload_id FROM uploads")]


async def test_the_lease_passes_over_an_achievement_a_withdrawal_holds(
    pool: asyncpg.Pool, database_url: str, standin: Standin
) -> None:
    """The lease locks the achievements it would send: one locked by a withdrawal in flight is
    neither sent nor closed, and once the withdrawal commits its claim is closed unsent."""
    seeded = await seed_upload(pool, released=2)
    held, other = seeded.released
    await record_claims(pool, seeded)

    async with pool.acquire() as withdrawal, withdrawal.transaction():
        await withdrawal.execute(
            "SELECT 1 FROM achievements WHERE achievement_id = $1 FOR UPDATE", held
        )
        async with pool.acquire() as bridge:
            lease = await lease_due(bridge, limit=10, lease_s=30.0, release_grace_s=0.0)
            assert [c.data.achievement_id for c in lease.claims] == [other]
            assert lease.closed == 0
            await record_outcomes(
                bridge, TOPICS, lease.token, [Outcome(lease.claims[0], Accepted(6000))]
            )
        await withdrawal.execute(
            "UPDATE achievements SET grant_state = $2, withdrawn_at = now()"
            " WHERE achievement_id = $1",
            held,
            GrantState.WITHDRAWN,
        )
    async with forwarder_for(pool, database_url, standin) as forwarder:
        assert await forwarder.forward_once() == 1  # closed, not sent

    states = {
        row["achievement_id"]: (row["grant_state"], row["state"])
        for row in await pool.fetch(
            "SELECT achievement_id, a.grant_state, c.state"
            " FROM achievements a JOIN grant_claims c USING (achievement_id)"
        )
    }
    assert states == {
        held: (GrantState.WITHDRAWN, ClaimState.WITHDRAWN),
        other: (GrantState.CLAIMED, ClaimState.ACCEPTED),
    }
    assert standin.counter.requests == 0


async def test_a_withdrawal_is_refused_once_a_claim_is_under_way_whatever_the_clock_says(
    pool: asyncpg.Pool,
) -> None:
    """The guard does not rest on clocks alone: a claim that is leased, was sent, or is closed
    keeps its achievement from being withdrawn even while `release_at` is still ahead."""
    seeded = await seed_upload(pool, future=4, release_in_s=3600)
    leased, sent, closed, free = seeded.future
    await record_claims(pool, seeded)
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE grant_claims SET lease_token = $2, lease_until = now()"
            " WHERE achievement_id = $1",
            leased,
            uuid.uuid4(),
        )
        await connection.execute(
            "UPDATE grant_claims SET submitted_at = now(), attempts = 1 WHERE achievement_id = $1",
            sent,
        )
        await connection.execute(
            "UPDATE grant_claims SET state = $2, closed_at = now() WHERE achievement_id = $1",
            closed,
            ClaimState.SKIPPED,
        )

        for achievement_id in (leased, sent, closed):
            assert (
                await answer_of(
                    achievements.withdraw_achievement(
                        connection, TOPICS, seeded.ato_id, achievement_id
                    )
                )
                == WINDOW_CLOSED
            )
        assert (
            await answer_of(
                uploads.withdraw_upload(connection, TOPICS, seeded.ato_id, seeded.upload_id)
            )
            == WINDOW_CLOSED
        )
        assert (
            await answer_of(
                achievements.withdraw_achievement(connection, TOPICS, seeded.ato_id, free)
            )
            == WITHDRAWN
        )
        states = {
            row["achievement_id"]: row["grant_state"]
            for row in await connection.fetch(
                "SELECT achievement_id, grant_state FROM achievements"
            )
        }
    assert states == {
        leased: GrantState.HELD,
        sent: GrantState.HELD,
        closed: GrantState.HELD,
        free: GrantState.WITHDRAWN,
    }


async def test_a_recorded_answer_never_overwrites_withdrawn(pool: asyncpg.Pool) -> None:
    """Even if an achievement were withdrawn behind a lease's back (the guards make that
    impossible), the grant system's answer is kept on the claim and the achievement stays
    withdrawn; the mismatch is logged for reconciliation."""
    seeded = await seed_upload(pool, released=1)
    achievement_id = seeded.released[0]
    await record_claims(pool, seeded)
    async with pool.acquire() as connection:
        lease = await lease_due(connection, limit=10, lease_s=30.0, release_grace_s=0.0)
        [claim] = lease.claims
        await connection.execute(
            "UPDATE achievements SET grant_state = $2, withdrawn_at = now()"
            " WHERE achievement_id = $1",
            achievement_id,
            GrantState.WITHDRAWN,
        )
        with structlog.testing.capture_logs() as logs:
            recorded = await record_outcomes(
                connection, TOPICS, lease.token, [Outcome(claim, Accepted(6000))]
            )
        row = await connection.fetchrow(
            "SELECT a.grant_state, a.grant_amount_pence, c.state"
            " FROM achievements a JOIN grant_claims c USING (achievement_id)"
        )
    assert recorded.accepted == 1
    assert (row["grant_state"], row["grant_amount_pence"], row["state"]) == (
        GrantState.WITHDRAWN,
        None,
        ClaimState.ACCEPTED,
    )
    [logged] = [e for e in logs if e["event"] == "claim_answer_not_applied"]
    assert logged["log_level"] == "error"
    assert logged["achievements"] == [str(achievement_id)]


async def test_a_closed_claim_is_neither_leased_nor_recorded_again(pool: asyncpg.Pool) -> None:
    """An accepted claim never becomes withdrawn: leases and answers only touch pending ones."""
    seeded = await seed_upload(pool, released=1)
    achievement_id = seeded.released[0]
    await record_claims(pool, seeded)
    async with pool.acquire() as connection:
        lease = await lease_due(connection, limit=10, lease_s=30.0, release_grace_s=0.0)
        await record_outcomes(
            connection, TOPICS, lease.token, [Outcome(lease.claims[0], Accepted(6000))]
        )
        # A withdrawal cannot get here (the guard refuses it); force the row to look withdrawn.
        await connection.execute(
            "UPDATE achievements SET grant_state = $2 WHERE achievement_id = $1",
            achievement_id,
            GrantState.WITHDRAWN,
        )
        # Make the accepted claim look due again: the lease still leaves it alone.
        await connection.execute("UPDATE grant_claims SET next_attempt_at = now() - interval '1 s'")
        again = await lease_due(connection, limit=10, lease_s=30.0, release_grace_s=0.0)
        replayed = await record_outcomes(
            connection, TOPICS, lease.token, [Outcome(lease.claims[0], Accepted(6000))]
        )
        state = await connection.fetchval("SELECT state FROM grant_claims")
    assert (again.claims, again.closed) == ([], 0)
    assert replayed.lost_lease == 1
    assert state == ClaimState.ACCEPTED
