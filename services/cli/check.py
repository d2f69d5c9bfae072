"""`achievements check FILE [--today YYYY-MM-DD] [--policy ...] [--json]`: the offline check of
the scheme's section 7, with the validator's code and the bundled reference data, no servers.

Exit status as section 7 says: 0 when the upload would be accepted (passed,
passed_with_warnings, partially_accepted), 1 when not (failed, rejected), 2 for a usage error,
including a file that cannot be opened.
"""

from __future__ import annotations

import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO
from zoneinfo import ZoneInfo

import click

from services.cli.failures import CommandFailed, ExitCode, usage
from services.cli.options import CONTEXT_SETTINGS
from services.cli.output import report_failure
from services.cli.settings import build_settings
from services.core.scheme.codes import Policy
from services.core.settings import SchemeLimits

if TYPE_CHECKING:
    from services.core.scheme.check import CheckReport

UK_TIME: Final = ZoneInfo("Europe/London")
_ISO_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def upload_date(text: str) -> date:
    """The `--today` value: exactly YYYY-MM-DD and a real date (`ValueError` else)."""
    # date.fromisoformat alone also takes 20261120 and 2026-W47-5; the contract says YYYY-MM-DD.
    if not _ISO_DATE_RE.fullmatch(text):
        raise ValueError("must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError("is not a real date") from None


def _today_option(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return upload_date(value)
    except ValueError as bad:
        raise click.BadParameter(f"{value!r} {bad}", ctx, param) from None


@click.command(
    context_settings=CONTEXT_SETTINGS,
    help="Validate a bulk achievements CSV file offline, with the validator's code and the"
    " bundled reference data (DUP_02 and FILE_07 need the database and are skipped). Exit 0"
    " when the upload would be accepted, 1 when not, 2 for a usage error.",
)
@click.argument("file", metavar="FILE", type=click.Path(path_type=Path))
@click.option(
    "--today",
    metavar="YYYY-MM-DD",
    callback=_today_option,
    help="the upload date (default: today in UK time)",
)
@click.option(
    "--policy",
    type=click.Choice([policy.value for policy in Policy]),
    default=Policy.ALL_OR_NOTHING.value,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="print the result as one JSON object")
def check(file: Path, today: date | None, policy: str, as_json: bool) -> int:
    # Imported here: the rules bring Polars, which no other command needs.
    from services.core.scheme.check import check_file

    try:
        # The same `SCHEME_*` limits as the gateway and the validator.
        limits = build_settings(SchemeLimits)
        if not file.is_file():
            raise usage(f"no such file: {file}")
        try:
            report = check_file(
                file,
                today=today or datetime.now(UK_TIME).date(),
                policy=Policy(policy),
                size_limit_bytes=limits.max_upload_bytes,
                row_limit=limits.max_rows,
            )
        except OSError as error:
            raise usage(f"cannot read {file}: {error.strerror}") from None
    except CommandFailed as failed:
        return report_failure(failed, as_json)
    if as_json:
        print(report.to_json())
    else:
        print_table(report, sys.stdout)
    return ExitCode(report.exit_code)


def print_table(report: CheckReport, out: TextIO) -> None:
    """A readable summary for a terminal; `--json` is the machine-readable form."""
    print(f"file:     {report.file_name}", file=out)
    print(f"encoding: {report.encoding.value if report.encoding else '-'}", file=out)
    print(f"status:   {report.status.value}", file=out)
    print(
        f"rows:     {report.rows_total} total, {report.rows_valid} valid,"
        f" {report.rows_invalid} invalid, {report.rows_warned} with warnings",
        file=out,
    )
    for file_error in report.file_errors:
        print(f"\n{file_error.code.value}: {file_error.message}", file=out)
    if not report.issues:
        return
    headings = ("Row", "Column", "Code", "Severity", "Message")
    rows = [
        (
            str(issue.row),
            issue.column.value if issue.column else "(row)",
            issue.code.value,
            issue.severity.value,
            issue.message,
        )
        for issue in report.issues
    ]
    widths = [max(len(row[i]) for row in [headings, *rows]) for i in range(4)]
    print(file=out)
    for row in [headings, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        print("  ".join([*cells, row[4]]), file=out)
