"""`achievements operator create NAME` and `operator revoke NAME`: who may run the operator
commands (services/core/operators.py). A new token is shown once; only its hash is stored.

The first operator is created on the database's credentials alone (the bootstrap: no operator
exists yet, revoked ones included); every later create and every revoke needs an operator's
token in ACHIEVEMENTS_OPERATOR_TOKEN, and is audited as that operator's action.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from services.cli.connect import database
from services.cli.context import CliContext, pass_cli
from services.cli.failures import CommandFailed, ExitCode, usage
from services.cli.operator_token import acting_operator, no_operator_token, operator_session
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, run
from services.cli.settings import build_settings
from services.core import operators
from services.core.settings import CommonSettings


@click.group(
    context_settings=CONTEXT_SETTINGS,
    help="Who may run the operator commands: create (the token shown once) and revoke.",
)
def operator() -> None:
    pass


@operator.command(
    help="A new operator NAME and its token (shown once). With no operator yet it needs only"
    " the database's credentials; after that, an operator's token in"
    " ACHIEVEMENTS_OPERATOR_TOKEN."
)
@click.argument("name")
@json_option
@pass_cli
def create(context: CliContext, name: str, as_json: bool) -> int:
    async def command() -> int:
        try:
            wanted = operators.checked_name(name)
        except operators.InvalidOperatorName as invalid:
            raise usage(str(invalid)) from None
        token = context.settings.operator_token.get_secret_value().strip()
        common = build_settings(CommonSettings)
        async with database(common.postgres, context.connect_timeout_s) as connection:
            by = await acting_operator(connection, token) if token else None
            try:
                created = await operators.create(connection, wanted, by, datetime.now(UTC))
            except operators.BootstrapClosed:
                raise no_operator_token("an operator exists: ") from None
            except operators.OperatorNameTaken:
                raise CommandFailed(
                    ExitCode.REFUSED, "OPERATOR_EXISTS", "an operator of that name exists"
                ) from None
        if as_json:
            print_json({"operator": created.operator.name, "token": created.token})
        else:
            print(f"operator {created.operator.name} created; token (shown once): {created.token}")
        return ExitCode.OK

    return run(command, as_json)


@operator.command(
    help="End operator NAME's token at once. Exit 1 when no such active operator; the last"
    " active operator cannot be revoked."
)
@click.argument("name")
@json_option
@pass_cli
def revoke(context: CliContext, name: str, as_json: bool) -> int:
    async def command() -> int:
        async with operator_session(context) as session:
            connection, by = session.connection, session.by
            try:
                revoked = await operators.revoke(connection, name, by, datetime.now(UTC))
            except operators.LastOperator:
                raise CommandFailed(
                    ExitCode.REFUSED,
                    "LAST_OPERATOR",
                    "the last active operator cannot be revoked: create another first",
                ) from None
        if as_json:
            print_json({"operator": name, "revoked": revoked})
        else:
            print("revoked" if revoked else "no such active operator")
        return ExitCode.OK if revoked else ExitCode.NOTHING_ACCEPTED

    return run(command, as_json)
