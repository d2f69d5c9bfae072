"""Who runs an operator command: the operator whose token is in ACHIEVEMENTS_OPERATOR_TOKEN,
checked against PostgreSQL before the command does anything. Never an argument: a command line
is visible to every user of the machine and kept in shell history.

A missing token is `NO_OPERATOR_TOKEN` (exit 2); a malformed, unknown or revoked one is
`OPERATOR_REFUSED` (exit 3), the same answer for each so that it tells a guesser nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import asyncpg

from services.cli.connect import database
from services.cli.context import CliContext
from services.cli.failures import CommandFailed, ExitCode
from services.cli.settings import CliSettings, build_settings
from services.core.operators import Operator, OperatorRefused, authenticate
from services.core.settings import CommonSettings

OPERATOR_TOKEN_VARIABLE: Final = "ACHIEVEMENTS_OPERATOR_TOKEN"  # noqa: S105 (a name, not a secret)


def no_operator_token(why: str = "") -> CommandFailed:
    return CommandFailed(
        ExitCode.USAGE,
        "NO_OPERATOR_TOKEN",
        f"{why}an operator command needs an operator's token in {OPERATOR_TOKEN_VARIABLE}",
    )


def operator_token(settings: CliSettings) -> str:
    """The token given, or `NO_OPERATOR_TOKEN`: checked before connecting, so a forgotten
    variable is said at once."""
    token = settings.operator_token.get_secret_value().strip()
    if not token:
        raise no_operator_token()
    return token


async def acting_operator(connection: asyncpg.Connection | asyncpg.Pool, token: str) -> Operator:
    """The active operator of `token`, or `OPERATOR_REFUSED`."""
    try:
        return await authenticate(connection, token)
    except OperatorRefused:
        raise CommandFailed(
            ExitCode.REFUSED,
            "OPERATOR_REFUSED",
            f"{OPERATOR_TOKEN_VARIABLE} holds no active operator's token",
        ) from None


@dataclass(frozen=True, slots=True)
class OperatorSession:
    """What an operator command works with once its operator is known."""

    connection: asyncpg.Connection
    by: Operator
    settings: CommonSettings


@contextlib.asynccontextmanager
async def operator_session(context: CliContext) -> AsyncIterator[OperatorSession]:
    """Every operator command's first steps, in this order: the token (a forgotten variable
    said before anything else), the settings, PostgreSQL within the connect timeout, then the
    token's operator; the connection closed at the end."""
    token = operator_token(context.settings)
    common = build_settings(CommonSettings)
    async with database(common.postgres, context.connect_timeout_s) as connection:
        by = await acting_operator(connection, token)
        yield OperatorSession(connection, by, common)
