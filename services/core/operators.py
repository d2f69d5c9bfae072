"""Operators: whoever runs the operator commands (a person, or a scheduled job such as the
purge), each known by a token (migration 0015, `operators`).

A token is `op_<operator id in hex>_<256 random bits>`, shown once; only its SHA-256 is stored.
The id in front finds the row, and the hashes are then compared in constant time, so how long
an answer takes says nothing about a stored hash. The first operator can be created on the
database's credentials alone (the bootstrap); once one exists, only an operator can create
another. Every create and revoke is audited (services/core/audit.py) as the acting operator's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from services.core import audit

TOKEN_PREFIX: Final = "op_"  # noqa: S105 (the shape of a token, not one)
NAME_MAX_CHARS: Final = 100


@dataclass(frozen=True, slots=True)
class Operator:
    operator_id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class NewOperator:
    operator: Operator
    token: str


class OperatorRefused(Exception):
    """The token is malformed, unknown or revoked (which of them is not said)."""


class BootstrapClosed(Exception):
    """An operator exists: creating another needs an operator's token."""


class OperatorNameTaken(Exception):
    """An operator of that name exists or existed (names are never reused)."""


class LastOperator(Exception):
    """Revoking the only active operator would leave no one to create another."""


class InvalidOperatorName(ValueError):
    """Empty, too long, or holding a control character."""


def checked_name(name: str) -> str:
    """The name without surrounding white space; `InvalidOperatorName` when it cannot name an
    operator in a trail read for years (empty, over 100 characters, a control character)."""
    stripped = name.strip()
    if not stripped:
        raise InvalidOperatorName("the operator's name is empty")
    if len(stripped) > NAME_MAX_CHARS:
        raise InvalidOperatorName(f"the operator's name is over {NAME_MAX_CHARS} characters")
    if any(not character.isprintable() for character in stripped):
        raise InvalidOperatorName("the operator's name holds a control character")
    return stripped


def new_token(operator_id: uuid.UUID) -> str:
    return f"{TOKEN_PREFIX}{operator_id.hex}_{secrets.token_urlsafe(32)}"


def operator_id_of(token: str) -> uuid.UUID | None:
    """The operator id a token names, or None when it is not shaped as a token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    hex_id, separator, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    if not separator or not secret or len(hex_id) != 32:
        return None
    try:
        return uuid.UUID(hex=hex_id)
    except ValueError:
        return None


def hash_token(token: str) -> bytes:
    # Tokens hold 256 random bits, so a fast hash is enough (no dictionary to attack).
    return hashlib.sha256(token.encode()).digest()


def token_matches(token: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


async def authenticate(connection: asyncpg.Connection | asyncpg.Pool, token: str) -> Operator:
    """The active operator whose token this is, else `OperatorRefused`."""
    operator_id = operator_id_of(token)
    if operator_id is None:
        raise OperatorRefused
    row = await connection.fetchrow(
        "SELECT name, token_hash FROM operators WHERE operator_id = $1 AND revoked_at IS NULL",
        operator_id,
    )
    if row is None or not token_matches(token, row["token_hash"]):
        raise OperatorRefused
    return Operator(operator_id, row["name"])


async def _lock_operators(connection: asyncpg.Connection) -> None:
    # Two bootstraps at once must not both find the table empty; two revocations must not both
    # find another operator still active. Operators change rarely: a table lock costs nothing.
    await connection.execute("LOCK TABLE operators IN SHARE ROW EXCLUSIVE MODE")


async def create(
    connection: asyncpg.Connection, name: str, by: Operator | None, at: datetime
) -> NewOperator:
    """A new operator and its token, audited as `by`'s action. `by` None is the bootstrap:
    allowed only while no operator exists (revoked ones count), and audited as the new
    operator's own. Raises `BootstrapClosed`, `OperatorNameTaken`, `InvalidOperatorName`."""
    name = checked_name(name)
    async with connection.transaction():
        await _lock_operators(connection)
        if by is None and await connection.fetchval("SELECT EXISTS (SELECT 1 FROM operators)"):
            raise BootstrapClosed
        if await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM operators WHERE name = $1)", name
        ):
            raise OperatorNameTaken
        operator = Operator(uuid.uuid4(), name)
        token = new_token(operator.operator_id)
        await connection.execute(
            "INSERT INTO operators (operator_id, name, token_hash, created_at)"
            " VALUES ($1, $2, $3, $4)",
            operator.operator_id,
            name,
            hash_token(token),
            at,
        )
        await audit.record_operator_action(
            connection,
            audit.AuditKind.OPERATOR_CREATED,
            (by or operator).operator_id,
            audit.Target(operator_id=operator.operator_id),
            at,
        )
    return NewOperator(operator, token)


async def revoke(connection: asyncpg.Connection, name: str, by: Operator, at: datetime) -> bool:
    """Ends the token of the active operator `name` (False: no such active operator), audited
    as `by`'s action. `LastOperator` when no other operator would remain active."""
    async with connection.transaction():
        await _lock_operators(connection)
        operator_id = await connection.fetchval(
            "SELECT operator_id FROM operators WHERE name = $1 AND revoked_at IS NULL", name
        )
        if operator_id is None:
            return False
        others = await connection.fetchval(
            "SELECT count(*) FROM operators WHERE revoked_at IS NULL AND operator_id <> $1",
            operator_id,
        )
        if others == 0:
            raise LastOperator
        await connection.execute(
            "UPDATE operators SET revoked_at = $2 WHERE operator_id = $1", operator_id, at
        )
        await audit.record_operator_action(
            connection,
            audit.AuditKind.OPERATOR_REVOKED,
            by.operator_id,
            audit.Target(operator_id=operator_id),
            at,
        )
    return True
