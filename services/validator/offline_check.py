"""`achievements check FILE [--today YYYY-MM-DD] [--policy ...] [--json]` (scheme section 7).

`main` takes the arguments after `check`. Exit status: 0 when the upload would be accepted
(passed, passed_with_warnings, partially_accepted), 1 when not (failed, rejected), 2 for a
usage error, including a file that cannot be opened.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import NoReturn, TextIO
from zoneinfo import ZoneInfo

from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import Policy
from services.core.settings import SchemeLimits

EXIT_USAGE = 2
UK_TIME = ZoneInfo("Europe/London")
_ISO_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class UsageError(Exception):
    """Bad arguments: reported with the usage line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _upload_date(text: str) -> date:
    # date.fromisoformat alone also takes 20261120 and 2026-W47-5; the contract says YYYY-MM-DD.
    if not _ISO_DATE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError("must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("is not a real date") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="achievements check",
        description="Validate a bulk achievements CSV file offline, with the validator's code"
        " and the bundled reference data (DUP_02 and FILE_07 need the database and are"
        " skipped).",
    )
    parser.add_argument("file", metavar="FILE", help="the CSV file to check")
    parser.add_argument(
        "--today",
        type=_upload_date,
        metavar="YYYY-MM-DD",
        help="the upload date (default: today in UK time)",
    )
    parser.add_argument(
        "--policy",
        choices=[policy.value for policy in Policy],
        default=Policy.ALL_OR_NOTHING.value,
        help="all_or_nothing (default) or valid_rows",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def main(argv: list[str], limits: SchemeLimits | None = None) -> int:
    """`limits` defaults to the `SCHEME_*` settings the gateway and the validator read."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"achievements check: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    path = Path(args.file)
    if not path.is_file():
        print(f"achievements check: error: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    today: date = args.today or datetime.now(UK_TIME).date()
    try:
        limits = SchemeLimits() if limits is None else limits
        report = check_file(
            path,
            today=today,
            policy=Policy(args.policy),
            size_limit_bytes=limits.max_upload_bytes,
            row_limit=limits.max_rows,
        )
    except OSError as error:
        print(f"achievements check: error: cannot read {path}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(report.to_json())
    else:
        print_table(report, sys.stdout)
    return report.exit_code


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
