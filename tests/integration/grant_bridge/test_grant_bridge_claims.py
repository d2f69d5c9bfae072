"""The grant bridge claims every released, eligible, not-withdrawn achievement exactly once,
against the real stand-in, PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import aiohttp
import asyncpg
import structlog
from bridge_helpers import (
    COURSE_GRANT_PENCE,
    TOKEN,
    ULN_BASE,
    Bridge,
    Standin,
    all_closed,
    bridge_settings,
    claim_states,
    outbox_events,
    publish,
    seed_upload,
    wait_until,
)

from services.core.events import Topics
from services.core.settings import KafkaSettings
from services.grant_bridge.circuit_breaker import BreakerState
from services.grant_bridge.claims import lease_due
from services.grant_bridge.grant_client import ClaimData, GrantClient, claim_id_for, new_session


async def test_eligible_released_achievements_are_claimed_once_and_recorded(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=5, withdrawn=2, ineligible=2, future=1)
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, seeded.event())

    with structlog.testing.capture_logs() as logs:
        async with Bridge(settings, pool, topics, forwarders=1).running():
            await wait_until(lambda: all_closed_but_future(pool, 7), what="claims closed")

    logged = repr(logs)
    assert "claims_forwarded" in logged
    for personal in ("Forename", "Surname", "1990-04-01", "cohort B", str(ULN_BASE + 2)):
        assert personal not in logged

    stored = await standin.claims_of(seeded.upload_id)
    assert sorted(c["claim_id"] for c in stored) == sorted(
        str(claim_id_for(a)) for a in seeded.released
    )
    assert {c["grant_amount_pence"] for c in stored} == {COURSE_GRANT_PENCE}
    assert standin.counter.requests == 1  # five due claims, one batch
    states = await claim_states(pool)
    assert {states[a] for a in seeded.released} == {"accepted"}
    assert {states[a] for a in seeded.withdrawn} == {"withdrawn"}
    assert states[seeded.future[0]] == "pending"
    assert not set(seeded.ineligible) & set(states)
    rows = await pool.fetch(
        "SELECT achievement_id, grant_state, grant_amount_pence, claimed_at FROM achievements"
    )
    by_id = {row["achievement_id"]: row for row in rows}
    for achievement_id in seeded.released:
        assert by_id[achievement_id]["grant_state"] == "claimed"
        assert by_id[achievement_id]["grant_amount_pence"] == COURSE_GRANT_PENCE
        assert by_id[achievement_id]["claimed_at"] is not None
    assert by_id[seeded.future[0]]["grant_state"] == "held"
    assert {by_id[a]["grant_state"] for a in seeded.ineligible} == {"not_eligible"}

    events = Counter((e["event_type"], e["achievement_id"]) for e in await outbox_events(pool))
    for achievement_id in seeded.released:
        assert events[("claim.submitted", str(achievement_id))] == 1
        assert events[("claim.accepted", str(achievement_id))] == 1
    # The gateway published claim.withdrawn with the withdrawal; the bridge closes silently.
    assert not {a for (kind, a) in events if kind == "claim.withdrawn"}
    assert not {a for (_, a) in events} & {str(a) for a in seeded.withdrawn}
    assert sum(events.values()) == 2 * 5


async def all_closed_but_future(pool: asyncpg.Pool, expected: int) -> bool:
    closed = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state <> 'pending'")
    return bool(closed == expected)


async def test_achievement_withdrawn_during_its_window_is_closed_and_never_sent(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=1, future=2, release_in_s=1.5)
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, seeded.event())
    withdrawn, kept = seeded.future

    async with Bridge(settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: all_closed_but_future(pool, 1), what="released claim sent")
        # The gateway's withdrawal, while the window is still open.
        result = await pool.execute(
            "UPDATE achievements SET grant_state = 'withdrawn', withdrawn_at = now()"
            " WHERE achievement_id = $1 AND grant_state = 'held' AND release_at > now()",
            withdrawn,
        )
        assert result == "UPDATE 1"
        await wait_until(lambda: all_closed(pool, 3), what="window ended")

    states = await claim_states(pool)
    assert states[withdrawn] == "withdrawn"
    assert states[kept] == "accepted"
    stored = {c["claim_id"] for c in await standin.claims_of(seeded.upload_id)}
    assert str(claim_id_for(withdrawn)) not in stored
    assert str(claim_id_for(withdrawn)) not in standin.counter.per_claim
    assert stored == {str(claim_id_for(a)) for a in (seeded.released[0], kept)}


async def test_release_time_in_the_future_is_not_sent(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, future=3, release_in_s=3600)
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, seeded.event())

    async with Bridge(settings, pool, topics, forwarders=1).running() as bridge:
        await wait_until(lambda: pending_is(pool, 3), what="claims recorded")
        rounds = [await f.forward_once() for f in bridge.forwarders for _ in range(3)]

    assert rounds == [0, 0, 0]
    assert standin.counter.requests == 0
    assert await standin.claims_of(seeded.upload_id) == []
    states = await pool.fetch("SELECT grant_state FROM achievements")
    assert {row["grant_state"] for row in states} == {"held"}


async def test_claims_are_exactly_once_under_injected_faults(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    await standin.set_faults(
        fail_before_store=0.2,
        fail_after_store=0.2,
        slow=0.05,
        slow_delay_s=0.6,
        retry_after_fraction=0.1,
        retry_after_s=1,
        seed=5,
    )
    batched = await seed_upload(pool, released=150, uln_base=1_100_000_000)
    single = await seed_upload(pool, released=40, uln_base=1_200_000_000)
    await publish(kafka_settings, topics, batched.event())
    batch_settings = bridge_settings(
        database_url, kafka_settings, standin, batch_size=25, client_timeout_s=0.3
    )

    async with Bridge(batch_settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: all_closed(pool, 150), what="batched claims closed")
    single_settings = bridge_settings(
        database_url, kafka_settings, standin, batching=False, client_timeout_s=0.3
    )
    await publish(kafka_settings, topics, single.event())
    async with Bridge(single_settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: all_closed(pool, 190), what="single claims closed")

    for seeded in (batched, single):
        stored = [c["claim_id"] for c in await standin.claims_of(seeded.upload_id)]
        expected = {str(claim_id_for(a)) for a in seeded.released}
        assert len(stored) == len(expected)
        assert set(stored) == expected
    states = await pool.fetch("SELECT grant_state, count(*) AS n FROM achievements GROUP BY 1")
    assert {row["grant_state"]: row["n"] for row in states} == {"claimed": 190}
    retried = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE attempts > 1")
    assert retried > 0  # the faults did bite
    codes = await pool.fetch("SELECT DISTINCT last_error_code FROM grant_claims")
    assert {"HTTP_503", "RATE_LIMITED"} <= {row["last_error_code"] for row in codes}
    events = Counter(e["event_type"] for e in await outbox_events(pool))
    assert events == {"claim.submitted": 190, "claim.accepted": 190}


async def test_a_timed_out_claim_is_resolved_by_retrying_with_the_same_key(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    # Every answer comes after the client gave up, but the claim is stored each time.
    await standin.set_faults(slow=1.0, slow_delay_s=0.6)
    seeded = await seed_upload(pool, released=1)
    settings = bridge_settings(database_url, kafka_settings, standin, client_timeout_s=0.3)
    await publish(kafka_settings, topics, seeded.event())
    claim_id = claim_id_for(seeded.released[0])

    async with Bridge(settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: error_is(pool, "TIMEOUT"), what="the first send timed out")
        # Stored all the same, as GET /v1/claims/{id} tells a client that wants to know.
        async with new_session(token=TOKEN, timeout_s=5.0, max_connections=1) as session:
            client = GrantClient(session, standin.url)
            stored = await client.get_claim(claim_id)
            assert stored is not None
            assert stored["claim_id"] == str(claim_id)
            assert await client.get_claim(claim_id_for(uuid.uuid4())) is None
        await standin.set_faults(slow=0.0)
        await wait_until(lambda: all_closed(pool, 1), what="claim resolved")

    row = await pool.fetchrow("SELECT state, attempts, grant_amount_pence FROM grant_claims")
    assert row["state"] == "accepted"
    assert row["attempts"] >= 2
    assert row["grant_amount_pence"] == COURSE_GRANT_PENCE  # from the 200 replay
    assert standin.counter.per_claim[str(claim_id)] == row["attempts"]
    assert [c["claim_id"] for c in await standin.claims_of(seeded.upload_id)] == [str(claim_id)]
    events = Counter(e["event_type"] for e in await outbox_events(pool))
    assert events == {"claim.submitted": 1, "claim.accepted": 1}


async def test_breaker_opens_while_the_grant_system_is_down_and_claims_wait(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    await standin.set_faults(down=True)
    first = await seed_upload(pool, released=30, uln_base=1_300_000_000)
    second = await seed_upload(pool, released=10, uln_base=1_400_000_000)
    settings = bridge_settings(
        database_url,
        kafka_settings,
        standin,
        batch_size=10,
        breaker_failure_threshold=3,
        breaker_cooldown_s=0.5,
    )
    await publish(kafka_settings, topics, first.event())

    async with Bridge(settings, pool, topics, forwarders=1).running() as bridge:
        forwarder = bridge.forwarders[0]
        await wait_until(
            lambda: asyncio.sleep(0, forwarder.breaker.state is BreakerState.OPEN),
            what="breaker open",
        )
        requests_when_open = standin.counter.requests
        # The consumer keeps recording while the breaker is open.
        await publish(kafka_settings, topics, second.event())
        await wait_until(lambda: pending_is(pool, 40), what="second upload recorded")
        await asyncio.sleep(1.2)
        # Only half-open probes (one claim each, one per cool-down) went out meanwhile.
        assert standin.counter.requests - requests_when_open <= 3
        assert await pending_is(pool, 40)
        states = await pool.fetch("SELECT DISTINCT grant_state FROM achievements")
        assert [row["grant_state"] for row in states] == ["held"]

        await standin.set_faults(down=False)
        await wait_until(lambda: all_closed(pool, 40), what="all claimed after recovery")
        assert forwarder.breaker.state is BreakerState.CLOSED

    for seeded in (first, second):
        stored = {c["claim_id"] for c in await standin.claims_of(seeded.upload_id)}
        assert stored == {str(claim_id_for(a)) for a in seeded.released}
    last_errors = await pool.fetch("SELECT DISTINCT last_error_code FROM grant_claims")
    assert {row["last_error_code"] for row in last_errors} <= {"HTTP_503", None}


async def test_two_forwarders_never_send_the_same_claim(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    batched = await seed_upload(pool, released=300, uln_base=1_500_000_000)
    single = await seed_upload(pool, released=60, uln_base=1_600_000_000)
    await publish(kafka_settings, topics, batched.event())
    settings = bridge_settings(database_url, kafka_settings, standin, batch_size=7)

    async with Bridge(settings, pool, topics, forwarders=2).running() as bridge:
        await wait_until(lambda: all_closed(pool, 300), what="batched claims closed")
        batched_requests = [f.requests_sent for f in bridge.forwarders]
    single_settings = bridge_settings(
        database_url, kafka_settings, standin, batching=False, single_concurrency=4
    )
    await publish(kafka_settings, topics, single.event())
    async with Bridge(single_settings, pool, topics, forwarders=2).running() as bridge:
        await wait_until(lambda: all_closed(pool, 360), what="single claims closed")
        single_requests = [f.requests_sent for f in bridge.forwarders]

    assert min(batched_requests) > 0  # both really worked
    assert min(single_requests) > 0
    assert len(standin.counter.per_claim) == 360
    assert set(standin.counter.per_claim.values()) == {1}
    attempts = await pool.fetch("SELECT DISTINCT attempts FROM grant_claims")
    assert [row["attempts"] for row in attempts] == [1]
    replays = await asyncpg_count(
        standin.database_url,
        "SELECT count(*) FROM idempotency_records WHERE response_status <> 201",
    )
    assert replays == 0


async def test_refusals_are_recorded_with_their_code_and_not_retried(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    unknown_course = await seed_upload(pool, released=1, course_code="XX-NOPE-1")
    not_eligible = await seed_upload(pool, released=1, levy_number="Z0000000")
    first = await seed_upload(pool, released=1, uln_base=1_700_000_000)
    # The same learner, course and date again, in another upload: a different achievement id.
    duplicate = await seed_upload(pool, released=1, uln_base=1_700_000_000)
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(
        kafka_settings, topics, unknown_course.event(), not_eligible.event(), first.event()
    )

    async with Bridge(settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: all_closed(pool, 3), what="first claims closed")
        await publish(kafka_settings, topics, duplicate.event())
        await wait_until(lambda: all_closed(pool, 4), what="duplicate closed")
        await asyncio.sleep(0.3)  # a retry would have happened by now

    rows = await pool.fetch(
        "SELECT a.achievement_id, a.grant_state, a.grant_code, c.attempts, c.state"
        " FROM achievements a JOIN grant_claims c USING (achievement_id)"
    )
    by_id = {row["achievement_id"]: row for row in rows}
    expected = {
        unknown_course.released[0]: ("refused", "UNKNOWN_COURSE"),
        not_eligible.released[0]: ("refused", "LEVY_NOT_ELIGIBLE"),
        first.released[0]: ("claimed", None),
        duplicate.released[0]: ("refused", "ALREADY_CLAIMED"),
    }
    for achievement_id, (state, code) in expected.items():
        row = by_id[achievement_id]
        assert (row["grant_state"], row["grant_code"]) == (state, code)
        assert row["attempts"] == 1
    assert sum(standin.counter.per_claim.values()) == 4
    refused = [e for e in await outbox_events(pool) if e["event_type"] == "claim.refused"]
    assert sorted(e["code"] for e in refused) == [
        "ALREADY_CLAIMED",
        "LEVY_NOT_ELIGIBLE",
        "UNKNOWN_COURSE",
    ]


async def test_redelivered_and_repeated_events_record_each_claim_once(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=4, future=2)
    event = seeded.event()
    # The same event twice (a redelivery) and the same achievements under a new event id.
    repeated = event.model_copy(update={"event_id": uuid.uuid4()})
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, event, event, repeated)

    async with Bridge(settings, pool, topics, forwarders=1).running():
        await wait_until(lambda: all_closed_but_future(pool, 4), what="claims closed")
        await wait_until(lambda: processed_is(pool, 2), what="all three messages consumed")

    assert await pool.fetchval("SELECT count(*) FROM grant_claims") == 6
    assert sum(standin.counter.per_claim.values()) == 4


async def pending_is(pool: asyncpg.Pool, expected: int) -> bool:
    pending = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'pending'")
    return bool(pending == expected)


async def processed_is(pool: asyncpg.Pool, expected: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM processed_events") == expected)


async def asyncpg_count(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        count: int = await connection.fetchval(sql)
        return count
    finally:
        await connection.close()


async def error_is(pool: asyncpg.Pool, code: str) -> bool:
    return bool(await pool.fetchval("SELECT last_error_code FROM grant_claims") == code)


async def test_claims_leased_by_a_crashed_bridge_are_sent_once_its_lease_runs_out(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=5)
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, seeded.event())

    async with Bridge(settings, pool, topics, forwarders=0).running():
        await wait_until(lambda: pending_is(pool, 5), what="claims recorded")
    # A bridge leases the claims and dies before sending or recording anything.
    async with pool.acquire() as connection:
        lease = await lease_due(connection, limit=10, lease_s=1.0, release_grace_s=0.0)
    assert len(lease.claims) == 5

    async with Bridge(settings, pool, topics, forwarders=1).running(consume=False) as bridge:
        assert await bridge.forwarders[0].forward_once() == 0  # still leased
        await wait_until(lambda: all_closed(pool, 5), what="claims sent after the lease")

    stored = [c["claim_id"] for c in await standin.claims_of(seeded.upload_id)]
    assert sorted(stored) == sorted(str(claim_id_for(a)) for a in seeded.released)
    assert set(standin.counter.per_claim.values()) == {1}


async def test_a_reused_idempotency_key_is_recorded_as_refused_and_logged_as_an_error(
    pool: asyncpg.Pool,
    database_url: str,
    kafka_settings: KafkaSettings,
    topics: Topics,
    standin: Standin,
) -> None:
    seeded = await seed_upload(pool, released=1)
    achievement_id = seeded.released[0]
    claim_id = str(claim_id_for(achievement_id))
    # Someone else used this claim's key first, with another body (another achievement date).
    row = await pool.fetchrow(
        "SELECT * FROM achievements WHERE achievement_id = $1", achievement_id
    )
    other = ClaimData.from_row({**dict(row), "claim_id": claim_id_for(achievement_id)}).body()
    other["achievement_date"] = "2026-03-02"
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session,
        session.post(
            f"{standin.url}/v1/claims", json=other, headers={"Idempotency-Key": claim_id}
        ) as response,
    ):
        assert response.status == 201
    settings = bridge_settings(database_url, kafka_settings, standin)
    await publish(kafka_settings, topics, seeded.event())

    with structlog.testing.capture_logs() as logs:
        async with Bridge(settings, pool, topics, forwarders=1).running():
            await wait_until(lambda: all_closed(pool, 1), what="claim closed")

    state = await pool.fetchrow(
        "SELECT grant_state, grant_code FROM achievements WHERE achievement_id = $1",
        achievement_id,
    )
    assert (state["grant_state"], state["grant_code"]) == ("refused", "IDEMPOTENCY_KEY_REUSED")
    errors = [e for e in logs if e["event"] == "claim_idempotency_key_reused"]
    assert len(errors) == 1
    assert errors[0]["log_level"] == "error"
    assert errors[0]["claim_id"] == claim_id
