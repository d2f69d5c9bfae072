"""Sign-in sessions of the pages: an API key checked once, exchanged for an opaque token.

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

from services.upload_gateway.keys import owner_of_key

# A session ends after this long without a request, and in any case this long after sign-in.
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=8)
MAX_KEY_CHARS = 512  # as the API's bearer check


@dataclass(frozen=True, slots=True)
class Session:
    ato_id: str
    key_id: uuid.UUID
    default_policy: str
    csrf_token: str
    expires_at: datetime


def hash_token(token: str) -> bytes:
    # Tokens are 256-bit random secrets: a fast hash is enough, as for API keys.
    return hashlib.sha256(token.encode()).digest()


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"csrf", hashlib.sha256).hexdigest()


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


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
    token = secrets.token_urlsafe(32)
    expires_at = now + IDLE_TIMEOUT
    async with connection.transaction():
        # Sessions past their end are removed as new ones open: the table stays small.
        await connection.execute("DELETE FROM page_sessions WHERE absolute_expires_at <= $1", now)
        await connection.execute(
            "INSERT INTO page_sessions (token_hash, ato_id, key_id, created_at, expires_at,"
            " absolute_expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            hash_token(token),
            owner["ato_id"],
            key_id,
            now,
            expires_at,
            now + ABSOLUTE_TIMEOUT,
        )
    session = Session(owner["ato_id"], key_id, owner["default_policy"], csrf_for(token), expires_at)
    return token, session


async def resume(connection: asyncpg.Connection, token: str, now: datetime) -> Session | None:
    """The live session of a cookie's token, its idle expiry moved forward; None if it ended
    (expired, signed out, or its API key revoked)."""
    if not token or len(token) > MAX_KEY_CHARS:
        return None
    row = await connection.fetchrow(
        "UPDATE page_sessions s"
        " SET expires_at = least($2::timestamptz + $3::interval, s.absolute_expires_at)"
        " FROM api_keys k JOIN atos a USING (ato_id)"
        " WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.absolute_expires_at > $2"
        " AND k.key_id = s.key_id AND k.revoked_at IS NULL"
        " RETURNING s.ato_id, s.key_id, s.expires_at, a.default_policy",
        hash_token(token),
        now,
        IDLE_TIMEOUT,
    )
    if row is None:
        return None
    return Session(
        row["ato_id"], row["key_id"], row["default_policy"], csrf_for(token), row["expires_at"]
    )


async def sign_out(connection: asyncpg.Connection, token: str) -> None:
    await connection.execute("DELETE FROM page_sessions WHERE token_hash = $1", hash_token(token))
