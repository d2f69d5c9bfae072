"""The grant API client (shared/spec/grant-api.md): claim bodies, idempotency keys, and the
translation of every answer into a small result type. Everything but `GrantClient` is pure."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp

from services.core.misconfiguration import (
    GRANT_API_URL,
    GRANT_TOKEN,
    ConfigurationError,
    tls_refusal,
)
from services.grant_bridge.backoff import parse_retry_after

# Fixed for ever: changing it would give every achievement a new claim id (and a second claim).
CLAIM_NAMESPACE = uuid.UUID("6f1d3c2a-8e4b-5b7a-9c0d-2e4f6a8b0c1d")
BATCH_NAMESPACE = uuid.UUID("0b9e7d5c-3a1f-5e2d-8c4b-6a9f1e3d5c7b")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
# The reason of a `Transient` answer to a 429.
RATE_LIMITED = "RATE_LIMITED"
ALREADY_CLAIMED = "ALREADY_CLAIMED"
# A 409 ALREADY_CLAIMED naming our own claim id without its amount: an earlier send of this very
# claim was stored. `GrantClient` reads the amount with GET /v1/claims/{id}; until it has it the
# claim is retried (never refused: it is ours and accepted).
OWN_CLAIM_UNCONFIRMED = "OWN_CLAIM_UNCONFIRMED"


def claim_id_for(achievement_id: uuid.UUID) -> uuid.UUID:
    """The claim id, and so the Idempotency-Key, of an achievement: the same on every retry."""
    return uuid.uuid5(CLAIM_NAMESPACE, str(achievement_id))


def batch_key_for(claim_ids: Sequence[uuid.UUID]) -> str:
    """A batch's Idempotency-Key from its sorted claim ids: a retried identical batch replays."""
    joined = ",".join(sorted(str(claim_id) for claim_id in claim_ids))
    return str(uuid.uuid5(BATCH_NAMESPACE, joined))


@dataclass(frozen=True, slots=True)
class Accepted:
    """201: the claim was stored now."""

    grant_amount_pence: int


@dataclass(frozen=True, slots=True)
class Replayed:
    """200: the stored first answer to this key; the claim was stored earlier."""

    grant_amount_pence: int


@dataclass(frozen=True, slots=True)
class Refused:
    """A permanent answer (409, 422): recorded, never retried."""

    code: str


@dataclass(frozen=True, slots=True)
class Transient:
    """Try again later with the same key; the claim may or may not have been stored."""

    reason: str
    retry_after_s: float | None = None


ClaimResult = Accepted | Replayed | Refused | Transient


class BatchRejected(Exception):
    """The grant API refused a whole batch request (not 207, not transient)."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"claim batch rejected with HTTP {status} {code or ''}".strip())
        self.status = status
        self.code = code


def _amount(body: Any) -> int | None:
    if isinstance(body, Mapping):
        amount = body.get("grant_amount_pence")
        if isinstance(amount, int) and not isinstance(amount, bool):
            return amount
    return None


def _code(body: Any) -> str | None:
    if isinstance(body, Mapping):
        code = body.get("code")
        if isinstance(code, str) and code:
            return code
    return None


def _names_own_claim(body: Any, claim_id: uuid.UUID | None) -> bool:
    """A 409 ALREADY_CLAIMED whose `existing_claim_id` is the claim id we sent."""
    if claim_id is None or not isinstance(body, Mapping) or _code(body) != ALREADY_CLAIMED:
        return False
    existing = body.get("existing_claim_id")
    if not isinstance(existing, str):
        return False
    try:
        return uuid.UUID(existing) == claim_id
    except ValueError:
        return False


def classify(
    status: int, body: Any, retry_after: str | None = None, *, claim_id: uuid.UUID | None = None
) -> ClaimResult:
    """One claim's answer, from a single request or an entry of a 207 batch answer.

    `claim_id` is the claim that was sent: a 409 ALREADY_CLAIMED naming it means an earlier send
    of this claim was stored (a lost answer), so it is accepted, not refused.
    """
    if status == 201:
        amount = _amount(body)
        # A 201 we cannot read is still stored: the retry with the same key replays it.
        return Accepted(amount) if amount is not None else Transient("BAD_RESPONSE")
    if status == 200:
        amount = _amount(body)
        if amount is not None:
            return Replayed(amount)
        code = _code(body)
        return Refused(code) if code is not None else Transient("BAD_RESPONSE")
    if status == 409:
        if _names_own_claim(body, claim_id):
            amount = _amount(body)
            return Replayed(amount) if amount is not None else Transient(OWN_CLAIM_UNCONFIRMED)
        return Refused(_code(body) or "CONFLICT")
    if status == 422:
        return Refused(_code(body) or "INVALID_CLAIM")
    if status == 429:
        return Transient(RATE_LIMITED, parse_retry_after(retry_after))
    if status in TRANSIENT_STATUSES:
        return Transient(f"HTTP_{status}", parse_retry_after(retry_after))
    # 400, 404...: a contract problem. Waiting keeps every claim; the breaker stops the
    # hammering and the logs say what is wrong. (`GrantClient` never gets here with a 401 or
    # 403: a refused token stops the bridge, naming GRANT_BRIDGE_TOKEN.)
    return Transient(f"HTTP_{status}")


@dataclass(frozen=True, slots=True)
class ClaimData:
    """What a claim is built from: one `achievements` row, read at send time."""

    claim_id: uuid.UUID
    achievement_id: uuid.UUID
    upload_id: uuid.UUID
    row_number: int
    ato_id: str
    levy_number: str | None
    course_code: str
    achievement_date: date
    provider_reference: str | None
    forename: str
    surname: str
    date_of_birth: date
    uln: str | None
    ni_number: str | None
    citb_individual_id: str | None
    notes: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ClaimData:
        return cls(
            claim_id=row["claim_id"],
            achievement_id=row["achievement_id"],
            upload_id=row["upload_id"],
            row_number=row["row_number"],
            ato_id=row["ato_id"],
            levy_number=row["levy_number"],
            course_code=row["course_code"],
            achievement_date=row["achievement_date"],
            provider_reference=row["provider_reference"],
            forename=row["forename"],
            surname=row["surname"],
            date_of_birth=row["date_of_birth"],
            uln=row["uln"],
            ni_number=row["ni_number"],
            citb_individual_id=row["citb_individual_id"],
            notes=row["notes"],
        )

    def __repr__(self) -> str:
        # Keeps the learner's personal data out of logs and tracebacks.
        return f"ClaimData(claim_id={self.claim_id}, upload_id={self.upload_id})"

    def body(self) -> dict[str, Any]:
        """The claim object of grant-api.md."""
        return {
            "claim_id": str(self.claim_id),
            "ato_id": self.ato_id,
            "levy_registration_number": self.levy_number,
            "course_code": self.course_code,
            "achievement_date": self.achievement_date.isoformat(),
            "provider_reference": self.provider_reference,
            "learner": {
                "forename": self.forename,
                "surname": self.surname,
                "date_of_birth": self.date_of_birth.isoformat(),
                "uln": self.uln,
                "ni_number": self.ni_number,
                "citb_individual_id": self.citb_individual_id,
            },
            "notes": self.notes,
            "upload_id": str(self.upload_id),
            "row_number": self.row_number,
        }


def batch_results(claim_ids: Sequence[uuid.UUID], body: Any) -> list[ClaimResult]:
    """Results of a 207 answer in claim order; a result missing for a claim means retry it."""
    by_id: dict[str, Mapping[str, Any]] = {}
    entries = body.get("results") if isinstance(body, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("status"), int):
            by_id[str(entry.get("claim_id"))] = entry
    results: list[ClaimResult] = []
    for claim_id in claim_ids:
        found = by_id.get(str(claim_id))
        results.append(
            Transient("BAD_RESPONSE")
            if found is None
            else classify(found["status"], found.get("body"), claim_id=claim_id)
        )
    return results


def new_session(*, token: str, timeout_s: float, max_connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=max_connections),
        raise_for_status=False,
    )


def refused_for_good(error: aiohttp.ClientError) -> ConfigurationError | None:
    """A TLS refusal no retry can fix (the grant API's certificate does not verify against the
    CAs this process trusts, or its name is not the URL's host), as the setting to correct."""
    refusal = tls_refusal(error)
    if refusal is None:
        return None
    return ConfigurationError(
        GRANT_API_URL, f"{refusal}; its CA must be trusted (SSL_CERT_FILE) and match the host"
    )


def _transient_or_raise(error: aiohttp.ClientError) -> Transient:
    problem = refused_for_good(error)
    if problem is not None:
        raise problem from None
    return Transient("CONNECTION_ERROR")


# The grant API's answers to a token it does not take (401, grant-api.md "Authentication"), and
# to one it takes for nothing (403): every claim would get the same.
REFUSED_TOKEN_STATUSES = frozenset({401, 403})


def _check_token_taken(response: aiohttp.ClientResponse) -> None:
    if response.status in REFUSED_TOKEN_STATUSES:
        raise ConfigurationError(
            GRANT_TOKEN, f"the grant API refused the token (HTTP {response.status})"
        )


class GrantClient:
    """HTTP at the edge: network errors and timeouts become `Transient`, never exceptions; a
    refusal no retry can fix (a TLS certificate that does not verify, the token refused) is
    raised as `ConfigurationError` (the bridge stops: every claim would fail the same way)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")

    async def submit(self, claim: ClaimData) -> ClaimResult:
        try:
            async with self._session.post(
                f"{self._base_url}/v1/claims",
                json=claim.body(),
                headers={"Idempotency-Key": str(claim.claim_id)},
            ) as response:
                _check_token_taken(response)
                body = await _json_or_none(response)
                result = classify(
                    response.status,
                    body,
                    response.headers.get("Retry-After"),
                    claim_id=claim.claim_id,
                )
        except TimeoutError:
            return Transient("TIMEOUT")
        except aiohttp.ClientError as error:
            return _transient_or_raise(error)
        return await self._confirm_own(claim.claim_id, result)

    async def submit_batch(self, claims: Sequence[ClaimData]) -> list[ClaimResult]:
        """One result per claim, in order. Raises `BatchRejected` for a refused whole batch."""
        claim_ids = [claim.claim_id for claim in claims]
        try:
            async with self._session.post(
                f"{self._base_url}/v1/claim-batches",
                json={"claims": [claim.body() for claim in claims]},
                headers={"Idempotency-Key": batch_key_for(claim_ids)},
            ) as response:
                _check_token_taken(response)
                body = await _json_or_none(response)
                if response.status == 207:
                    results = batch_results(claim_ids, body)
                    return [
                        await self._confirm_own(claim_id, result)
                        for claim_id, result in zip(claim_ids, results, strict=True)
                    ]
                result = classify(response.status, body, response.headers.get("Retry-After"))
        except TimeoutError:
            result = Transient("TIMEOUT")
        except aiohttp.ClientError as error:
            result = _transient_or_raise(error)
        if not isinstance(result, Transient):
            raise BatchRejected(response.status, _code(body))
        return [result] * len(claims)

    async def _confirm_own(self, claim_id: uuid.UUID, result: ClaimResult) -> ClaimResult:
        """An own claim the grant system already holds, as `Replayed` with its stored amount;
        any other result as it is. A failed look-up leaves it `Transient`: retried later."""
        if not (isinstance(result, Transient) and result.reason == OWN_CLAIM_UNCONFIRMED):
            return result
        try:
            stored = await self.get_claim(claim_id)
        except aiohttp.ClientError as error:
            _transient_or_raise(error)
            return result
        except (TimeoutError, ValueError):
            return result
        amount = _amount(stored)
        return Replayed(amount) if amount is not None else result

    async def get_claim(self, claim_id: uuid.UUID) -> dict[str, Any] | None:
        """The stored claim, or None when the grant system has none under this id."""
        async with self._session.get(f"{self._base_url}/v1/claims/{claim_id}") as response:
            _check_token_taken(response)
            if response.status == 404:
                return None
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body


async def _json_or_none(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError, asyncio.IncompleteReadError):
        return None
