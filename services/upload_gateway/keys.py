"""ATOs and their API keys. Only a SHA-256 of a key is stored; the key is shown once."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

KEY_PREFIX = "ak_"


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: uuid.UUID
    ato_id: str
    api_key: str


def hash_key(api_key: str) -> bytes:
    # Keys are 256-bit random secrets, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(api_key.encode()).digest()


def new_ato_id() -> str:
    return f"ATO-{secrets.token_hex(4).upper()}"


async def create_key(connection: asyncpg.Connection, ato_id: str) -> NewKey:
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = uuid.uuid4()
    await connection.execute(
        "INSERT INTO api_keys (key_id, ato_id, key_hash) VALUES ($1, $2, $3)",
        key_id,
        ato_id,
        hash_key(api_key),
    )
    return NewKey(key_id, ato_id, api_key)


async def create_ato(
    connection: asyncpg.Connection, name: str, default_policy: str = "all_or_nothing"
) -> NewKey:
    async with connection.transaction():
        ato_id = new_ato_id()
        await connection.execute(
            "INSERT INTO atos (ato_id, name, default_policy) VALUES ($1, $2, $3)",
            ato_id,
            name,
            default_policy,
        )
        return await create_key(connection, ato_id)


async def revoke_key(connection: asyncpg.Connection, key_id: uuid.UUID) -> bool:
    result: str = await connection.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", key_id
    )
    return result.endswith(" 1")


async def owner_of_key(connection: asyncpg.Connection, api_key: str) -> asyncpg.Record | None:
    """`key_id`, and `ato_id` and `default_policy` of the ATO, of an active (not revoked)
    key."""
    owner: asyncpg.Record | None = await connection.fetchrow(
        "SELECT k.key_id, k.ato_id, a.default_policy FROM api_keys k JOIN atos a USING (ato_id)"
        " WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        hash_key(api_key),
    )
    return owner
