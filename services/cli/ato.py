"""`achievements ato create NAME` and `ato key create|revoke`: training organisations and their
API keys. A new key is shown once; only its hash is stored. Operator commands: each runs with
an operator's token and is audited as that operator's action, in the transaction of the change.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import click

from services.cli.context import CliContext, pass_cli
from services.cli.failures import CommandFailed, ExitCode, usage
from services.cli.operator_token import operator_session
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, run
from services.core import audit
from services.upload_gateway.keys import NewKey, create_ato, create_key, revoke_key

POLICIES = ("all_or_nothing", "valid_rows")


@click.group(context_settings=CONTEXT_SETTINGS, help="Training organisations and API keys.")
def ato() -> None:
    pass


def _print_new_key(key: NewKey, as_json: bool, created: str) -> None:
    if as_json:
        print_json({"ato_id": key.ato_id, "api_key": key.api_key, "key_id": str(key.key_id)})
    else:
        print(f"{created}; API key {key.key_id} (shown once): {key.api_key}")


@ato.command(help="A new ATO and its first API key (shown once).")
@click.argument("name")
@click.option("--policy", type=click.Choice(POLICIES), default="all_or_nothing", show_default=True)
@json_option
@pass_cli
def create(context: CliContext, name: str, policy: str, as_json: bool) -> int:
    async def command() -> int:
        async with operator_session(context) as session:
            connection, by = session.connection, session.by
            async with connection.transaction():
                key = await create_ato(connection, name, policy)
                now = datetime.now(UTC)
                await audit.record_operator_action(
                    connection,
                    audit.AuditKind.ATO_CREATED,
                    by.operator_id,
                    audit.Target(ato_id=key.ato_id),
                    now,
                )
                await audit.record_operator_action(
                    connection,
                    audit.AuditKind.KEY_CREATED,
                    by.operator_id,
                    audit.Target(ato_id=key.ato_id, key_id=key.key_id),
                    now,
                )
        _print_new_key(key, as_json, f"ATO {key.ato_id} created")
        return ExitCode.OK

    return run(command, as_json)


@ato.group(context_settings=CONTEXT_SETTINGS, help="An ATO's API keys.")
def key() -> None:
    pass


@key.command(name="create", help="Another API key for ATO_ID (shown once).")
@click.argument("ato_id")
@json_option
@pass_cli
def key_create(context: CliContext, ato_id: str, as_json: bool) -> int:
    async def command() -> int:
        async with operator_session(context) as session:
            connection, by = session.connection, session.by
            try:
                async with connection.transaction():
                    new_key = await create_key(connection, ato_id)
                    await audit.record_operator_action(
                        connection,
                        audit.AuditKind.KEY_CREATED,
                        by.operator_id,
                        audit.Target(ato_id=ato_id, key_id=new_key.key_id),
                        datetime.now(UTC),
                    )
            except asyncpg.ForeignKeyViolationError:
                raise CommandFailed(ExitCode.REFUSED, "NO_SUCH_ATO", "no such ATO") from None
        _print_new_key(new_key, as_json, f"new key for {new_key.ato_id}")
        return ExitCode.OK

    return run(command, as_json)


@key.command(
    name="revoke",
    help="End an API key at once (its next request is 401). Exit 1 when no such active key.",
)
@click.argument("key_id")
@json_option
@pass_cli
def key_revoke(context: CliContext, key_id: str, as_json: bool) -> int:
    async def command() -> int:
        try:
            wanted = uuid.UUID(key_id)
        except ValueError:
            raise usage("KEY_ID is not a UUID") from None
        async with operator_session(context) as session:
            connection, by = session.connection, session.by
            async with connection.transaction():
                revoked = await revoke_key(connection, wanted)
                if revoked:
                    await audit.record_operator_action(
                        connection,
                        audit.AuditKind.KEY_REVOKED,
                        by.operator_id,
                        audit.Target(key_id=wanted),
                        datetime.now(UTC),
                    )
        if as_json:
            print_json({"key_id": str(wanted), "revoked": revoked})
        else:
            print("revoked" if revoked else "no such active key")
        return ExitCode.OK if revoked else ExitCode.NOTHING_ACCEPTED

    return run(command, as_json)
