"""What a command can end with: the documented exit statuses, and a failure with its code.

Every error a command runs into is translated here, once, into a `CommandFailed`: the code and
message a script reads (`{"code", "message"}` with `--json`) and the exit status it tests.
Messages name settings, hosts and error types, never a key, a password or a learner's data.
"""

from __future__ import annotations

import enum
from typing import Any

import aiohttp
import asyncpg
from aiokafka.errors import KafkaError

from services.core.misconfiguration import ConfigurationError


class ExitCode(enum.IntEnum):
    """The exit statuses of every command (docs/operations.md lists them for scripts)."""

    OK = 0
    # `upload --wait`: the upload ended rejected, failed or errored (no row accepted);
    # `check`: the file would not be accepted; `admin migrated`: migrations still missing;
    # `ato key revoke`: no such active key; `operator revoke`: no such active operator.
    NOTHING_ACCEPTED = 1
    # Bad arguments, no API key, operator token or learner identifier, invalid settings.
    USAGE = 2
    # The gateway refused the request (a 4xx: the file at once, the key, no such upload); the
    # operator token is unknown or revoked.
    REFUSED = 3
    # The gateway, Kafka or PostgreSQL could not be reached (within `--connect-timeout` for
    # PostgreSQL and Kafka), or answered 5xx.
    UNAVAILABLE = 4
    # `--wait` or `--timeout` ran out before the upload was final.
    TIMED_OUT = 5
    # The local file could not be read.
    FILE_UNREADABLE = 6
    # `reconcile`: our claim records and the grant system's differ (each difference listed).
    DIFFERENCES = 7
    # A bug: an error the command did not foresee (its type in the message, the details in
    # the log on stderr). 70 is sysexits' EX_SOFTWARE.
    INTERNAL_ERROR = 70
    # Ctrl-C (128 + SIGINT), as a shell reports it.
    INTERRUPTED = 130


class CommandFailed(Exception):
    """A failure to report as `{"code", "message"}` with its exit status."""

    def __init__(
        self, exit_code: ExitCode, code: str, message: str, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code
        self.message = message
        self.http_status = http_status

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.http_status is not None:
            body["http_status"] = self.http_status
        body["exit_code"] = int(self.exit_code)
        return body


def usage(message: str) -> CommandFailed:
    return CommandFailed(ExitCode.USAGE, "USAGE", message)


class MissingApiKey(Exception):
    """No ATO API key in the environment and no terminal to ask on."""


def translate(error: BaseException) -> CommandFailed:
    """The project's exit status and code for what a command ran into; anything not foreseen
    is `INTERNAL_ERROR` (its type only: a message may hold data), never a traceback."""
    from services.upload_client import UploadError

    if isinstance(error, CommandFailed):
        return error
    if isinstance(error, UploadError):
        unavailable = error.status >= 500
        return CommandFailed(
            ExitCode.UNAVAILABLE if unavailable else ExitCode.REFUSED,
            error.code,
            error.message,
            http_status=error.status,
        )
    if isinstance(error, MissingApiKey):
        return CommandFailed(ExitCode.USAGE, "NO_API_KEY", str(error))
    if isinstance(error, TimeoutError):
        return CommandFailed(ExitCode.TIMED_OUT, "TIMED_OUT", str(error) or "timed out")
    if isinstance(error, aiohttp.ClientError):
        return CommandFailed(
            ExitCode.UNAVAILABLE, "GATEWAY_UNREACHABLE", f"gateway unreachable: {error}"
        )
    if isinstance(error, ConfigurationError):
        # A setting PostgreSQL, Kafka or the grant API refuses for good (a certificate that does
        # not verify, a login, an ACL): the message names the setting, never its value.
        return CommandFailed(ExitCode.USAGE, "SETTING_REFUSED", str(error))
    if isinstance(error, KafkaError):
        return CommandFailed(
            ExitCode.UNAVAILABLE, "KAFKA_UNREACHABLE", f"Kafka: {type(error).__name__}"
        )
    if isinstance(error, asyncpg.PostgresError | asyncpg.InterfaceError):
        return CommandFailed(
            ExitCode.UNAVAILABLE, "DATABASE_ERROR", f"PostgreSQL: {type(error).__name__}"
        )
    if isinstance(error, ConnectionError):  # an OSError, but no file's
        return CommandFailed(ExitCode.UNAVAILABLE, "UNREACHABLE", f"unreachable: {error}")
    if isinstance(error, OSError):
        return CommandFailed(
            ExitCode.FILE_UNREADABLE,
            "FILE_UNREADABLE",
            f"{error.filename}: {error.strerror}" if error.filename else str(error),
        )
    return CommandFailed(
        ExitCode.INTERNAL_ERROR, "INTERNAL_ERROR", f"unexpected {type(error).__name__}"
    )
