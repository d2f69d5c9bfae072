"""Reaching PostgreSQL and Kafka from a command, within the connect timeout.

A service waits for its dependencies for as long as it takes; a command must not: an operator
or a Job needs an answer. Only connecting is bounded (the work after takes what it takes), and
what connecting ran into is translated here, once, into `DATABASE_UNREACHABLE` or
`KAFKA_UNREACHABLE` (exit 4). Messages name the error type and where, never the URL (it may
hold a password).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
from aiokafka.errors import KafkaError

from services.cli.failures import CommandFailed, ExitCode
from services.core.db import create_pool
from services.core.settings import KafkaSettings, PostgresSettings


def _database_hosts(postgres: PostgresSettings) -> str:
    """`host:port` of the URL without its user and password, or nothing (a socket, libpq's
    defaults)."""
    hosts = urlsplit(postgres.database_url.get_secret_value()).netloc.rpartition("@")[2]
    return f" at {hosts}" if hosts else ""


def _unreachable(
    code: str, what: str, timeout_s: float, error: BaseException | None
) -> CommandFailed:
    """`what` could not be reached: within `timeout_s` (no `error`), or by `error`'s type (its
    message may hold the URL and its password)."""
    why = (
        f"no answer within {timeout_s:g} s (--connect-timeout)"
        if error is None
        else type(error).__name__
    )
    return CommandFailed(ExitCode.UNAVAILABLE, code, f"{what} could not be reached: {why}")


def _database_unreachable(
    postgres: PostgresSettings, timeout_s: float, error: BaseException | None
) -> CommandFailed:
    return _unreachable(
        "DATABASE_UNREACHABLE", f"PostgreSQL{_database_hosts(postgres)}", timeout_s, error
    )


# Connecting failed, as opposed to a statement failing once connected: refused, reset, closed,
# the server starting or shutting down, a wrong password or database (the server answered no).
_CONNECT_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def connect_database(postgres: PostgresSettings, timeout_s: float) -> asyncpg.Connection:
    """One connection, or `CommandFailed` within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            connection: asyncpg.Connection = await asyncpg.connect(
                postgres.database_url.get_secret_value(),
                timeout=timeout_s,
                command_timeout=postgres.db_command_timeout_s,
            )
            return connection
    except TimeoutError:
        raise _database_unreachable(postgres, timeout_s, None) from None
    except _CONNECT_ERRORS as error:
        raise _database_unreachable(postgres, timeout_s, error) from None


@contextlib.asynccontextmanager
async def database(
    postgres: PostgresSettings, timeout_s: float
) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect_database(postgres, timeout_s)
    try:
        yield connection
    finally:
        await connection.close()


async def open_pool(postgres: PostgresSettings, timeout_s: float) -> asyncpg.Pool:
    """The project's pool (its codecs), its first connection open within `timeout_s`.

    Opened empty (`connect=False`: `create_pool` would otherwise wait out a refused connection
    for ever, as a service should), then one connection is taken and given back under the
    bound, so a refusal is reported at once and a silent server after `timeout_s`."""
    opened = await create_pool(postgres, connect=False)
    try:
        async with asyncio.timeout(timeout_s):
            async with opened.acquire(timeout=timeout_s):
                pass
        return opened
    except TimeoutError:
        opened.terminate()
        raise _database_unreachable(postgres, timeout_s, None) from None
    except _CONNECT_ERRORS as error:
        opened.terminate()
        raise _database_unreachable(postgres, timeout_s, error) from None


@contextlib.asynccontextmanager
async def pool(postgres: PostgresSettings, timeout_s: float) -> AsyncIterator[asyncpg.Pool]:
    opened = await open_pool(postgres, timeout_s)
    try:
        yield opened
    finally:
        await opened.close()


class KafkaClient(Protocol):
    """A producer or consumer: aiokafka's `start()` retries the bootstrap for a long time
    (a broker that accepts and never answers: each request's timeout, 40 s by default)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def kafka_unreachable(
    settings: KafkaSettings, timeout_s: float, error: BaseException | None
) -> CommandFailed:
    return _unreachable(
        "KAFKA_UNREACHABLE", f"Kafka at {settings.bootstrap_servers}", timeout_s, error
    )


async def start_kafka(client: KafkaClient, settings: KafkaSettings, timeout_s: float) -> None:
    """`client.start()` within `timeout_s`, else the client stopped and `CommandFailed`."""
    try:
        async with asyncio.timeout(timeout_s):
            await client.start()
        return
    except TimeoutError:
        failed = kafka_unreachable(settings, timeout_s, None)
    except (KafkaError, OSError) as error:
        failed = kafka_unreachable(settings, timeout_s, error)
    # Half started: its connections and tasks are closed before the process reports and exits.
    with contextlib.suppress(Exception):
        await client.stop()
    raise failed
