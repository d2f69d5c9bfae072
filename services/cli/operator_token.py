"""Who runs an operator command: the operator whose token is in ACHIEVEMENTS_OPERATOR_TOKEN,
checked against PostgreSQL before the command does anything. Never an argument: a command line
is visible to every user of the machine and kept in shell history.

A missing token is `NO_OPERATOR_TOKEN` (exit 2); a malformed, unknown or revoked one is
`OPERATOR_REFUSED` (exit 3), the same answer for each so that it tells a guesser nothing.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from services.cli.failures import CommandFailed, ExitCode
from services.cli.settings import CliSettings
from services.core.operators import Operator, OperatorRefused, authenticate

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
