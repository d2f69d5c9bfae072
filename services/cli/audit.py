"""`achievements audit [--since DATE] [--operator NAME]`: the operators' actions from the audit
trail, oldest first, each with its operator, action and target (never a learner's identifier:
a learner's request is named by its internal id). Reading it is an operator command too."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from services.cli.context import CliContext, pass_cli
from services.cli.failures import ExitCode
from services.cli.operator_token import operator_session
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, run
from services.core import audit as trail


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="The operators' actions, oldest first: when, which operator, what, on what.",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="YYYY-MM-DD[THH:MM:SS] (UTC): only actions from then on",
)
@click.option("--operator", "operator_name", metavar="NAME", help="only this operator's actions")
@json_option
@pass_cli
def audit(
    context: CliContext, since: datetime | None, operator_name: str | None, as_json: bool
) -> int:
    async def command() -> int:
        async with operator_session(context) as session:
            events = await trail.operator_actions(
                session.connection, since.replace(tzinfo=UTC) if since else None, operator_name
            )
        if as_json:
            print_json({"events": events})
        else:
            for event in events:
                print(f"{event['at']} {event['operator']} {event['action']} {event['target']}")
        return ExitCode.OK

    return run(command, as_json)
