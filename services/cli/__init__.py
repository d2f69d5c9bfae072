"""`achievements`: the operator's, the ATO's and the deployment's command line, on click.

One module per command group: `admin`, `reference`, `ato`, `upload` (the ATO's `upload`,
`status`, `errors`, `withdraw`), `check`, `watch`, `dlq`, `reconcile`, `purge`, `learner`,
`exporter` (the operations exporter, a long-running process), `operator`, `audit`; what they
share is in `failures` (exit statuses and codes), `output` (JSON and running a command),
`connect` (PostgreSQL and Kafka within the connect timeout), `operator_token` (who runs an
operator command), `settings` and `context`.

The operator commands (`learner`, `purge`, `ato create` and `ato key create|revoke`, `dlq
replay`, `reconcile --repair`, `operator`, `audit`) run only with an active operator's token in
ACHIEVEMENTS_OPERATOR_TOKEN, and each action is audited as that operator's.

Every command takes `-h`/`--help` and `--json`: one JSON object on stdout on success and on
failure (`{"code", "message", ...}`), or one per line for the streaming ones (`watch`,
`errors --csv`, `purge --every`, `exporter serve`). Logs go to stderr only, as JSON lines when
stderr is not a terminal.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Final

import click

# The modules, not their commands, are imported by name: a command named as its module would
# hide the module (`services.cli.check`) from whoever imports or patches it.
from services.cli import (
    admin,
    ato,
    audit,
    check,
    dlq,
    exporter,
    learner,
    operator,
    purge,
    reconcile,
    reference,
    upload,
    watch,
)
from services.cli.context import CliContext
from services.cli.failures import CommandFailed, ExitCode, usage
from services.cli.options import CONTEXT_SETTINGS
from services.cli.output import report_failure
from services.cli.settings import DEFAULT_CONNECT_TIMEOUT_S
from services.core.logging import LogOutput, configure_logging

PACKAGE: Final = "achievements-pipeline"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")

# `\b` keeps click from re-flowing the table.
EXIT_STATUSES: Final = """Exit statuses (docs/operations.md):

\b
  0  OK                done
  1  NOTHING_ACCEPTED  upload --wait: nothing accepted; check: the file would not be
                       accepted; admin migrated: migrations missing; ato key revoke: no
                       such active key; operator revoke: no such active operator
  2  USAGE             bad arguments, no API key, operator token or learner identifier,
                       invalid settings
  3  REFUSED           the gateway refused the request; no such dead letter or ATO; the
                       operator token is unknown or revoked
  4  UNAVAILABLE       the gateway, Kafka or PostgreSQL could not be reached (within
                       --connect-timeout) or answered 5xx
  5  TIMED_OUT         --timeout ran out before the upload was final
  6  FILE_UNREADABLE   the local file (or reference data) could not be read
  7  DIFFERENCES       reconcile found differences
  70 INTERNAL_ERROR    a bug: an error no command foresaw (details in the log)
  130 INTERRUPTED      Ctrl-C
"""


def _version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@click.group(
    name="achievements",
    context_settings=CONTEXT_SETTINGS,
    help="Bulk learner-achievement ingestion: set-up (admin, reference, ato), the ATO's commands"
    " (upload, status, errors, withdraw, check) and the operator's (watch, dlq, reconcile,"
    " purge, learner, exporter, operator, audit; those that change or read learner data need"
    " ACHIEVEMENTS_OPERATOR_TOKEN). Every command takes --json.",
    epilog=EXIT_STATUSES,
)
@click.version_option(_version(), "--version", prog_name="achievements")
@click.option(
    "--connect-timeout",
    "connect_timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="give up reaching PostgreSQL or Kafka after this long (default: "
    f"ACHIEVEMENTS_CONNECT_TIMEOUT_S, else {DEFAULT_CONNECT_TIMEOUT_S:g}); the work after is"
    " not bounded by it",
)
@click.option(
    "--log-level",
    envvar="LOG_LEVEL",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="of the log lines on stderr (or LOG_LEVEL)",
)
@click.pass_context
def achievements(ctx: click.Context, connect_timeout_s: float | None, log_level: str) -> None:
    context = ctx.ensure_object(CliContext)
    context.connect_timeout_option_s = connect_timeout_s
    if context.configures_logging:
        configure_logging("achievements", log_level, LogOutput())


for _command in (
    admin.admin,
    reference.reference,
    ato.ato,
    upload.upload,
    upload.status,
    upload.errors,
    upload.withdraw,
    check.check,
    watch.watch,
    dlq.dlq,
    reconcile.reconcile,
    purge.purge,
    learner.learner,
    exporter.exporter,
    operator.operator,
    audit.audit,
):
    achievements.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """The `achievements` console script. Called without `argv` it is the process's entry and
    sends the logs to stderr (`configure_logging`); a caller passing `argv` (a test, in its own
    process) keeps its own logging."""
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in args
    context = CliContext(configures_logging=argv is None)
    try:
        result = achievements.main(
            args=args, prog_name="achievements", standalone_mode=False, obj=context
        )
    except click.UsageError as error:
        if as_json:
            return report_failure(usage(error.format_message()), as_json=True)
        error.show()
        return ExitCode.USAGE
    except click.Abort:
        return report_failure(
            CommandFailed(ExitCode.INTERRUPTED, "INTERRUPTED", "interrupted"), as_json
        )
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except CommandFailed as failed:
        return report_failure(failed, as_json)
    return int(result or 0)


__all__ = ["ExitCode", "achievements", "main"]
