"""Sign-in sessions of the pages: the portal's hand-off (a person of an ATO, and their role) or,
for ATOs without the portal, an API key, checked once and exchanged for an opaque token.

The token lives only in the browser's cookie; the table keeps its SHA-256, so a copy of the
database opens no session. The CSRF token is derived from the session token, so it needs no
storage and is worthless without the HTTP-only cookie it belongs to.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.core.people import Person, Role
from services.upload_gateway.auth import Principal
from services.upload_gateway.keys import owner_of_key
from services.upload_gateway.portal_tokens import HandOff, HandOffRefused, Refusal

# A session ends after this long without a request, and in any case this long after sign-in.
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=8)
MAX_KEY_CHARS = 512  # as the API's bearer check
# A used hand-off token is remembered this long past the moment it fails the expiry check, so
# that a gateway whose clock runs a little behind another's still finds it.
TOKEN_USE_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Session:
    ato_id: str
    key_id: uuid.UUID | None  # signed in with an API key; None through the portal
    default_policy: str
    csrf_token: str
    expires_at: datetime
    person: Person | None = None  # signed in through the portal; None with an API key
    # An API key's session may do all its key may; a person what the portal's role allows.
    role: Role = Role.SUBMITTER
    ato_name: str = ""

    @property
    def may_submit(self) -> bool:
        """Whether this session may upload, withdraw, and download the rows to fix (which hold
        learners' data): a `viewer` only sees statuses and the masked problems."""
        return self.role.may_submit

    def principal(self) -> Principal:
        """Who the API's domain code acts for, and the audit trail names."""
        return Principal(self.ato_id, self.default_policy, self.key_id, self.person)


def hash_token(token: str) -> bytes:
    # Tokens are 256-bit random secrets: a fast hash is enough, as for API keys.
    return hashlib.sha256(token.encode()).digest()


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"csrf", hashlib.sha256).hexdigest()


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def _open(
    connection: asyncpg.Connection,
    now: datetime,
    ato_id: str,
    key_id: uuid.UUID | None,
    person: Person | None,
    role: Role,
) -> str:
    """A new session's token; in the caller's transaction."""
    token = secrets.token_urlsafe(32)
    # Sessions past their end are removed as new ones open: the table stays small.
    await connection.execute("DELETE FROM page_sessions WHERE absolute_expires_at <= $1", now)
    await connection.execute(
        "INSERT INTO page_sessions (token_hash, ato_id, key_id, created_at, expires_at,"
        " absolute_expires_at, person_subject, person_name, role)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        hash_token(token),
        ato_id,
        key_id,
        now,
        now + IDLE_TIMEOUT,
        now + ABSOLUTE_TIMEOUT,
        person.subject if person is not None else None,
        person.name if person is not None else None,
        role.value,
    )
    return token


async def sign_in(
    connection: asyncpg.Connection, api_key: str, now: datetime
) -> tuple[str, Session] | None:
    """(token, session) for an active key, or None. The key is checked as the API checks it."""
    api_key = api_key.strip()
    if not api_key or len(api_key) > MAX_KEY_CHARS:
        return None
    owner = await owner_of_key(connection, api_key)
    if owner is None:
        return None
    key_id: uuid.UUID = owner["key_id"]
    async with connection.transaction():
        token = await _open(connection, now, owner["ato_id"], key_id, None, Role.SUBMITTER)
    session = Session(
        owner["ato_id"], key_id, owner["default_policy"], csrf_for(token), now + IDLE_TIMEOUT
    )
    return token, session


async def sign_in_person(
    connection: asyncpg.Connection, hand_off: HandOff, now: datetime
) -> tuple[str, Session]:
    """(token, session) for the person a verified hand-off names; `HandOffRefused` if its token
    was used before or its ATO is unknown here.

    The token's `jti` is spent in the session's transaction: a refused sign-in spends nothing,
    and of two requests racing with one token, the second waits for the first and is refused.
    """
    async with connection.transaction():
        # Uses that no longer matter (their token fails the expiry check on any gateway) go as
        # new ones come: the table holds a few minutes of sign-ins.
        await connection.execute(
            "DELETE FROM portal_token_uses WHERE expires_at <= $1", now - TOKEN_USE_MARGIN
        )
        spent = await connection.fetchval(
            "INSERT INTO portal_token_uses (token_id, expires_at) VALUES ($1, $2)"
            " ON CONFLICT (token_id) DO NOTHING RETURNING true",
            hand_off.token_id,
            hand_off.expires_at,
        )
        if spent is None:
            raise HandOffRefused(Refusal.REPLAYED)
        ato = await connection.fetchrow(
            "SELECT name, default_policy FROM atos WHERE ato_id = $1", hand_off.ato_id
        )
        if ato is None:
            raise HandOffRefused(Refusal.UNKNOWN_ATO)
        token = await _open(connection, now, hand_off.ato_id, None, hand_off.person, hand_off.role)
    session = Session(
        hand_off.ato_id,
        None,
        ato["default_policy"],
        csrf_for(token),
        now + IDLE_TIMEOUT,
        hand_off.person,
        hand_off.role,
        ato["name"],
    )
    return token, session


async def resume(
    connection: asyncpg.Connection, token: str, now: datetime, *, key_sessions: bool = True
) -> Session | None:
    """The live session of a cookie's token, its idle expiry moved forward; None if it ended
    (expired, signed out, or its API key revoked), or if it was opened with an API key and
    `key_sessions` is off (the pages' API-key sign-in was turned off since)."""
    if not token or len(token) > MAX_KEY_CHARS:
        return None
    row = await connection.fetchrow(
        "UPDATE page_sessions s"
        " SET expires_at = least($2::timestamptz + $3::interval, s.absolute_expires_at)"
        " FROM atos a"
        " WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.absolute_expires_at > $2"
        " AND a.ato_id = s.ato_id"
        " AND (s.key_id IS NULL OR ($4 AND EXISTS (SELECT FROM api_keys k"
        " WHERE k.key_id = s.key_id AND k.revoked_at IS NULL)))"
        " RETURNING s.ato_id, s.key_id, s.expires_at, s.person_subject, s.person_name, s.role,"
        " a.default_policy, a.name",
        hash_token(token),
        now,
        IDLE_TIMEOUT,
        key_sessions,
    )
    if row is None:
        return None
    person = (
        Person(row["person_subject"], row["person_name"])
        if row["person_subject"] is not None
        else None
    )
    return Session(
        row["ato_id"],
        row["key_id"],
        row["default_policy"],
        csrf_for(token),
        row["expires_at"],
        person,
        Role(row["role"]),
        row["name"],
    )


async def sign_out(connection: asyncpg.Connection, token: str) -> None:
    await connection.execute("DELETE FROM page_sessions WHERE token_hash = $1", hash_token(token))
