"""The due-claims loop: lease released claims, send them, record the answers.

One round = one lease (a batch of up to `batch_size`, or a few waves of single claims) in a
short transaction of its own, the HTTP requests outside any transaction, then one transaction
with every outcome. With batching, rounds overlap: while one batch is out the next is leased
and sent, up to `InFlightLimit` batches at once (`max_in_flight`, halved on a 429, in_flight.py),
so the grant API's answer time, the lease and the recording of answers are not paid one after
the other. Single claims keep one round at a time (their own `single_concurrency` is the
requests in flight). While the breaker is not closed, no round starts beside another: an open
breaker leases nothing and the loop sleeps until the cool-down ends; a half-open one sends its
one probe alone.

Draining (`stop` set): nothing more is leased, requests already out finish and their answers
are recorded, single claims of the round not yet sent are handed back unsent (lease released).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence

import asyncpg

from services.core.db import TRANSIENT_ERRORS, connection
from services.core.events import Topics
from services.core.logging import get_logger
from services.core.metrics import GRANT_REQUEST_DURATION, record_claim_outcomes
from services.grant_bridge.backoff import retry_delay_s
from services.grant_bridge.circuit_breaker import BreakerState, CircuitBreaker
from services.grant_bridge.claims import Lease, LeasedClaim, Outcome, lease_due, record_outcomes
from services.grant_bridge.grant_client import (
    IDEMPOTENCY_KEY_REUSED,
    RATE_LIMITED,
    BatchRejected,
    ClaimResult,
    GrantClient,
    Refused,
    Transient,
)
from services.grant_bridge.in_flight import InFlightLimit
from services.grant_bridge.settings import GrantBridgeSettings

log = get_logger()


def _raise_failure(done: set[asyncio.Task[int]]) -> None:
    """A round that raised (a setting refused for good, a bug) stops the loop, as a failed
    round of the sequential loop did."""
    for task in done:
        task.result()


class Forwarder:
    def __init__(
        self,
        settings: GrantBridgeSettings,
        pool: asyncpg.Pool,
        client: GrantClient,
        topics: Topics,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._client = client
        self._topics = topics
        self.breaker = breaker or CircuitBreaker(
            failure_threshold=settings.breaker_failure_threshold,
            cooldown_s=settings.breaker_cooldown_s,
        )
        self._rng = rng or random.Random()
        self.in_flight = InFlightLimit(settings.max_in_flight)
        self.requests_sent = 0
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop`, overlapping up to the in-flight limit when batching; rounds in
        progress finish (their answers are recorded)."""
        self._stop = stop
        rounds: set[asyncio.Task[int]] = set()
        try:
            while not stop.is_set():
                finished = {task for task in rounds if task.done()}
                rounds -= finished
                _raise_failure(finished)
                progressed = False
                if len(rounds) < self._room(rounds):
                    lease = await self._lease_or_none()
                    if lease is not None and lease.claims:
                        rounds.add(asyncio.create_task(self._send_and_record(lease)))
                        continue  # lease the next batch while this one is out
                    progressed = lease is not None and lease.closed > 0
                if progressed:
                    continue
                # Nothing more to start now: wait for a round to end, a claim to fall due, the
                # breaker's cool-down, or `stop`.
                idle_s = max(self._settings.poll_interval_s, self.breaker.retry_in_s())
                if rounds:
                    done, rounds = await asyncio.wait(
                        rounds, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    _raise_failure(done)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=idle_s)
        finally:
            if rounds:
                done, _ = await asyncio.wait(rounds)
                _raise_failure(done)

    def _room(self, rounds: set[asyncio.Task[int]]) -> int:
        """How many rounds may be out at once now."""
        if self.breaker.state is not BreakerState.CLOSED:
            # A breaker that is not closed decides alone: one probe, or nothing while open.
            return 0 if rounds else 1
        if not self._settings.batching:
            return 1
        return self.in_flight.limit

    async def forward_once(self) -> int:
        """One round; returns the claims leased (0 when nothing was due or the breaker is open)."""
        lease = await self._lease()
        if lease is None:
            return 0
        if not lease.claims:
            return lease.closed
        await self._record(lease, await self._send(lease))
        return len(lease.claims) + lease.closed

    async def _lease_or_none(self) -> Lease | None:
        try:
            return await self._lease()
        except TRANSIENT_ERRORS as error:
            # Leases run out by themselves, so claims of a failed round are not stuck.
            log.warning("forward_round_failed", error=type(error).__name__)
            return None

    async def _lease(self) -> Lease | None:
        """A lease for one round, or None while the breaker is open."""
        state = self.breaker.state
        if state is BreakerState.OPEN:
            return None
        # A half-open breaker lets one probe through: lease a single claim for it.
        probing = state is BreakerState.HALF_OPEN
        settings = self._settings
        batching = settings.batching and not probing
        limit = 1 if probing else settings.batch_size if batching else self._single_lease_size()
        # A connection per transaction: none is held while the requests are out.
        async with connection(self._pool, settings.common.postgres) as held:
            lease = await lease_due(
                held,
                limit=limit,
                lease_s=settings.lease_s,
                release_grace_s=settings.release_grace_s,
            )
        if lease.closed:
            log.info("withdrawn_claims_closed", count=lease.closed)
        return lease

    async def _send_and_record(self, lease: Lease) -> int:
        """One overlapping round after its lease: 0 when its answers could not be recorded
        (the lease runs out and the claims come again; the grant API replays their keys)."""
        outcomes = await self._send(lease)
        try:
            await self._record(lease, outcomes)
        except TRANSIENT_ERRORS as error:
            log.warning("forward_round_failed", error=type(error).__name__)
            return 0
        return len(lease.claims)

    async def _send(self, lease: Lease) -> list[Outcome]:
        if self._settings.batching and len(lease.claims) > 1:
            return await self._send_batch(lease.claims)
        return await self._send_singles(lease.claims)

    async def _record(self, lease: Lease, outcomes: list[Outcome]) -> None:
        async with connection(self._pool, self._settings.common.postgres) as held:
            recorded = await record_outcomes(held, self._topics, lease.token, outcomes)
        record_claim_outcomes(recorded)
        log.info(
            "claims_forwarded",
            leased=len(lease.claims),
            accepted=recorded.accepted,
            refused=recorded.refused,
            retrying=recorded.retrying,
            lost_lease=recorded.lost_lease,
            breaker=self.breaker.state.value,
            in_flight_limit=self.in_flight.limit,
        )

    def _single_lease_size(self) -> int:
        """Single claims per lease: as many waves of `single_concurrency` requests as fit twice
        into the lease even if every request runs to the client timeout."""
        settings = self._settings
        waves = max(1, int(settings.lease_s // (2 * settings.client_timeout_s)))
        return min(settings.single_concurrency * waves, settings.batch_size)

    async def _send_batch(self, claims: Sequence[LeasedClaim]) -> list[Outcome]:
        if not self.breaker.allow_request():
            return [self._deferred(claim) for claim in claims]
        self.requests_sent += 1
        generation = self.in_flight.sent()
        try:
            with GRANT_REQUEST_DURATION.labels("batch").time():
                results = await self._client.submit_batch([claim.data for claim in claims])
        except BatchRejected as error:
            # Its claims are still valid one by one, each under its own key.
            self.breaker.record_success()
            self.in_flight.answered(generation)
            log.error("claim_batch_rejected", status=error.status, code=error.code)
            return await self._send_singles(claims)
        failed = results[0] if all(isinstance(r, Transient) for r in results) else None
        self._record_breaker(failed)
        if isinstance(failed, Transient) and failed.reason == RATE_LIMITED:
            self.in_flight.rate_limited(generation)
            log.info("in_flight_limit_lowered", in_flight_limit=self.in_flight.limit)
        else:
            self.in_flight.answered(generation)
        return [self._outcome(claim, result) for claim, result in zip(claims, results, strict=True)]

    async def _send_singles(self, claims: Sequence[LeasedClaim]) -> list[Outcome]:
        semaphore = asyncio.Semaphore(self._settings.single_concurrency)

        async def send(claim: LeasedClaim) -> Outcome:
            async with semaphore:
                if self._stop is not None and self._stop.is_set():
                    # Draining: not sent, handed back for the next lease at once.
                    return Outcome(claim, None)
                if not self.breaker.allow_request():
                    return self._deferred(claim)
                self.requests_sent += 1
                with GRANT_REQUEST_DURATION.labels("single").time():
                    result = await self._client.submit(claim.data)
                self._record_breaker(result)
                return self._outcome(claim, result)

        return list(await asyncio.gather(*(send(claim) for claim in claims)))

    def _record_breaker(self, result: ClaimResult | None) -> None:
        if isinstance(result, Transient):
            # The breaker stays open at least as long as the grant API asked (Retry-After).
            self.breaker.record_failure(result.retry_after_s)
        else:
            self.breaker.record_success()

    def _deferred(self, claim: LeasedClaim) -> Outcome:
        # Not sent: back in the queue for when the breaker lets requests through again.
        return Outcome(claim, None, retry_in_s=self.breaker.retry_in_s())

    def _outcome(self, claim: LeasedClaim, result: ClaimResult) -> Outcome:
        data = claim.data
        if isinstance(result, Transient):
            delay_s = retry_delay_s(
                claim.attempts + 1,
                base_s=self._settings.backoff_base_s,
                cap_s=self._settings.backoff_cap_s,
                retry_after_s=result.retry_after_s,
                rng=self._rng,
            )
            if result.reason.startswith("HTTP_4"):
                # 400, 404: the contract, not load; someone must look.
                log.error(
                    "claim_answer_unexpected", reason=result.reason, claim_id=str(data.claim_id)
                )
            return Outcome(claim, result, retry_in_s=delay_s)
        if isinstance(result, Refused):
            if result.code == IDEMPOTENCY_KEY_REUSED:
                # Same key, different body: the bridge built two bodies for one claim. A bug.
                log.error(
                    "claim_idempotency_key_reused",
                    claim_id=str(data.claim_id),
                    upload_id=str(data.upload_id),
                    row_number=data.row_number,
                )
            else:
                log.info(
                    "claim_refused",
                    code=result.code,
                    claim_id=str(data.claim_id),
                    upload_id=str(data.upload_id),
                    row_number=data.row_number,
                )
        return Outcome(claim, result)
