"""Grant claims: the claim body, idempotent replays and conflicts, stored in PostgreSQL.

Every decision that depends on what was stored before (replay, reused key, already claimed) is
made inside one PostgreSQL transaction per claim: a transaction-level advisory lock serialises
requests that share an Idempotency-Key, and unique indexes with `INSERT ... ON CONFLICT DO
NOTHING` serialise claims of the same achievement under different keys. Several stand-in
processes may therefore share one database.

The request body holds the learner's personal data; it is stored (this is the grant system) but
never logged, and no message built here echoes a value from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

import asyncpg
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from services.core.logging import get_logger
from services.grant_standin.catalogue import Catalogue, Course

MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_BATCH_CLAIMS = 500
# A transaction aborted by deadlock detection stored nothing; run it again up to this often.
_DEADLOCK_ATTEMPTS = 5
_DEADLOCK_BACKOFF_S = 0.2
# Validation errors beyond this many are summarised as a count, to keep messages short.
_MAX_REPORTED_ERRORS = 5

log = get_logger()


class ErrorCode(StrEnum):
    """The `code` of every error body the stand-in answers."""

    # The body does not match the claim schema, or the batch is malformed or too large.
    INVALID_CLAIM = "INVALID_CLAIM"
    # The course code is not in the grant system's course catalogue.
    UNKNOWN_COURSE = "UNKNOWN_COURSE"
    # The levy number is not in the levy register, or its employer is not grant-eligible.
    LEVY_NOT_ELIGIBLE = "LEVY_NOT_ELIGIBLE"
    # A claim for the same learner identifier, course and date was accepted under another key.
    ALREADY_CLAIMED = "ALREADY_CLAIMED"
    # The Idempotency-Key came before with a different body.
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    # The Idempotency-Key header is missing, empty or longer than 255 characters.
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    # No stored claim has that id.
    NOT_FOUND = "NOT_FOUND"
    # A request the API does not define (missing query parameter, unknown route or method).
    INVALID_REQUEST = "INVALID_REQUEST"
    # The bearer token is missing or wrong.
    UNAUTHORIZED = "UNAUTHORIZED"
    # Injected 503 (before or after storing, or the stand-in is down).
    UNAVAILABLE = "UNAVAILABLE"
    # Injected 429; the Retry-After header says when to come back.
    RATE_LIMITED = "RATE_LIMITED"
    # PUT /admin/faults named an unknown field or a value out of range.
    INVALID_FAULTS = "INVALID_FAULTS"
    # An unexpected failure (the database unreachable, say); transient for the client.
    INTERNAL_ERROR = "INTERNAL_ERROR"


# --- The claim body -----------------------------------------------------------------------------

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: object) -> date:
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be an ISO date string (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date") from None


def normalise_identifier(value: str) -> str:
    """How learner identifiers are compared: white space removed, upper-cased."""
    return "".join(value.split()).upper()


def _not_blank_identifier(value: str) -> str:
    if not normalise_identifier(value):
        raise ValueError("must not be blank")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=20), AfterValidator(_not_blank_identifier)
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=100)]
# The claim id is also a URL path segment and, in batches, the Idempotency-Key.
ClaimId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH, pattern=r"^[^\s/?#]+$"),
]


class Learner(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    forename: ShortText
    surname: ShortText
    date_of_birth: IsoDate
    uln: Identifier | None = None
    ni_number: Identifier | None = None
    citb_individual_id: Identifier | None = None

    @model_validator(mode="after")
    def _one_identifier_at_least(self) -> Learner:
        if self.uln is None and self.ni_number is None and self.citb_individual_id is None:
            raise ValueError("at least one of uln, ni_number, citb_individual_id is required")
        return self


class ClaimRequest(BaseModel):
    """The body of POST /v1/claims (and each entry of a batch)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    claim_id: ClaimId
    ato_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    levy_registration_number: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    course_code: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    achievement_date: IsoDate
    provider_reference: Annotated[str, StringConstraints(max_length=50)] | None = None
    learner: Learner
    notes: Annotated[str, StringConstraints(max_length=255)] | None = None
    upload_id: ShortText
    row_number: Annotated[int, Field(ge=1)]


class InvalidClaim(ValueError):
    """The body is not a valid claim; the message names fields, never values."""


def _describe(error: ValidationError) -> str:
    """`field.path: what is wrong` for the first errors; pydantic's `msg` never holds input."""
    errors = error.errors(include_input=False, include_url=False)
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in errors[:_MAX_REPORTED_ERRORS]
    ]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def parse_claim(body: object) -> ClaimRequest:
    if not isinstance(body, dict):
        raise InvalidClaim("body: must be a JSON object")
    try:
        return ClaimRequest.model_validate(body)
    except ValidationError as error:
        raise InvalidClaim(_describe(error)) from None


def parse_json(raw: bytes) -> object:
    """The request body as JSON, refusing NaN and Infinity (they have no canonical form)."""

    def _refuse_constant(_: str) -> object:
        raise ValueError("not JSON")

    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError):
        raise InvalidClaim("body: not valid JSON") from None


def parse_batch(body: object) -> list[object]:
    """The `claims` list of a batch body; each entry is validated on its own later."""
    if not isinstance(body, dict) or set(body) != {"claims"}:
        raise InvalidClaim("body: must be a JSON object with only a `claims` list")
    claims = body["claims"]
    if not isinstance(claims, list):
        raise InvalidClaim("claims: must be a list")
    if len(claims) > MAX_BATCH_CLAIMS:
        raise InvalidClaim(f"claims: at most {MAX_BATCH_CLAIMS} claims in one batch")
    return claims


def check_idempotency_key(key: str | None) -> str:
    if key is None or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise InvalidClaim(
            f"Idempotency-Key: required, 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters"
        )
    return key


def canonical_sha256(body: object) -> bytes:
    """Same JSON value, same digest: key order and white space do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def _lock_id(idempotency_key: str) -> int:
    """A signed 64-bit advisory lock id; a collision only serialises two unrelated keys."""
    digest = hashlib.sha256(b"grant-standin:idempotency:" + idempotency_key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# --- Outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the API answers for one claim: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.body.get("code", self.body.get("status", "")))


def error(status: int, code: ErrorCode, message: str | None = None) -> Outcome:
    body: dict[str, Any] = {"code": code.value}
    if message is not None:
        body["message"] = message
    return Outcome(status, body)


@dataclass(frozen=True, slots=True)
class _Decision:
    """An outcome and the log line to write once its transaction has committed."""

    outcome: Outcome
    event: str
    log_fields: dict[str, Any]


def _timestamp(value: datetime) -> str:
    return value.isoformat()


# --- Storage ------------------------------------------------------------------------------------

# unnest yields the (sorted) array in order, so every transaction takes its keys in one global
# order and two batches sharing keys wait for each other instead of deadlocking.
_LOCK_KEYS = "SELECT pg_advisory_xact_lock(lock_id) FROM unnest($1::bigint[]) AS lock_id"

_FIND_RECORD = """
SELECT request_sha256, response_status, response_body
FROM idempotency_records WHERE idempotency_key = $1
"""

_INSERT_CLAIM = """
INSERT INTO claims (
    claim_id, idempotency_key, ato_id, upload_id, row_number, course_code, achievement_date,
    levy_registration_number, uln, ni_number, citb_individual_id, grant_amount_pence, request
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
RETURNING received_at
"""

_FIND_SAME_ACHIEVEMENT = """
SELECT claim_id FROM claims
WHERE course_code = $1 AND achievement_date = $2
  AND (uln = $3 OR ni_number = $4 OR citb_individual_id = $5)
ORDER BY received_at, claim_id
LIMIT 1
"""

_INSERT_RECORD = """
INSERT INTO idempotency_records
    (idempotency_key, request_sha256, response_status, response_body, claim_id)
VALUES ($1, $2, $3, $4, $5)
"""

# The batch path's statements: one per step for the whole batch instead of one per claim.
_FIND_RECORDS = """
SELECT idempotency_key, request_sha256, response_status, response_body
FROM idempotency_records WHERE idempotency_key = ANY($1::text[])
"""

_INSERT_CLAIMS = """
INSERT INTO claims (
    claim_id, idempotency_key, ato_id, upload_id, row_number, course_code, achievement_date,
    levy_registration_number, uln, ni_number, citb_individual_id, grant_amount_pence, request
)
SELECT c.claim_id, c.idempotency_key, c.ato_id, c.upload_id, c.row_number, c.course_code,
       c.achievement_date, c.levy_registration_number, c.uln, c.ni_number, c.citb_individual_id,
       c.grant_amount_pence, c.request::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::date[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[])
    AS c (claim_id, idempotency_key, ato_id, upload_id, row_number, course_code,
          achievement_date, levy_registration_number, uln, ni_number, citb_individual_id,
          grant_amount_pence, request)
ON CONFLICT DO NOTHING
RETURNING claim_id, received_at
"""

_INSERT_RECORDS = """
INSERT INTO idempotency_records
    (idempotency_key, request_sha256, response_status, response_body, claim_id)
SELECT r.idempotency_key, r.request_sha256, r.response_status, r.response_body::jsonb, r.claim_id
FROM unnest($1::text[], $2::bytea[], $3::smallint[], $4::text[], $5::text[])
    AS r (idempotency_key, request_sha256, response_status, response_body, claim_id)
"""

_CLAIM_COLUMNS = "request, status, grant_amount_pence, received_at, idempotency_key"
_GET_CLAIM = f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE claim_id = $1"
_CLAIMS_OF_UPLOAD = (
    f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE upload_id = $1 ORDER BY row_number, claim_id"
)


def stored_claim(record: asyncpg.Record) -> dict[str, Any]:
    """A stored claim as GET answers it: the request body plus what the grant system added."""
    claim: dict[str, Any] = dict(record["request"])
    claim.update(
        status=record["status"],
        grant_amount_pence=record["grant_amount_pence"],
        received_at=_timestamp(record["received_at"]),
        idempotency_key=record["idempotency_key"],
    )
    return claim


class ClaimStore:
    """Claims in the stand-in's PostgreSQL database."""

    def __init__(self, pool: asyncpg.Pool, catalogue: Catalogue, acquire_timeout_s: float) -> None:
        self._pool = pool
        self._catalogue = catalogue
        self._acquire_timeout_s = acquire_timeout_s

    async def submit(self, idempotency_key: str, body: object) -> Outcome:
        """POST /v1/claims once the key is known to be well formed."""
        try:
            claim = parse_claim(body)
        except InvalidClaim as invalid:
            # Not stored: a body that fails validation gets the same answer every time.
            return error(422, ErrorCode.INVALID_CLAIM, str(invalid))
        async with self._pool.acquire(timeout=self._acquire_timeout_s) as connection:
            [outcome] = await self._in_transaction(connection, [(idempotency_key, claim, body)])
        return outcome

    async def submit_batch(self, bodies: list[object]) -> list[dict[str, Any]]:
        """Each claim in order, as if sent alone with Idempotency-Key equal to its claim_id.

        The whole batch is one transaction: one commit (one WAL flush) instead of one per claim,
        and a failure stores none of it, which the contract allows ("none or some").
        """
        parsed: list[ClaimRequest | Outcome] = []
        for body in bodies:
            try:
                parsed.append(parse_claim(body))
            except InvalidClaim as invalid:
                parsed.append(error(422, ErrorCode.INVALID_CLAIM, str(invalid)))
        work = [
            (item.claim_id, item, body)
            for item, body in zip(parsed, bodies, strict=True)
            if isinstance(item, ClaimRequest)
        ]
        stored: Iterator[Outcome] = iter(())
        if work:
            async with self._pool.acquire(timeout=self._acquire_timeout_s) as connection:
                stored = iter(await self._in_transaction(connection, work))
        results: list[dict[str, Any]] = []
        for item, body in zip(parsed, bodies, strict=True):
            outcome = next(stored) if isinstance(item, ClaimRequest) else item
            raw_id = body.get("claim_id") if isinstance(body, dict) else None
            results.append(
                {
                    "claim_id": raw_id if isinstance(raw_id, str) else None,
                    "status": outcome.status,
                    "body": outcome.body,
                }
            )
        return results

    async def get(self, claim_id: str) -> dict[str, Any] | None:
        async with self._pool.acquire(timeout=self._acquire_timeout_s) as connection:
            record = await connection.fetchrow(_GET_CLAIM, claim_id)
        return None if record is None else stored_claim(record)

    async def claims_of_upload(
        self, upload_id: str, chunk_size: int = 1000
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every stored claim of an upload in row order, a chunk at a time (uploads are large)."""
        async with (
            self._pool.acquire(timeout=self._acquire_timeout_s) as connection,
            connection.transaction(readonly=True),
        ):
            chunk: list[dict[str, Any]] = []
            async for record in connection.cursor(
                _CLAIMS_OF_UPLOAD, upload_id, prefetch=chunk_size
            ):
                chunk.append(stored_claim(record))
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    async def _in_transaction(
        self, connection: asyncpg.Connection, work: list[tuple[str, ClaimRequest, object]]
    ) -> list[Outcome]:
        """Submits (key, claim, body) items in order in one transaction; logs after the commit.

        Keys are locked up front in a global order. Two batches that claim the same
        achievements under different keys in opposite orders can still deadlock on the unique
        indexes; PostgreSQL aborts one, and since it stored nothing it simply runs again.
        """
        # Held until the transaction ends: a concurrent request with one of these keys waits,
        # then finds the record this transaction stored.
        lock_ids = sorted({_lock_id(key) for key, _, _ in work})
        independent = self._independent(work)
        for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
            try:
                async with connection.transaction():
                    await connection.execute(_LOCK_KEYS, lock_ids)
                    if independent:
                        decisions = await self._submit_together(connection, work)
                    else:
                        decisions = [await self._submit(connection, *item) for item in work]
            except asyncpg.DeadlockDetectedError:
                if attempt == _DEADLOCK_ATTEMPTS:
                    raise
                log.warning("claims_deadlock_retried", attempt=attempt, claims=len(work))
                # Jitter, so the two transactions do not collide again in step.
                await asyncio.sleep(random.uniform(0, _DEADLOCK_BACKOFF_S * attempt))
                continue
            for decision in decisions:
                log.info(decision.event, **decision.log_fields)
            return [decision.outcome for decision in decisions]
        raise AssertionError("unreachable")

    def _independent(self, work: list[tuple[str, ClaimRequest, object]]) -> bool:
        """True when no claim of `work` can change the answer to another: distinct keys, and
        no two claims for the same course, date and learner identifier. Such a batch is
        answered by `_submit_together`, a statement per step for all of it; any other goes
        claim by claim, each seeing what the earlier ones stored."""
        if len(work) < 2:
            return False
        keys: set[str] = set()
        achievements: set[tuple[str, date, int, str]] = set()
        for key, claim, _ in work:
            if key in keys:
                return False
            keys.add(key)
            course_code = claim.course_code.strip().upper()
            learner = claim.learner
            for kind, value in enumerate(
                (learner.uln, learner.ni_number, learner.citb_individual_id)
            ):
                if value is None:
                    continue
                achievement = (
                    course_code,
                    claim.achievement_date,
                    kind,
                    normalise_identifier(value),
                )
                if achievement in achievements:
                    return False
                achievements.add(achievement)
        return True

    async def _submit_together(
        self, connection: asyncpg.Connection, work: list[tuple[str, ClaimRequest, object]]
    ) -> list[_Decision]:
        """`_submit` for claims that cannot affect each other (`_independent`), inside the
        caller's transaction with every key locked: the same answers, in a handful of
        statements for the whole batch instead of three per claim."""
        records = {
            record["idempotency_key"]: record
            for record in await connection.fetch(_FIND_RECORDS, [key for key, _, _ in work])
        }
        decisions: list[_Decision | None] = []
        new: list[tuple[int, str, ClaimRequest, object, bytes]] = []
        for index, (key, claim, body) in enumerate(work):
            request_sha256 = canonical_sha256(body)
            record = records.get(key)
            if record is not None:
                decisions.append(_replay(record, request_sha256, _context(claim)))
            else:
                decisions.append(None)
                new.append((index, key, claim, body, request_sha256))
        answers = await self._decide_together(connection, [(k, c, b) for _, k, c, b, _ in new])
        for (index, _, claim, _, _), (outcome, _) in zip(new, answers, strict=True):
            decisions[index] = _first_answer(outcome, _context(claim))
        if new:
            await connection.execute(
                _INSERT_RECORDS,
                [key for _, key, _, _, _ in new],
                [request_sha256 for _, _, _, _, request_sha256 in new],
                [outcome.status for outcome, _ in answers],
                [json.dumps(outcome.body) for outcome, _ in answers],
                [claim_id for _, claim_id in answers],
            )
        return [decision for decision in decisions if decision is not None]

    async def _decide_together(
        self, connection: asyncpg.Connection, work: list[tuple[str, ClaimRequest, object]]
    ) -> list[tuple[Outcome, str | None]]:
        """`_decide` for independent claims: one INSERT for every claim the catalogue allows,
        then the look-up of an earlier claim only for those the insert met."""
        answers: list[tuple[Outcome, str | None] | None] = []
        rows: list[tuple[Any, ...]] = []
        for key, claim, body in work:
            refusal, course = self._catalogue_refusal(claim)
            if refusal is not None or course is None:
                answers.append((refusal or error(422, ErrorCode.UNKNOWN_COURSE), None))
                continue
            answers.append(None)
            rows.append(
                (
                    claim.claim_id,
                    key,
                    claim.ato_id,
                    claim.upload_id,
                    claim.row_number,
                    course.code,
                    claim.achievement_date,
                    claim.levy_registration_number.strip().upper(),
                    *_identifiers(claim),
                    course.grant_pence,
                    json.dumps(body),  # stored exactly as received
                )
            )
        inserted: dict[str, datetime] = {}
        if rows:
            columns = [list(column) for column in zip(*rows, strict=True)]
            inserted = {
                row["claim_id"]: row["received_at"]
                for row in await connection.fetch(_INSERT_CLAIMS, *columns)
            }
        pending = iter(rows)
        result: list[tuple[Outcome, str | None]] = []
        for (_, claim, _), answer in zip(work, answers, strict=True):
            if answer is not None:
                result.append(answer)
                continue
            row = next(pending)
            received_at = inserted.get(claim.claim_id)
            if received_at is not None:
                result.append(_accepted(claim, row[11], received_at))
            else:
                result.append(await self._already_stored(connection, claim, row[5]))
        return result

    def _catalogue_refusal(self, claim: ClaimRequest) -> tuple[Outcome | None, Course | None]:
        """A 422 when the course or the employer does not qualify, else the course."""
        course = self._catalogue.course(claim.course_code)
        if course is None:
            return error(422, ErrorCode.UNKNOWN_COURSE, "course_code: not in the catalogue"), None
        employer = self._catalogue.employer(claim.levy_registration_number)
        if employer is None or not employer.grant_eligible:
            message = "levy_registration_number: not in the levy register or not grant-eligible"
            return error(422, ErrorCode.LEVY_NOT_ELIGIBLE, message), None
        return None, course

    async def _already_stored(
        self, connection: asyncpg.Connection, claim: ClaimRequest, course_code: str
    ) -> tuple[Outcome, str | None]:
        """The answer to a claim whose insert met a committed claim: the same achievement
        (409 ALREADY_CLAIMED), or the same claim id under another key (422)."""
        existing = await connection.fetchval(
            _FIND_SAME_ACHIEVEMENT, course_code, claim.achievement_date, *_identifiers(claim)
        )
        if existing is not None:
            body = {"code": ErrorCode.ALREADY_CLAIMED.value, "existing_claim_id": existing}
            return Outcome(409, body), None
        message = "claim_id: already used by a claim sent under another Idempotency-Key"
        return error(422, ErrorCode.INVALID_CLAIM, message), None

    async def _submit(
        self,
        connection: asyncpg.Connection,
        idempotency_key: str,
        claim: ClaimRequest,
        body: object,
    ) -> _Decision:
        """One claim inside the caller's transaction, its key locked: replay, reused key, or a
        first answer."""
        request_sha256 = canonical_sha256(body)
        context = _context(claim)
        record = await connection.fetchrow(_FIND_RECORD, idempotency_key)
        if record is not None:
            return _replay(record, request_sha256, context)
        outcome, stored_claim_id = await self._decide(connection, idempotency_key, claim, body)
        await connection.execute(
            _INSERT_RECORD,
            idempotency_key,
            request_sha256,
            outcome.status,
            outcome.body,
            stored_claim_id,
        )
        return _first_answer(outcome, context)

    async def _decide(
        self,
        connection: asyncpg.Connection,
        idempotency_key: str,
        claim: ClaimRequest,
        body: object,
    ) -> tuple[Outcome, str | None]:
        """The first answer for a new key: refused (no claim stored) or accepted (stored)."""
        refusal, course = self._catalogue_refusal(claim)
        if refusal is not None or course is None:
            return refusal or error(422, ErrorCode.UNKNOWN_COURSE), None
        received_at = await connection.fetchval(
            _INSERT_CLAIM,
            claim.claim_id,
            idempotency_key,
            claim.ato_id,
            claim.upload_id,
            claim.row_number,
            course.code,
            claim.achievement_date,
            claim.levy_registration_number.strip().upper(),
            *_identifiers(claim),
            course.grant_pence,
            body,  # stored exactly as received
        )
        if received_at is not None:
            return _accepted(claim, course.grant_pence, received_at)
        # The insert met a committed claim: the same achievement, or the same claim id.
        return await self._already_stored(connection, claim, course.code)


def _context(claim: ClaimRequest) -> dict[str, Any]:
    """What a log line may say about a claim: ids and its row, never its personal data."""
    return {
        "claim_id": claim.claim_id,
        "upload_id": claim.upload_id,
        "row_number": claim.row_number,
    }


def _identifiers(claim: ClaimRequest) -> list[str | None]:
    """The learner's identifiers as stored and compared (uln, NI number, CITB id)."""
    learner = claim.learner
    return [
        None if value is None else normalise_identifier(value)
        for value in (learner.uln, learner.ni_number, learner.citb_individual_id)
    ]


def _replay(record: asyncpg.Record, request_sha256: bytes, context: dict[str, Any]) -> _Decision:
    """The answer to a key that came before: the stored first answer, or 409 for a body that
    differs from the first."""
    if bytes(record["request_sha256"]) != request_sha256:
        message = "Idempotency-Key: already used with a different body"
        reused = error(409, ErrorCode.IDEMPOTENCY_KEY_REUSED, message)
        return _Decision(reused, "idempotency_key_reused", context)
    stored_status: int = record["response_status"]
    # An accepted claim replays as 200; a refusal replays as the refusal it was.
    replay = Outcome(200 if stored_status == 201 else stored_status, record["response_body"])
    return _Decision(replay, "claim_replayed", {**context, "first_status": stored_status})


def _first_answer(outcome: Outcome, context: dict[str, Any]) -> _Decision:
    if outcome.status == 201:
        return _Decision(outcome, "claim_accepted", context)
    refused = {**context, "status": outcome.status, "code": outcome.code}
    return _Decision(outcome, "claim_refused", refused)


def _accepted(claim: ClaimRequest, grant_pence: int, received_at: datetime) -> tuple[Outcome, str]:
    body = {
        "claim_id": claim.claim_id,
        "status": "accepted",
        "grant_amount_pence": grant_pence,
        "received_at": _timestamp(received_at),
    }
    return Outcome(201, body), claim.claim_id
