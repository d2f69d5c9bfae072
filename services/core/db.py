"""PostgreSQL: the connection pool, what "unavailable" means, and the numbered migrations."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Final, TypeVar

import asyncpg

from services.core.logging import get_logger
from services.core.metrics import POOL_WAIT
from services.core.misconfiguration import DATABASE_URL, ConfigurationError, tls_refusal
from services.core.settings import PostgresSettings

_T = TypeVar("_T")

# Any constant will do: it only has to be the same for every process that migrates.
_MIGRATION_LOCK_ID = 7_300_117


log = get_logger()

_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + json.dumps(value).encode()


def _decode_jsonb(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )
    # Binary, so that COPY (which speaks only binary) can carry jsonb columns too.
    await connection.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )


# Refusals at connect time that the same settings will always meet: the password or the role
# (28P01, 28000: also pg_hba.conf refusing the address or a connection without TLS) and the
# database's name (3D000).
_REFUSED_LOGINS: Final[tuple[type[BaseException], ...]] = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


def configuration_problem(error: BaseException) -> ConfigurationError | None:
    """The setting a failed connect names, or None when waiting may help (`TRANSIENT_ERRORS`).

    A certificate that does not verify is an `OSError` to Python (`ssl.SSLError`), which would
    otherwise count as a lost connection and be retried for ever."""
    refusal = tls_refusal(error)
    if refusal is not None:
        return ConfigurationError(
            DATABASE_URL, f"{refusal}; check sslrootcert (or PGSSLROOTCERT) and the host names"
        )
    if isinstance(error, _REFUSED_LOGINS):
        return ConfigurationError(
            DATABASE_URL, f"PostgreSQL refused the login ({type(error).__name__})"
        )
    return None


async def connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """`asyncpg.connect`, translated at the edge: a refusal no retry can fix is raised as
    `ConfigurationError`. Every pool of the services connects through it, so a connection
    made again after a failover (`target_session_attrs=read-write` in a multi-host
    DATABASE_URL finds the new primary) is translated too."""
    try:
        connection: asyncpg.Connection = await asyncpg.connect(*args, **kwargs)
    except Exception as error:
        problem = configuration_problem(error)
        if problem is not None:
            raise problem from None
        raise
    return connection


async def create_pool(
    settings: PostgresSettings, dsn: str | None = None, *, connect: bool = True
) -> asyncpg.Pool:
    """The pool, its first `db_pool_min_size` connections open. A database that cannot be
    reached yet (a transient error) is waited for with capped back-off, for as long as it
    takes: a service started before PostgreSQL, or while it recovers from a crash, waits
    instead of exiting into a restart loop. Other errors (a wrong password, no such database,
    a certificate that does not verify: `ConfigurationError`) are raised at once.

    `connect=False`: no connection is opened until one is acquired, so nothing waits here;
    for a server that must answer (and report not ready) while the database is down.
    """

    async def open_pool() -> asyncpg.Pool:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn or settings.database_url.get_secret_value(),
            min_size=settings.db_pool_min_size if connect else 0,
            max_size=settings.db_pool_max_size,
            command_timeout=settings.db_command_timeout_s,
            init=_init_connection,
            connect=_connect,
        )
        return pool

    return await retry_transient(open_pool, what="database")


# The pool's connect (a module-level name, as `create_pool` has a parameter called `connect`).
_connect = connect


# The start-up wait: first delay, cap (seconds), and the factor between two delays.
STARTUP_FIRST_DELAY_S: Final = 0.5
STARTUP_MAX_DELAY_S: Final = 10.0
STARTUP_BACKOFF_FACTOR: Final = 2.0


async def retry_transient(
    step: Callable[[], Awaitable[_T]],
    *,
    what: str,
    first_delay_s: float = STARTUP_FIRST_DELAY_S,
    max_delay_s: float = STARTUP_MAX_DELAY_S,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> _T:
    """`step()` until it returns, waiting after each transient error (`TRANSIENT_ERRORS`)
    `first_delay_s`, then twice as long each time up to `max_delay_s`; never gives up (a
    cancelled start stops it). Any other error is raised. `sleep` is injectable for tests."""
    delay_s = first_delay_s
    attempt = 1
    while True:
        try:
            return await step()
        except TRANSIENT_ERRORS as error:
            log.warning(
                "dependency_waited_for",
                dependency=what,
                error=type(error).__name__,
                attempt=attempt,
                retry_s=delay_s,
            )
        await sleep(delay_s)
        delay_s = min(delay_s * STARTUP_BACKOFF_FACTOR, max_delay_s)
        attempt += 1


# The one list of errors that mean "the database cannot be used just now; the same work will
# succeed later": every service's retry loop and the gateway's 503 answer catch exactly these.
# Anything else (a constraint, a syntax error, a statement timeout) is not retried: it is a bug or
# a refusal, and must be seen. Serialization failures and deadlocks are not here: no transaction
# runs SERIALIZABLE, and the grant side takes its row locks in one order (see grant_states).
# A refusal no wait can fix (a certificate, a login) never reaches these: `connect` raises it as
# `ConfigurationError`, which is none of them.
TRANSIENT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08: the connection was lost or refused
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: the server is restarting, or the session was ended
    asyncpg.CrashShutdownError,  # 57P02: another backend crashed, the server is resetting
    asyncpg.TooManyConnectionsError,  # 53300: no connection slot left on the server
    # 25006: a write on a server that is (now) read-only, the old primary during a failover;
    # `connection` drops that connection, and the next one is made to the new primary.
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.InterfaceError,  # the connection was closed under the client
    asyncpg.InternalClientError,  # a connection left mid-operation by a server that died
    TimeoutError,  # no pooled connection within the acquire timeout; a connect that timed out
    OSError,  # the socket was refused, reset or unreachable
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


@asynccontextmanager
async def connection(
    pool: asyncpg.Pool, settings: PostgresSettings
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection, waited for at most `db_acquire_timeout_s` (then `TimeoutError`,
    which is transient): a request or a loop never queues for ever behind a busy pool.

    A connection that met a read-only server is closed rather than handed back: the pool would
    otherwise keep serving the old primary of a failover, and every write would fail the same
    way; the pool makes a new connection, which `target_session_attrs=read-write` sends to the
    new primary."""
    started = time.perf_counter()
    async with pool.acquire(timeout=settings.db_acquire_timeout_s) as held:
        POOL_WAIT.observe(time.perf_counter() - started)
        try:
            yield held
        except asyncpg.ReadOnlySQLTransactionError:
            log.warning("read_only_connection_dropped")
            held.terminate()
            raise


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool, settings: PostgresSettings
) -> AsyncIterator[asyncpg.Connection]:
    """`connection` with a transaction around the block: committed when it ends normally."""
    async with connection(pool, settings) as held, held.transaction():
        yield held


def migration_files(package: str) -> list[tuple[str, str]]:
    """(name, sql) for every `NNNN_*.sql` of a package, in order."""
    folder = resources.files(package)
    files = sorted(
        entry.name for entry in folder.iterdir() if entry.name.endswith(".sql") and entry.is_file()
    )
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in files]


async def migrate(
    connection: asyncpg.Connection, package: str = "services.core.migrations"
) -> list[str]:
    """Applies the migrations not yet applied; safe when several processes start at once."""
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await connection.fetch("SELECT name FROM schema_migrations")}
        for name, sql in migration_files(package):
            if name in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied_now.append(name)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now


async def migrate_dsn(dsn: str, package: str = "services.core.migrations") -> list[str]:
    connection: asyncpg.Connection = await connect(dsn)
    try:
        return await migrate(connection, package)
    finally:
        await connection.close()


def record_to_dict(record: asyncpg.Record) -> dict[str, Any]:
    return dict(record.items())
