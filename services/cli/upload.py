"""The ATO's commands: `upload FILE`, and on one upload `status`, `errors [--csv]`, `withdraw`.

They go through the gateway with an ATO's API key (`api_key.read_api_key`), never to
PostgreSQL or Kafka.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any, Final

import click

from services import upload_client
from services.cli.api_key import API_KEY_VARIABLE, read_api_key
from services.cli.context import CliContext, pass_cli
from services.cli.failures import ExitCode, usage
from services.cli.options import CONTEXT_SETTINGS, gateway_option, json_option
from services.cli.output import print_fields, print_json, run
from services.cli.progress import UploadProgress

# Final statuses in which no row was accepted (services.core.states: FINAL minus ACCEPTING).
ACCEPTING_NONE: Final = frozenset({"rejected", "failed", "errored"})
POLICIES: Final = ("all_or_nothing", "valid_rows")


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help=f"Upload a CSV through the gateway, with the ATO API key from {API_KEY_VARIABLE} (or"
    " asked for on a terminal). With --wait, exit 1 when the upload accepted no row.",
)
@click.argument("file", type=click.Path(path_type=Path))
# Removed: the key is read from ACHIEVEMENTS_API_KEY or asked for. Still parsed (hidden) only to
# explain that, rather than a bare "no such option".
@click.option("--api-key", "removed_api_key", hidden=True)
@gateway_option
@click.option("--policy", type=click.Choice(POLICIES), help="the ATO's default when not given")
@click.option("--wait", is_flag=True, help="wait for the final status")
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True, help="seconds"
)
@json_option
@pass_cli
def upload(
    context: CliContext,
    file: Path,
    removed_api_key: str | None,
    gateway: str,
    policy: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> int:
    async def command() -> int:
        if removed_api_key is not None:
            raise usage(f"--api-key was removed: set {API_KEY_VARIABLE} instead (or be asked)")
        api_key = read_api_key(context.settings)
        with UploadProgress.for_output(enabled=not as_json, wait=wait) as progress:
            progress.start_bytes(file)
            result = await upload_client.upload_file(
                file,
                api_key=api_key,
                gateway_url=gateway,
                policy=policy,
                wait=wait,
                timeout_s=timeout,
                on_bytes=progress.bytes_sent,
                on_upload=progress.upload_seen,
            )
        print_json(result) if as_json else print_fields(result)
        if wait and result.get("status") in ACCEPTING_NONE:
            return ExitCode.NOTHING_ACCEPTED
        return ExitCode.OK

    return run(command, as_json)


def _gateway_client(context: CliContext, gateway: str) -> upload_client.GatewayClient:
    return upload_client.GatewayClient(gateway, read_api_key(context.settings))


@click.command(
    context_settings=CONTEXT_SETTINGS, help="An upload's status and counts (with an ATO's key)."
)
@click.argument("upload_id")
@gateway_option
@json_option
@pass_cli
def status(context: CliContext, upload_id: str, gateway: str, as_json: bool) -> int:
    async def command() -> int:
        found = await _gateway_client(context, gateway).upload(upload_id)
        print_json(found) if as_json else print_fields(found)
        return ExitCode.OK

    return run(command, as_json)


def _print_issues(report: dict[str, Any]) -> None:
    print(
        f"{report['issues_total']} issues"
        + (f" ({report['issues_stored']} stored)" if report.get("truncated") else "")
    )
    for issue in report["issues"]:
        where = f"row {issue.get('row')}" if issue.get("row") is not None else "file"
        column = f" {issue['column']}" if issue.get("column") else ""
        print(f"{where}{column}: {issue.get('code')} {issue.get('message', '')}")


async def _csv_report_as_json_lines(client: upload_client.GatewayClient, upload_id: str) -> None:
    """The CSV report, one JSON object per row keyed by its header. Read whole first: a
    report holds at most the stored issues, and a CSV cell may span lines."""
    received = io.BytesIO()
    await client.errors_csv(upload_id, received.write)
    text = received.getvalue().decode("utf-8-sig")
    for row in csv.DictReader(io.StringIO(text, newline="")):
        print_json(row)


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="An upload's row issues: readable, JSON (all pages), or with --csv the CSV report"
    " (with --csv --json: one JSON object per report row).",
)
@click.argument("upload_id")
@click.option("--csv", "as_csv", is_flag=True, help="the error report as CSV on stdout")
@gateway_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="one JSON object (with --csv: one per report row, JSON lines), failures too",
)
@pass_cli
def errors(context: CliContext, upload_id: str, as_csv: bool, gateway: str, as_json: bool) -> int:
    async def command() -> int:
        client = _gateway_client(context, gateway)
        if as_csv and as_json:
            await _csv_report_as_json_lines(client, upload_id)
        elif as_csv:
            out = sys.stdout.buffer
            await client.errors_csv(upload_id, out.write)
            out.flush()
        else:
            report = await client.errors(upload_id)
            print_json(report) if as_json else _print_issues(report)
        return ExitCode.OK

    return run(command, as_json)


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="Withdraw an upload's achievements still in their amendment window.",
)
@click.argument("upload_id")
@gateway_option
@json_option
@pass_cli
def withdraw(context: CliContext, upload_id: str, gateway: str, as_json: bool) -> int:
    async def command() -> int:
        withdrawn = await _gateway_client(context, gateway).withdraw(upload_id)
        print_json(withdrawn) if as_json else print_fields(withdrawn)
        return ExitCode.OK

    return run(command, as_json)
