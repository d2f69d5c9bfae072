"""The numbered migrations of every package build their schema on an empty database, and
running them again (a restart, or several processes starting at once) changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from services.core.db import migrate, migrate_dsn, migration_files
from tests.conftest import STACK_DSN, DatabaseFactory, _admin, _with_database

PACKAGES = {
    "services.core.migrations": {
        "atos",
        "api_keys",
        "uploads",
        "row_issues",
        "validation_chunks",
        "ato_turns",
        "achievements",
        "courses",
        "employers",
        "reference_versions",
        "outbox",
        "processed_events",
        "grant_claims",
        "audit_events",
        "purged_duplicate_keys",
        "page_sessions",
        "accepted_event_parts",
        "purge_runs",
        "operators",
        "portal_token_uses",
    },
    "services.grant_standin.migrations": {"claims", "idempotency_records"},
}
# Columns, constraints and indexes: enough to see any change a second run could make.
SCHEMA_QUERY = """
SELECT 'column' AS kind, table_name || '.' || column_name || ' ' || data_type AS item
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
ORDER BY 1, 2
"""


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    """A database with nothing in it, not even the migrations table."""
    name = f"t_empty_{uuid.uuid4().hex[:16]}"
    await _admin(f"CREATE DATABASE {name}")
    url = _with_database(STACK_DSN, name)
    yield url
    await DatabaseFactory.drop(url)


async def schema_of(connection: asyncpg.Connection) -> list[tuple[str, str]]:
    return [(row["kind"], row["item"]) for row in await connection.fetch(SCHEMA_QUERY)]


async def tables_of(connection: asyncpg.Connection) -> set[str]:
    rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


@pytest.mark.parametrize("package", sorted(PACKAGES))
async def test_a_packages_migrations_build_its_schema_on_an_empty_database(
    empty_database: str, package: str
) -> None:
    names = [name for name, _ in migration_files(package)]
    assert names  # the package ships its .sql files

    applied = await migrate_dsn(empty_database, package)

    assert applied == names
    connection = await asyncpg.connect(empty_database)
    try:
        assert await tables_of(connection) == PACKAGES[package] | {"schema_migrations"}
        recorded = await connection.fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [row["name"] for row in recorded] == names
    finally:
        await connection.close()


@pytest.mark.parametrize("package", sorted(PACKAGES))
async def test_running_the_migrations_again_applies_nothing_and_changes_nothing(
    empty_database: str, package: str
) -> None:
    connection = await asyncpg.connect(empty_database)
    try:
        assert await migrate(connection, package)
        before = await schema_of(connection)

        assert await migrate(connection, package) == []

        assert await schema_of(connection) == before
        assert await connection.fetchval("SELECT count(*) FROM schema_migrations") == len(
            migration_files(package)
        )
    finally:
        await connection.close()


async def test_migrations_started_at_once_by_several_processes_apply_each_file_once(
    empty_database: str,
) -> None:
    package = "services.core.migrations"
    runs = await asyncio.gather(*(migrate_dsn(empty_database, package) for _ in range(4)))

    # The advisory lock lets exactly one of them do the work; the others find it done.
    assert sorted(runs, key=len) == [[], [], [], [name for name, _ in migration_files(package)]]


@pytest.mark.parametrize("package", sorted(PACKAGES))
async def test_the_test_databases_are_fully_migrated_already(
    make_database: Callable[[str], Any], package: str
) -> None:
    # What the other integration tests stand on: a cloned template with nothing left to apply.
    url = await make_database(package)
    assert await migrate_dsn(url, package) == []
