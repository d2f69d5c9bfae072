"""`achievements reconcile`: our claim records (PostgreSQL) against the grant system's
(`GET /v1/claims?upload_id=`), every difference reported; `--repair` re-queues what is safe to
resend. A repair is an operator command: it runs with an operator's token
(ACHIEVEMENTS_OPERATOR_TOKEN) and each upload it went over is audited as that operator's action,
in the transaction of the re-queueing."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import asyncpg
import click

from services.cli.connect import database
from services.cli.context import CliContext, pass_cli
from services.cli.failures import ExitCode, usage
from services.cli.operator_token import acting_operator, operator_token
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, report_failure, run
from services.cli.settings import build_settings
from services.core import audit, grant_states
from services.core.states import ClaimState

# Our claim states in which the grant system should hold nothing.
_UNSENT_HERE: Final = frozenset({"pending", "withdrawn", "skipped"})
_OUR_CLAIMS: Final = """
SELECT c.claim_id, c.upload_id, c.row_number, c.state, c.grant_amount_pence, a.levy_number
FROM grant_claims c JOIN achievements a USING (achievement_id)
WHERE c.upload_id = $1
"""
_UPLOADS_WITH_CLAIMS_SINCE: Final = """
SELECT DISTINCT upload_id FROM grant_claims WHERE created_at >= $1 ORDER BY upload_id
"""


# Only a pending claim no bridge holds is moved: the next lease sends it, with its own key, and
# the grant system answers with what it stored.
class Difference(enum.StrEnum):
    """What `reconcile` reports, per claim."""

    # They hold a claim we have not recorded as sent (pending, withdrawn or skipped here).
    HELD_THERE_UNSENT_HERE = "held_there_unsent_here"
    # We recorded it accepted; they have no such claim.
    ACCEPTED_HERE_MISSING_THERE = "accepted_here_missing_there"
    # We recorded a refusal; they hold it accepted.
    REFUSED_HERE_HELD_THERE = "refused_here_held_there"
    # They hold a claim id of this upload that we never created.
    UNKNOWN_HERE = "unknown_here"
    AMOUNT_DIFFERS = "amount_differs"
    LEVY_NUMBER_DIFFERS = "levy_number_differs"


def _levy(value: object) -> str | None:
    return str(value).strip().upper() if value else None


def compare_claims(
    ours: Iterable[dict[str, Any]], theirs: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every difference between our claim records and the grant system's for one upload.

    `ours`: `claim_id`, `row_number`, `state`, `grant_amount_pence`, `levy_number`; `theirs`:
    the grant API's stored claims (`claim_id`, `row_number`, `status`, `grant_amount_pence`,
    `levy_registration_number`)."""
    mine = {str(claim["claim_id"]): claim for claim in ours}
    held = {str(claim["claim_id"]): claim for claim in theirs}
    found: list[dict[str, Any]] = []

    def report(kind: Difference, claim_id: str) -> None:
        here, there = mine.get(claim_id), held.get(claim_id)
        found.append(
            {
                "kind": kind.value,
                "claim_id": claim_id,
                "row_number": (here or there or {}).get("row_number"),
                "ours": None
                if here is None
                else {
                    "state": here["state"],
                    "grant_amount_pence": here["grant_amount_pence"],
                    "levy_number": here["levy_number"],
                },
                "theirs": None
                if there is None
                else {
                    "status": there.get("status"),
                    "grant_amount_pence": there.get("grant_amount_pence"),
                    "levy_number": there.get("levy_registration_number"),
                },
            }
        )

    for claim_id in sorted(mine.keys() | held.keys()):
        here, there = mine.get(claim_id), held.get(claim_id)
        if here is None:
            report(Difference.UNKNOWN_HERE, claim_id)
        elif there is None:
            if here["state"] == "accepted":
                report(Difference.ACCEPTED_HERE_MISSING_THERE, claim_id)
        elif here["state"] in _UNSENT_HERE:
            report(Difference.HELD_THERE_UNSENT_HERE, claim_id)
        elif here["state"] == "refused" and there.get("status") == "accepted":
            report(Difference.REFUSED_HERE_HELD_THERE, claim_id)
        else:
            if here["state"] == "accepted" and here["grant_amount_pence"] != there.get(
                "grant_amount_pence"
            ):
                report(Difference.AMOUNT_DIFFERS, claim_id)
            if _levy(here["levy_number"]) != _levy(there.get("levy_registration_number")):
                report(Difference.LEVY_NUMBER_DIFFERS, claim_id)
    return found


async def _their_claims(
    session: aiohttp.ClientSession, base_url: str, upload_id: uuid.UUID
) -> list[dict[str, Any]]:
    from services.upload_client import UploadError

    async with session.get(f"{base_url}/v1/claims", params={"upload_id": str(upload_id)}) as got:
        if got.status != 200:
            raise UploadError(got.status, f"GRANT_API_{got.status}", "the grant API refused")
        claims: list[dict[str, Any]] = (await got.json())["claims"]
        return claims


async def _differences(
    connection: asyncpg.Connection,
    session: aiohttp.ClientSession,
    base_url: str,
    wanted: list[uuid.UUID],
) -> list[dict[str, Any]]:
    differences: list[dict[str, Any]] = []
    for upload in wanted:
        ours = [dict(r) for r in await connection.fetch(_OUR_CLAIMS, upload)]
        theirs = await _their_claims(session, base_url, upload)
        for difference in compare_claims(ours, theirs):
            differences.append({"upload_id": str(upload), **difference})
    return differences


async def _requeue_safe(
    connection: asyncpg.Connection,
    differences: list[dict[str, Any]],
    checked: list[uuid.UUID],
    operator_id: uuid.UUID,
) -> list[str]:
    """Re-queues the safe claims, and audits the repair of each upload checked (one that
    needed nothing too: the operator looked at it with the power to change it)."""
    safe = [
        d["claim_id"]
        for d in differences
        if d["kind"] == Difference.HELD_THERE_UNSENT_HERE
        and d["ours"]["state"] == ClaimState.PENDING
    ]
    async with connection.transaction():
        requeued = await grant_states.requeue_pending_claims(connection, safe) if safe else []
        now = datetime.now(UTC)
        for upload_id in checked:
            await audit.record_operator_action(
                connection,
                audit.AuditKind.CLAIMS_REPAIRED,
                operator_id,
                audit.Target(upload_id=upload_id),
                now,
            )
    return sorted(str(claim_id) for claim_id in requeued)


def _print_report(
    checked: int, differences: list[dict[str, Any]], repaired: list[str], repair: bool
) -> None:
    for d in differences:
        print(
            f"{d['upload_id']} row {d['row_number']} claim {d['claim_id']}: {d['kind']}"
            f" (ours {d['ours']}, theirs {d['theirs']})"
        )
    print(
        f"{checked} uploads checked, {len(differences)} differences"
        + (f", {len(repaired)} claims re-queued" if repair else "")
    )


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="Compare our claim records with the grant system's for one upload or every upload"
    " with claims since DATE, and report every difference (exit 7 when there is any);"
    " --repair re-queues the pending claims the grant system already holds (a resend carries"
    " the same key; it needs an operator's token in ACHIEVEMENTS_OPERATOR_TOKEN and is audited).",
)
@click.argument("upload_id", required=False)
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="YYYY-MM-DD (UTC)")
@click.option("--repair", is_flag=True, help="re-queue what is safe to resend")
@json_option
@pass_cli
def reconcile(
    context: CliContext,
    upload_id: str | None,
    since: datetime | None,
    repair: bool,
    as_json: bool,
) -> int:
    if (upload_id is None) == (since is None):
        return report_failure(usage("give UPLOAD_ID or --since DATE"), as_json)

    async def command() -> int:
        from services.grant_bridge.settings import GrantBridgeSettings

        settings = build_settings(GrantBridgeSettings)
        try:
            wanted = [uuid.UUID(upload_id)] if upload_id else []
        except ValueError:
            raise usage("UPLOAD_ID is not a UUID") from None
        repaired: list[str] = []
        token = operator_token(context.settings) if repair else ""
        postgres = settings.common.postgres
        async with database(postgres, context.connect_timeout_s) as connection:
            by = await acting_operator(connection, token) if repair else None
            if since is not None:
                rows = await connection.fetch(_UPLOADS_WITH_CLAIMS_SINCE, since.replace(tzinfo=UTC))
                wanted = [row["upload_id"] for row in rows]
            headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
            timeout = aiohttp.ClientTimeout(
                total=settings.client_timeout_s * 3, sock_connect=context.connect_timeout_s
            )
            base_url = settings.grant_api_url.rstrip("/")
            async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
                differences = await _differences(connection, session, base_url, wanted)
            if by is not None:
                repaired = await _requeue_safe(connection, differences, wanted, by.operator_id)
        if as_json:
            print_json(
                {"uploads_checked": len(wanted), "differences": differences, "requeued": repaired}
            )
        else:
            _print_report(len(wanted), differences, repaired, repair)
        return ExitCode.DIFFERENCES if differences else ExitCode.OK

    return run(command, as_json)
