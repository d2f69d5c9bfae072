"""A dependency refused this process for a reason waiting cannot fix: a setting is wrong.

A certificate that does not verify, a password or SASL login refused, an ACL that does not let
this process use its topics or group: retrying gives the same answer for ever, and a service
that retries for ever looks alive while doing nothing. Each edge (services/core/db.py for
PostgreSQL, services/core/kafka.py for Kafka, the grant client for the grant API) translates
such a driver error once into `ConfigurationError`, naming the setting to correct. It is
deliberately not in `db.TRANSIENT_ERRORS` (nor a subclass of anything there), so no retry loop
catches it: a worker ends with one line naming the setting and exit status 2, as invalid
settings do (`settings.load_settings`); the gateway, which must answer probes, reports it in
`/readyz`.

Messages name settings and the kind of refusal, never a value of a setting.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Coroutine
from typing import Any, Final

# What each setting is called in a message, by the dependency.
DATABASE_URL: Final = "DATABASE_URL"
GRANT_API_URL: Final = "GRANT_BRIDGE_GRANT_API_URL"
GRANT_TOKEN: Final = "GRANT_BRIDGE_TOKEN"  # noqa: S105 (the setting's name, not a token)

# Exit status of a process stopped by a setting: the same as for invalid settings.
EXIT_STATUS: Final = 2

# OpenSSL's reasons for a handshake that failed because of what one side presented or trusts
# (a certificate, a protocol spoken on the other side): the same on every try. A connection
# reset or an EOF during the handshake (a server restarting) is not among them: that is
# transient.
_REFUSED_HANDSHAKE_REASONS: Final = frozenset(
    {
        "CERTIFICATE_VERIFY_FAILED",
        "WRONG_VERSION_NUMBER",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
    }
)


class ConfigurationError(Exception):
    """`setting` is wrong: `reason` says how the dependency refused it (no setting's value)."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def tls_refusal(error: BaseException) -> str | None:
    """Why a TLS handshake was refused for good (the certificate did not verify, the other side
    does not speak TLS or refused our certificate), or None when `error` is not such a refusal.
    Looks through `__cause__` and `__context__`, as drivers wrap the `ssl` error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # aiohttp's own certificate error is one too, without `verify_message`: its cause has it.
        verify_message = getattr(current, "verify_message", None)
        if isinstance(current, ssl.SSLCertVerificationError) and verify_message:
            # It says what was wrong: an unknown issuer, a name that does not match.
            return f"the server's TLS certificate did not verify ({verify_message})"
        if isinstance(current, ssl.SSLError) and getattr(current, "reason", None) in (
            _REFUSED_HANDSHAKE_REASONS
        ):
            return f"the TLS handshake was refused ({current.reason})"
        if isinstance(current, ssl.SSLCertVerificationError) and not (
            current.__cause__ or current.__context__
        ):
            return "the server's TLS certificate did not verify"
        current = current.__cause__ or current.__context__
    return None


def exit_message(process: str, problem: ConfigurationError) -> str:
    """The one line a process ends with."""
    return f"{process}: configuration refused by a dependency: {problem}"


def run_service(main: Coroutine[Any, Any, None], process: str) -> None:
    """`asyncio.run(main)`; a `ConfigurationError` ends the process with one line on stderr
    naming the setting, and exit status 2 (a supervisor's restart would meet the same wall)."""
    try:
        asyncio.run(main)
    except ConfigurationError as problem:
        print(exit_message(process, problem), file=sys.stderr)
        raise SystemExit(EXIT_STATUS) from None
