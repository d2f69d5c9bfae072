"""The upload domain: recording a received file, reading uploads back, withdrawing them.

Every query takes the caller's `ato_id`: another ATO's upload is indistinguishable from a
missing one. Refusals are `DomainError`s (domain_errors.py); the API and the pages word them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.core import grant_states
from services.core.events import ClaimWithdrawn, Topics, UploadReceived, UploadWithdrawn
from services.core.outbox import enqueue, enqueue_many
from services.core.people import Person
from services.core.states import ACCEPTING, UploadState
from services.core.storage import StoredFile
from services.upload_gateway.domain_errors import (
    AlreadyWithdrawn,
    AmendmentWindowClosed,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidIdempotencyKey,
    NotFound,
    UploadNotAccepted,
)

STATUSES = tuple(state.value for state in UploadState)
MAX_IDEMPOTENCY_KEY_CHARS = 255

_COLUMNS = (
    "upload_id, file_name, size_bytes, sha256, policy, status, encoding, rows_total, rows_valid,"
    " rows_invalid, rows_warned, rows_processed, counts_by_code, file_error_code,"
    " file_error_message, received_at, upload_date, terms_accepted_at, validation_started_at,"
    " validated_at, withdrawn_at, reference_version, uploaded_by_subject, uploaded_by_name,"
    " withdrawn_by_name"
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def status_message(
    status: str,
    rows_processed: int,
    file_error_message: str | None,
    reference: str | None = None,
) -> str:
    """The line the portal shows next to the upload (the portal flow's "the data is valid").

    `reference` is what an ATO quotes to support about an errored upload (its upload id)."""
    match status:
        case UploadState.PASSED:
            return "The data is valid"
        case UploadState.PASSED_WITH_WARNINGS:
            return "The data is valid, with warnings: see the problems found."
        case UploadState.PARTIALLY_ACCEPTED:
            return "Some rows have errors and were not accepted; the valid rows were accepted."
        case UploadState.FAILED:
            return "Some rows have errors, so nothing was accepted: correct them and upload again."
        case UploadState.REJECTED:
            return file_error_message or "The file was refused."
        case UploadState.ERRORED:
            quoted = f" quoting reference {reference}" if reference else ""
            return (
                "The file could not be validated because of a problem on our side, not in the"
                " file, so nothing was accepted. Please upload it again; if that fails too,"
                f" contact support{quoted}."
            )
        case UploadState.VALIDATING:
            return f"Validating: {rows_processed} rows checked so far."
        case _:
            return "The file was received and is waiting to be validated."


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: uuid.UUID
    file_name: str
    size_bytes: int
    sha256: str
    policy: str
    status: str
    encoding: str | None
    rows_total: int
    rows_valid: int
    rows_invalid: int
    rows_warned: int
    rows_processed: int
    counts_by_code: dict[str, int]
    file_error_code: str | None
    file_error_message: str | None
    received_at: datetime
    upload_date: date
    terms_accepted_at: datetime
    validation_started_at: datetime | None
    validated_at: datetime | None
    withdrawn_at: datetime | None
    # The course catalogue and levy register version every row was checked against.
    reference_version: int | None
    # The person who uploaded it and who withdrew it, signed in through the portal (an API
    # client, or the pages signed in with a key: None). Shown in the pages, not in the API.
    uploaded_by_subject: str | None = None
    uploaded_by_name: str | None = None
    withdrawn_by_name: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Upload:
        return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})

    @property
    def issues_total(self) -> int:
        return sum(self.counts_by_code.values())

    def to_json(self) -> dict[str, Any]:
        file_errors = (
            [{"code": self.file_error_code, "message": self.file_error_message or ""}]
            if self.file_error_code
            else []
        )
        return {
            "upload_id": str(self.upload_id),
            "file_name": self.file_name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "policy": self.policy,
            "status": self.status,
            "message": status_message(
                self.status, self.rows_processed, self.file_error_message, str(self.upload_id)
            ),
            "encoding": self.encoding,
            "rows_total": self.rows_total,
            "rows_valid": self.rows_valid,
            "rows_invalid": self.rows_invalid,
            "rows_warned": self.rows_warned,
            "rows_processed": self.rows_processed,
            "counts_by_code": dict(self.counts_by_code),
            "file_errors": file_errors,
            "upload_date": self.upload_date.isoformat(),
            "received_at": _iso(self.received_at),
            "terms_accepted_at": _iso(self.terms_accepted_at),
            "validation_started_at": _iso(self.validation_started_at),
            "validated_at": _iso(self.validated_at),
            "withdrawn_at": _iso(self.withdrawn_at),
            "reference_version": self.reference_version,
        }


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidIdempotencyKey(MAX_IDEMPOTENCY_KEY_CHARS)
    return value


async def record_upload(
    connection: asyncpg.Connection,
    topics: Topics,
    *,
    upload_id: uuid.UUID,
    ato_id: str,
    file_name: str,
    policy: str,
    stored: StoredFile,
    idempotency_key: str | None,
    terms_accepted_at: datetime,
    uploaded_by: Person | None = None,
) -> tuple[Upload, bool]:
    """(upload, created). A retry with the same key and bytes returns the first upload.

    The row and its `upload.received` event commit together. Concurrent retries race on the
    `(ato_id, idempotency_key)` constraint: the losers wait for the winner's commit, insert
    nothing, and read the winner.
    """
    async with connection.transaction():
        row = await connection.fetchrow(
            "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
            " storage_key, idempotency_key, terms_accepted_at, upload_date, uploaded_by_subject,"
            " uploaded_by_name)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
            " (now() AT TIME ZONE 'Europe/London')::date, $10, $11)"
            f" ON CONFLICT (ato_id, idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
            upload_id,
            ato_id,
            file_name,
            stored.size_bytes,
            stored.sha256,
            policy,
            stored.storage_key,
            idempotency_key,
            terms_accepted_at,
            uploaded_by.subject if uploaded_by is not None else None,
            uploaded_by.name if uploaded_by is not None else None,
        )
        if row is None:
            winner = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM uploads WHERE ato_id = $1 AND idempotency_key = $2",
                ato_id,
                idempotency_key,
            )
            if winner is None:
                # The conflicting row is committed and uploads are never deleted: a broken
                # invariant, not something the client can act on.
                raise RuntimeError("the upload holding this Idempotency-Key cannot be read")
            existing = Upload.from_row(winner)
            if existing.sha256 != stored.sha256:
                raise IdempotencyKeyReused()
            return existing, False
        upload = Upload.from_row(row)
        await enqueue(
            connection,
            topics,
            UploadReceived(
                upload_id=upload_id,
                ato_id=ato_id,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
                policy=policy,
                storage_key=stored.storage_key,
                upload_date=upload.upload_date,
            ),
        )
        return upload, True


async def get_upload(
    connection: asyncpg.Connection, ato_id: str, upload_id: uuid.UUID, *, for_update: bool = False
) -> Upload:
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM uploads WHERE upload_id = $1 AND ato_id = $2"
        + (" FOR UPDATE" if for_update else ""),
        upload_id,
        ato_id,
    )
    if row is None:
        raise NotFound("upload")
    return Upload.from_row(row)


# Keyset pagination: the cursor is the (received_at, upload_id) of the last row served.
def encode_cursor(upload: Upload) -> str:
    raw = json.dumps([upload.received_at.isoformat(), str(upload.upload_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        received_at, upload_id = json.loads(raw)
        parsed = datetime.fromisoformat(received_at), uuid.UUID(upload_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursor() from None
    if parsed[0].tzinfo is None:
        raise InvalidCursor()
    return parsed


async def list_uploads(
    connection: asyncpg.Connection,
    ato_id: str,
    *,
    limit: int,
    offset: int,
    cursor: str | None,
    status: str | None,
    uploaded_by_subject: str | None = None,
) -> tuple[list[Upload], str | None]:
    """Newest first; one row more than asked tells whether there is a next page. With
    `uploaded_by_subject`, only the uploads that person made."""
    conditions = ["ato_id = $1"]
    args: list[Any] = [ato_id]
    if status is not None:
        args.append(status)
        conditions.append(f"status = ${len(args)}")
    if uploaded_by_subject is not None:
        args.append(uploaded_by_subject)
        conditions.append(f"uploaded_by_subject = ${len(args)}")
    if cursor is not None:
        received_at, upload_id = decode_cursor(cursor)
        args.extend([received_at, upload_id])
        conditions.append(f"(received_at, upload_id) < (${len(args) - 1}, ${len(args)})")
        offset = 0
    args.extend([limit + 1, offset])
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM uploads WHERE {' AND '.join(conditions)}"
        f" ORDER BY received_at DESC, upload_id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    uploads = [Upload.from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(uploads[-1]) if len(rows) > limit else None
    return uploads, next_cursor


async def withdraw_upload(
    connection: asyncpg.Connection,
    topics: Topics,
    ato_id: str,
    upload_id: uuid.UUID,
    by: Person | None = None,
) -> Upload:
    """Withdraws every achievement of an upload, or none: all must still be withdrawable.

    The upload row is locked first, then its achievements (`grant_states`): the grant bridge's
    lease locks the same achievements with SKIP LOCKED, so it passes over them while this runs,
    and a lease that got there first is seen by the guarded update, which then refuses (its
    claims are on their way): either the withdrawal or the claim, never both.
    """
    async with connection.transaction():
        upload = await get_upload(connection, ato_id, upload_id, for_update=True)
        if upload.withdrawn_at is not None:
            raise AlreadyWithdrawn("upload")
        if upload.status not in ACCEPTING:
            raise UploadNotAccepted("upload", upload.status)
        withdrawal = await grant_states.withdraw_upload_achievements(connection, upload_id)
        if withdrawal.blocked:
            raise AmendmentWindowClosed()
        row = await connection.fetchrow(
            "UPDATE uploads SET withdrawn_at = now(), withdrawn_by_subject = $2,"
            f" withdrawn_by_name = $3 WHERE upload_id = $1 RETURNING {_COLUMNS}",
            upload_id,
            by.subject if by is not None else None,
            by.name if by is not None else None,
        )
        if row is None:  # locked above, in this transaction: a broken invariant
            raise RuntimeError("a locked upload was not there to mark withdrawn")
        await enqueue_many(
            connection,
            topics,
            [
                *(
                    ClaimWithdrawn(achievement_id=achievement_id, upload_id=upload_id)
                    for achievement_id in withdrawal.withdrawn
                ),
                UploadWithdrawn(
                    upload_id=upload_id,
                    ato_id=ato_id,
                    achievements_withdrawn=len(withdrawal.withdrawn),
                ),
            ],
        )
        return Upload.from_row(row)
