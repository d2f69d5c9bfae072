"""`achievements purge [--dry-run] [--every SECONDS]`: the retention purge (docs/retention.md),
once (the Kubernetes CronJob) or on a schedule (the compose file and the local stack).

An operator command: a scheduled purge runs as an operator created for it at deploy time, its
token a secret (ACHIEVEMENTS_OPERATOR_TOKEN); the token is checked before every run, so a
revoked one stops the schedule at its next run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import click

from services.cli.connect import pool
from services.cli.context import CliContext, pass_cli
from services.cli.failures import ExitCode
from services.cli.operator_token import acting_operator, operator_token
from services.cli.options import CONTEXT_SETTINGS, json_lines_option
from services.cli.output import print_fields, print_json, run
from services.cli.settings import build_settings
from services.core.retention import purge as purge_once
from services.core.settings import CommonSettings, RetentionSettings
from services.core.storage import open_storage


async def _purge_run(
    common: CommonSettings,
    retention: RetentionSettings,
    dry_run: bool,
    token: str,
    connect_timeout_s: float,
) -> dict[str, Any]:
    """One run, connecting afresh: between two runs of a schedule the database may have moved."""
    async with pool(common.postgres, connect_timeout_s) as opened:
        operator = await acting_operator(opened, token)
        report = await purge_once(
            opened,
            open_storage(common.storage),
            retention,
            datetime.now(UTC),
            dry_run=dry_run,
            operator_id=operator.operator_id,
        )
    return report.to_json()


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="Delete learner data past RETENTION_DAYS (files, masked values, learner fields of"
    " settled claims) and orphaned .part files; counts, codes and states stay. Needs an"
    " operator's token (ACHIEVEMENTS_OPERATOR_TOKEN); each run is audited as its operator's.",
)
@click.option("--dry-run", is_flag=True, help="count what would go, change nothing")
@click.option(
    "--every",
    "every_s",
    type=click.FloatRange(min=60),
    help="run again every this many seconds until stopped (the schedule of the compose file"
    " and the local stack; Kubernetes runs it as a CronJob instead); with --json one object"
    " per run, one line each",
)
@json_lines_option
@pass_cli
def purge(context: CliContext, dry_run: bool, every_s: float | None, as_json: bool) -> int:
    async def command() -> int:
        token = operator_token(context.settings)
        common = build_settings(CommonSettings)
        retention = build_settings(RetentionSettings)
        while True:
            report = await _purge_run(common, retention, dry_run, token, context.connect_timeout_s)
            print_json(report) if as_json else print_fields(report)
            if every_s is None:
                return ExitCode.OK
            await asyncio.sleep(every_s)  # SIGTERM ends the process between runs

    return run(command, as_json)
