"""A failover as the pool sees it, against the real PostgreSQL: a server that turns read-only
under a pooled connection (the old primary) and a session ended by the server are transient,
and the pool's next connection is a new one that can write (with `target_session_attrs=
read-write` in a multi-host DATABASE_URL, to the new primary)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr

from services.core import db
from services.core.settings import DeploymentMode, PostgresSettings

pytestmark = pytest.mark.stack


@pytest.fixture
def settings(database_url: str) -> PostgresSettings:
    # One connection: without the drop, the pool would hand the same one out again.
    return PostgresSettings(
        database_url=SecretStr(database_url),
        deployment_mode=DeploymentMode.LOCAL,
        db_pool_min_size=1,
        db_pool_max_size=1,
    )


@pytest.fixture
async def one_connection_pool(settings: PostgresSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    yield pool
    await pool.close()


async def _write_on_a_demoted_server(pool: asyncpg.Pool, settings: PostgresSettings) -> int:
    """Writes through a connection whose server has turned read-only; returns its backend."""
    async with db.connection(pool, settings) as held:
        pid: int = await held.fetchval("SELECT pg_backend_pid()")
        # What a write meets on a primary demoted under its connections (in the same checkout:
        # the pool resets session settings when a connection comes back).
        await held.execute("SET SESSION default_transaction_read_only = on")
        await held.execute("CREATE TABLE failover_probe (id int)")
    return pid


async def test_a_connection_to_a_read_only_server_is_dropped_and_the_next_one_writes(
    one_connection_pool: asyncpg.Pool, settings: PostgresSettings
) -> None:
    async with db.connection(one_connection_pool, settings) as held:
        old_pid = await held.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError) as raised:
        await _write_on_a_demoted_server(one_connection_pool, settings)
    assert db.is_transient(raised.value)

    async with db.transaction(one_connection_pool, settings) as held:
        new_pid = await held.fetchval("SELECT pg_backend_pid()")
        await held.execute("CREATE TABLE failover_probe (id int)")
        read_only = await held.fetchval("SHOW default_transaction_read_only")

    assert new_pid != old_pid
    assert read_only == "off"


async def _select_one(pool: asyncpg.Pool, settings: PostgresSettings) -> None:
    async with db.connection(pool, settings) as held:
        await held.fetchval("SELECT 1")


async def test_a_session_the_server_ended_is_transient_and_replaced(
    one_connection_pool: asyncpg.Pool, settings: PostgresSettings, database_url: str
) -> None:
    async with db.connection(one_connection_pool, settings) as held:
        old_pid = await held.fetchval("SELECT pg_backend_pid()")
    admin = await asyncpg.connect(database_url)
    try:
        # What a restarting or promoted server does to the sessions it had.
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
    finally:
        await admin.close()

    # Whether the first use meets the dead session depends on whether asyncpg read the server's
    # goodbye before it: either it fails, and transiently, or the pool already replaced it.
    met: BaseException | None = None
    try:
        await _select_one(one_connection_pool, settings)
    except Exception as error:
        met = error
    assert met is None or db.is_transient(met), type(met).__name__

    async with db.connection(one_connection_pool, settings) as held:
        assert await held.fetchval("SELECT pg_backend_pid()") != old_pid
