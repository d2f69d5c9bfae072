"""The due-claims loop: lease released claims, send them, record the answers.

One round = one lease (a batch of up to `batch_size`, or a few waves of single claims),
the HTTP requests outside any transaction, then one transaction with every outcome. While the
breaker is open nothing is leased and the loop sleeps until the cool-down ends.

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
from services.grant_bridge.claims import LeasedClaim, Outcome, lease_due, record_outcomes
from services.grant_bridge.grant_client import (
    IDEMPOTENCY_KEY_REUSED,
    BatchRejected,
    ClaimResult,
    GrantClient,
    Refused,
    Transient,
)
from services.grant_bridge.settings import GrantBridgeSettings

log = get_logger()


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
        self.requests_sent = 0
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop`; a round in progress finishes (its answers are recorded)."""
        self._stop = stop
        while not stop.is_set():
            try:
                handled = await self.forward_once()
            except TRANSIENT_ERRORS as error:
                # Leases run out by themselves, so claims of a failed round are not stuck.
                log.warning("forward_round_failed", error=type(error).__name__)
                handled = 0
            if handled == 0:
                idle_s = max(self._settings.poll_interval_s, self.breaker.retry_in_s())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=idle_s)

    async def forward_once(self) -> int:
        """One round; returns the claims leased (0 when nothing was due or the breaker is open)."""
        state = self.breaker.state
        if state is BreakerState.OPEN:
            return 0
        # A half-open breaker lets one probe through: lease a single claim for it.
        probing = state is BreakerState.HALF_OPEN
        settings = self._settings
        batching = settings.batching and not probing
        limit = 1 if probing else settings.batch_size if batching else self._single_lease_size()
        postgres = settings.common.postgres
        # A connection per transaction: none is held while the requests are out.
        async with connection(self._pool, postgres) as held:
            lease = await lease_due(
                held,
                limit=limit,
                lease_s=settings.lease_s,
                release_grace_s=settings.release_grace_s,
            )
        if lease.closed:
            log.info("withdrawn_claims_closed", count=lease.closed)
        if not lease.claims:
            return lease.closed
        if batching and len(lease.claims) > 1:
            outcomes = await self._send_batch(lease.claims)
        else:
            outcomes = await self._send_singles(lease.claims)
        async with connection(self._pool, postgres) as held:
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
        )
        return len(lease.claims) + lease.closed

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
        try:
            with GRANT_REQUEST_DURATION.labels("batch").time():
                results = await self._client.submit_batch([claim.data for claim in claims])
        except BatchRejected as error:
            # Its claims are still valid one by one, each under its own key.
            self.breaker.record_success()
            log.error("claim_batch_rejected", status=error.status, code=error.code)
            return await self._send_singles(claims)
        self._record_breaker(results[0] if all(isinstance(r, Transient) for r in results) else None)
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
