"""The schema's CHECK constraints on the state columns list exactly the words of the enums in
`services/core/states.py`, read back from a migrated database."""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

import asyncpg
import pytest

from services.core.states import ClaimState, GrantState, UploadState

STATE_COLUMNS: list[tuple[str, str, type[StrEnum]]] = [
    ("uploads", "status", UploadState),
    ("achievements", "grant_state", GrantState),
    ("grant_claims", "state", ClaimState),
]

# The CHECKs on exactly one column of a table, as PostgreSQL prints them back.
CHECKS = """
SELECT c.conname, pg_get_constraintdef(c.oid) AS definition
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'c' AND c.conrelid = $1::regclass
  AND cardinality(c.conkey) = 1 AND a.attname = $2
"""


def listed_words(definition: str) -> list[str]:
    """The string literals of a `CHECK (column = ANY (ARRAY['a'::text, ...]))`."""
    assert re.fullmatch(r"CHECK \(\(\w+ = ANY \(ARRAY\[.*\]\)\)\)", definition), definition
    return re.findall(r"'([^']*)'::text", definition)


@pytest.mark.parametrize(("table", "column", "enum"), STATE_COLUMNS)
async def test_each_state_column_checks_exactly_its_enum(
    pool: asyncpg.Pool, table: str, column: str, enum: type[StrEnum]
) -> None:
    async with pool.acquire() as connection:
        checks = await connection.fetch(CHECKS, table, column)
    assert [row["conname"] for row in checks] == [f"{table}_{column}_check"]
    words = listed_words(checks[0]["definition"])
    assert len(words) == len(set(words))
    assert sorted(words) == sorted(state.value for state in enum)


async def seed_one_of_each(connection: asyncpg.Connection) -> None:
    """An upload, an achievement and a claim, each in a valid state."""
    await connection.execute("INSERT INTO atos (ato_id, name) VALUES ('ATO-1', 'One')")
    await connection.execute(
        "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
        " storage_key, terms_accepted_at, upload_date, status)"
        " VALUES ($1, 'ATO-1', 'a.csv', 1, 'x', 'valid_rows', 'k', now(), current_date, $2)",
        UPLOAD_ID,
        UploadState.PASSED,
    )
    await connection.execute(
        "INSERT INTO achievements (achievement_id, upload_id, row_number, ato_id, course_code,"
        " achievement_date, forename, surname, date_of_birth, uln, grant_eligible, release_at,"
        " grant_state) VALUES ($1, $2, 2, 'ATO-1', 'SMSTS-R', '2026-03-01', 'Ann', 'Smith',"
        " '1990-01-01', '1000000043', true, now(), $3)",
        ACHIEVEMENT_ID,
        UPLOAD_ID,
        GrantState.HELD,
    )
    await connection.execute(
        "INSERT INTO grant_claims (claim_id, achievement_id, upload_id, row_number, release_at,"
        " next_attempt_at, state) VALUES ($1, $2, $3, 2, now(), now(), $4)",
        uuid.uuid4(),
        ACHIEVEMENT_ID,
        UPLOAD_ID,
        ClaimState.PENDING,
    )


UPLOAD_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
ACHIEVEMENT_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")


@pytest.mark.parametrize(("table", "column", "enum"), STATE_COLUMNS)
async def test_every_word_of_the_enum_is_taken_and_no_other(
    pool: asyncpg.Pool, table: str, column: str, enum: type[StrEnum]
) -> None:
    async with pool.acquire() as connection:
        await seed_one_of_each(connection)
        for state in enum:
            async with connection.transaction():
                assert await connection.execute(f"UPDATE {table} SET {column} = $1", state) == (
                    "UPDATE 1"
                )
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(f"UPDATE {table} SET {column} = 'validated'")
