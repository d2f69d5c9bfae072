"""What "the database is unavailable for now" means: one list, shared by every service."""

from __future__ import annotations

import asyncpg
import pytest

from services.core.db import is_transient


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ConnectionDoesNotExistError("lost"),
        asyncpg.CannotConnectNowError("starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("too many clients"),
        # A write on the old primary during a failover: the next connection finds the new one.
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        asyncpg.InterfaceError("connection is closed"),
        TimeoutError(),
        ConnectionRefusedError(),
        ConnectionResetError(),
    ],
)
def test_lost_refused_full_or_slow_databases_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CheckViolationError("bad state"),
        asyncpg.UniqueViolationError("duplicate"),
        asyncpg.PostgresSyntaxError("typo"),
        asyncpg.QueryCanceledError("statement timeout"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.SerializationError("serialization"),
        ValueError(),
    ],
)
def test_bugs_and_refusals_are_not(error: BaseException) -> None:
    assert not is_transient(error)
