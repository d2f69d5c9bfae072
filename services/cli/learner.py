"""`achievements learner find|export|erase --ato ATO`: one learner's records within one ATO
(docs/retention.md).

The learner's identifier is never an argument (a command line is visible to every user of the
machine and kept in shell history): it comes from exactly one of ACHIEVEMENTS_LEARNER_ULN,
ACHIEVEMENTS_LEARNER_NI and ACHIEVEMENTS_LEARNER_CITB_ID, or, with `--stdin KIND`, from the
first line of standard input. Messages never repeat it.

Operator commands: each runs with an operator's token (ACHIEVEMENTS_OPERATOR_TOKEN) and is
audited as that operator's, the target being the request's own id (`request_id` in the output),
never the identifier.
"""

from __future__ import annotations

import getpass
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import click
from pydantic import SecretStr

from services.cli.connect import pool
from services.cli.context import CliContext, pass_cli
from services.cli.failures import usage
from services.cli.operator_token import acting_operator, operator_token
from services.cli.options import CONTEXT_SETTINGS
from services.cli.output import print_json, run
from services.cli.settings import CliSettings, build_settings
from services.core.events import Topics
from services.core.learner_requests import (
    IdentifierKind,
    Learner,
    Requester,
    erase,
    export,
    find,
)
from services.core.settings import CommonSettings, RetentionSettings
from services.core.storage import open_storage

# `--stdin KIND` and the variable of each kind.
KINDS: Final = {
    "uln": IdentifierKind.ULN,
    "ni": IdentifierKind.NI_NUMBER,
    "citb-id": IdentifierKind.CITB_ID,
}
VARIABLES: Final = {
    IdentifierKind.ULN: "ACHIEVEMENTS_LEARNER_ULN",
    IdentifierKind.NI_NUMBER: "ACHIEVEMENTS_LEARNER_NI",
    IdentifierKind.CITB_ID: "ACHIEVEMENTS_LEARNER_CITB_ID",
}
ONE_IDENTIFIER: Final = (
    "give exactly one identifier: one of ACHIEVEMENTS_LEARNER_ULN, ACHIEVEMENTS_LEARNER_NI and"
    " ACHIEVEMENTS_LEARNER_CITB_ID, or --stdin uln|ni|citb-id with it on standard input"
)


def _from_environment(settings: CliSettings) -> list[tuple[IdentifierKind, SecretStr]]:
    given = (
        (IdentifierKind.ULN, settings.learner_uln),
        (IdentifierKind.NI_NUMBER, settings.learner_ni),
        (IdentifierKind.CITB_ID, settings.learner_citb_id),
    )
    return [(kind, value) for kind, value in given if value is not None]


def _read_identifier(kind: str) -> str:
    """The first line of standard input; on a terminal asked for without echo, so that the
    identifier is not left on the screen either."""
    if sys.stdin.isatty():
        return getpass.getpass(f"learner's {kind}: ")
    return sys.stdin.readline().rstrip("\r\n")


def learner_of(ato_id: str, settings: CliSettings, stdin_kind: str | None) -> Learner:
    """The learner the request names: exactly one identifier, from the environment or (with
    `stdin_kind`) standard input; `CommandFailed` (usage) otherwise."""
    given = _from_environment(settings)
    if stdin_kind is not None:
        given.append((KINDS[stdin_kind], SecretStr(_read_identifier(stdin_kind))))
    if len(given) != 1:
        raise usage(ONE_IDENTIFIER)
    kind, value = given[0]
    try:
        return Learner.of(ato_id, kind, value.get_secret_value())
    except ValueError as bad:  # the message names the kind, never the value
        raise usage(str(bad)) from None


async def _request(
    action: str,
    learner: Learner,
    token: str,
    common: CommonSettings,
    retention: RetentionSettings,
    connect_timeout_s: float,
) -> dict[str, Any]:
    """The request's result, with the `request_id` its audit rows name."""
    now = datetime.now(UTC)
    async with pool(common.postgres, connect_timeout_s) as opened, opened.acquire() as connection:
        operator = await acting_operator(connection, token)
        by = Requester(operator.operator_id, uuid.uuid4())
        if action == "find":
            result = await find(connection, learner, now, by)
        elif action == "export":
            result = await export(connection, learner, now, by)
        else:
            result = await erase(
                connection,
                open_storage(common.storage),
                Topics(common.kafka.topic_prefix),
                retention,
                learner,
                now,
                by,
            )
    return {"request_id": str(by.request_id), **result}


@click.group(
    context_settings=CONTEXT_SETTINGS,
    help="One learner's records within one ATO: find, export, erase. The identifier comes from"
    " ACHIEVEMENTS_LEARNER_ULN, ACHIEVEMENTS_LEARNER_NI or ACHIEVEMENTS_LEARNER_CITB_ID, or"
    " from standard input with --stdin KIND; never an argument. Needs an operator's token"
    " (ACHIEVEMENTS_OPERATOR_TOKEN); the audit trail names the request by its request_id.",
)
def learner() -> None:
    pass


def _learner_command(action: str, help_text: str) -> None:
    @learner.command(name=action, context_settings=CONTEXT_SETTINGS, help=help_text)
    @click.option("--ato", "ato_id", required=True, help="the ATO whose uploads are searched")
    @click.option(
        "--stdin",
        "stdin_kind",
        type=click.Choice(list(KINDS)),
        help="read the identifier of this kind from the first line of standard input",
    )
    # Removed: an identifier on the command line. Still parsed (hidden) only to say so.
    @click.option("--uln", "removed_uln", hidden=True)
    @click.option("--ni", "removed_ni", hidden=True)
    @click.option("--citb-id", "removed_citb_id", hidden=True)
    # The result is always JSON (a record, not a table); the flag makes a failure JSON too.
    @click.option(
        "--json", "as_json", is_flag=True, help="failures as one JSON object too (results always)"
    )
    @pass_cli
    def command_of_action(
        context: CliContext,
        ato_id: str,
        stdin_kind: str | None,
        removed_uln: str | None,
        removed_ni: str | None,
        removed_citb_id: str | None,
        as_json: bool,
    ) -> int:
        async def command() -> int:
            if (removed_uln, removed_ni, removed_citb_id) != (None, None, None):
                raise usage(
                    "--uln, --ni and --citb-id were removed: an identifier on the command line is"
                    " seen by every user of the machine; " + ONE_IDENTIFIER
                )
            wanted = learner_of(ato_id, context.settings, stdin_kind)
            found = await _request(
                action,
                wanted,
                operator_token(context.settings),
                build_settings(CommonSettings),
                build_settings(RetentionSettings),
                context.connect_timeout_s,
            )
            print_json(found)
            return 0

        return run(command, as_json)


_learner_command("find", "The learner's achievements and rows across the ATO's uploads.")
_learner_command("export", "Everything held about the learner, as one JSON object.")
_learner_command(
    "erase",
    "Erase the learner's personal data: claims still in their window are withdrawn, the rest"
    " erased now or as soon as their claim is answered.",
)
