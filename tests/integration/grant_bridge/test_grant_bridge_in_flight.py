"""Overlapping batch requests against the real stand-in: never more out at once than
GRANT_BRIDGE_MAX_IN_FLIGHT, fewer after 429s, and every claim accepted once at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from bridge_helpers import (
    COURSE_GRANT_PENCE,
    Standin,
    all_closed,
    bridge_settings,
    seed_upload,
    wait_until,
)

from services.core.events import Topics
from services.core.settings import DeploymentMode, KafkaSettings
from services.grant_bridge.claims import store_accepted_event
from services.grant_bridge.forwarder import Forwarder
from services.grant_bridge.grant_client import (
    ClaimData,
    ClaimResult,
    GrantClient,
    claim_id_for,
    new_session,
)

CLAIMS = 240
BATCH = 10
MAX_IN_FLIGHT = 4
# Kafka is not used here: the claims are recorded directly and no event is relayed.
KAFKA = KafkaSettings(deployment_mode=DeploymentMode.LOCAL)


class CountingClient(GrantClient):
    """The real client, counting the batch requests out at once."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.out = 0
        self.most_out = 0

    async def submit_batch(self, claims: Sequence[ClaimData]) -> list[ClaimResult]:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            return await super().submit_batch(claims)
        finally:
            self.out -= 1


@pytest.mark.slow
async def test_batches_overlap_up_to_the_limit_which_a_429_halves(
    pool: asyncpg.Pool, database_url: str, standin: Standin
) -> None:
    settings = bridge_settings(
        database_url,
        KAFKA,
        standin,
        batch_size=BATCH,
        max_in_flight=MAX_IN_FLIGHT,
        breaker_failure_threshold=100,  # the limit, not the breaker, is what this watches
    )
    seeded = await seed_upload(pool, released=CLAIMS, uln_base=1_500_000_000)
    async with pool.acquire() as held:
        assert (await store_accepted_event(held, seeded.event())).recorded == CLAIMS
    # Slow answers (stored first): a second each, time enough for four leases on a busy machine.
    await standin.set_faults(slow=1.0, slow_delay_s=1.0, seed=7)

    session = new_session(
        token=settings.token.get_secret_value(),
        timeout_s=settings.client_timeout_s,
        max_connections=MAX_IN_FLIGHT,
    )
    client = CountingClient(session, settings.grant_api_url)
    forwarder = Forwarder(settings, pool, client, Topics(KAFKA.topic_prefix))
    stop = asyncio.Event()
    running = asyncio.create_task(forwarder.run(stop))
    try:
        await wait_until(lambda: _accepted_at_least(pool, 4 * BATCH), what="first batches")
        assert client.most_out == MAX_IN_FLIGHT

        # Every request answered 429 (Retry-After: 0): the limit comes down to one.
        await standin.set_faults(slow=0.0, retry_after_fraction=1.0, retry_after_s=0)
        await wait_until(lambda: _true(forwarder.in_flight.limit == 1), what="limit at one")
        await standin.set_faults(retry_after_fraction=0.0)
        await wait_until(lambda: all_closed(pool, CLAIMS), timeout_s=60.0, what="claims closed")
    finally:
        stop.set()
        await running
        await session.close()

    assert client.most_out == MAX_IN_FLIGHT  # never more, whatever the answers
    assert 1 < forwarder.in_flight.limit <= MAX_IN_FLIGHT  # growing back once 429s stopped
    stored = await standin.claims_of(seeded.upload_id)
    assert sorted(c["claim_id"] for c in stored) == sorted(
        str(claim_id_for(a)) for a in seeded.released
    )
    assert {c["grant_amount_pence"] for c in stored} == {COURSE_GRANT_PENCE}
    states = await pool.fetch("SELECT grant_state, count(*) AS n FROM achievements GROUP BY 1")
    assert {row["grant_state"]: row["n"] for row in states} == {"claimed": CLAIMS}
    codes = {row["last_error_code"] for row in await pool.fetch("SELECT * FROM grant_claims")}
    assert "RATE_LIMITED" in codes


async def _accepted_at_least(pool: asyncpg.Pool, count: int) -> bool:
    accepted = await pool.fetchval("SELECT count(*) FROM grant_claims WHERE state = 'accepted'")
    return bool(accepted >= count)


async def _true(value: bool) -> bool:
    return value
