"""The offline check on one core: rows/s on realistic files at 2% and 20% invalid rows, with
few quoted cells, with the quoted cells spreadsheets write, and with the shapes they do not.

    .venv/bin/python bench/bench_offline_check.py [--rows 1000000] [--shares 0.02,0.2]
        [--styles plain,quoted,mixed] [--valid] [--keep] [--file PATH ...]

For each quoting style and share of invalid rows it writes a realistic file
(`bench_files.write_mixed_file`: spaced and lower-case identifiers, `="…"` cells, both date
formats, notes with line breaks, about 3% warnings, duplicates; `plain` with few quoted cells,
`quoted` with half the rows quoted as spreadsheets quote, `mixed` adding a `"` in an unquoted
note and text after a closing quote; `--valid`: the all-valid file below instead), runs
`check_file` (inspection, record scan, both passes of the rules, in-file duplicates) and prints
rows per second by the wall clock and by CPU time (the fairer figure on a shared machine), the
share of rows whose record the bulk pass's reading left to the csv module and why (each reason
on its own, never folded into an average), the start of the report's SHA-256 (two versions of
the code gave the same answers when it is the same), and the process's peak RSS. One core:
Polars runs on one thread and the process pins itself to one CPU (as `taskset -c 0` would).

`--file` checks files kept by an earlier `--keep` run instead of writing new ones (their rows
counted from the report): the same bytes for two versions of the code, back to back, as in
`PYTHONPATH=<other worktree> .venv/bin/python bench/bench_offline_check.py --file ...`.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # One core: Polars must know before it is imported (its thread pool starts with it). Only
    # when run: the other benchmarks import this module's file writers.
    os.environ["POLARS_MAX_THREADS"] = "1"

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from services.core.scheme.check import check_file
from services.core.scheme.codes import UploadStatus
from services.core.scheme.columns import template_header_line
from services.core.scheme.reference import bundled_reference
from services.core.scheme.rules import uln_check_digit_ok

UPLOAD_DATE = date(2026, 11, 20)
_COURSES = ("SD-WAH-101", "SD-MSF-102", "SD-ABR-103", "SD-FAW-107", "CPCS-A09T")
_FORENAMES = ("Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Zoë", "Seán")
_SURNAMES = ("Smith", "Jones", "Taylor", "Brown", "O'Neill", "Williams", "Davies", "Evans")


def _valid_ulns() -> Iterator[str]:
    """Distinct ULNs with a valid check digit, in order."""
    stem = 100_000_000
    while True:
        for last in range(10):
            candidate = f"{stem}{last}"
            if uln_check_digit_ok(candidate):
                yield candidate
                break
        stem += 1


def write_valid_file(path: Path, rows: int) -> None:
    levy_numbers = [e.levy_number for e in bundled_reference().employers() if e.grant_eligible]
    ulns = _valid_ulns()
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(template_header_line() + "\r\n")
        for i in range(rows):
            achieved = UPLOAD_DATE - timedelta(days=i % 10)
            born = date(1960, 1, 1) + timedelta(days=(i * 37) % 14_000)
            out.write(
                f"REF-{i:07d},{_COURSES[i % len(_COURSES)]},{achieved:%d/%m/%Y},"
                f"{_FORENAMES[i % 8]},{_SURNAMES[i % 7]},{born:%d/%m/%Y},{next(ulns)},"
                f",,{levy_numbers[i % len(levy_numbers)]},Completed in full\r\n"
            )


def _pin_to_one_cpu() -> int | None:
    """Pins the process to the first CPU it may run on; None where that is not possible."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shares", default="0.02,0.2", help="shares of invalid rows")
    parser.add_argument("--styles", default="plain,quoted,mixed", help="quoting styles")
    parser.add_argument("--valid", action="store_true", help="the all-valid file instead")
    parser.add_argument("--keep", action="store_true", help="print and keep the generated files")
    parser.add_argument("--file", action="append", type=Path, help="check this kept file instead")
    args = parser.parse_args(argv)
    cpu = _pin_to_one_cpu()
    shares = [0.0] if args.valid else [float(share) for share in args.shares.split(",")]
    styles = ["valid"] if args.valid else args.styles.split(",")
    folder = Path(tempfile.mkdtemp(prefix="bench-offline-check-"))
    bundled_reference()  # loaded once per process, as in the CLI
    print(
        f"rows={args.rows:,} one core (cpu {cpu}, "
        f"POLARS_MAX_THREADS={os.environ['POLARS_MAX_THREADS']})"
    )
    print(
        f"{'file':>7} {'invalid':>8} {'size MB':>8} {'wall s':>7} {'cpu s':>7} {'rows/s':>9}"
        f" {'rows/cpu s':>11} {'invalid rows':>13} {'warned':>7} {'issues':>7} {'report':>12}"
        "  left the fast path (why)"
    )
    failed = False
    for path in args.file or []:
        failed |= _check_one(path, path.stem, None, None, keep=True)
    for style in [] if args.file else styles:
        for share in shares:
            failed |= _one_file(folder, style, share, args.rows, keep=args.keep)
    if not args.keep:
        folder.rmdir()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_rss={peak_rss_mb:.0f}MB (the whole run)")
    return 1 if failed else 0


def fallback_shares(fallbacks: Counter[str], rows: int) -> str:
    """The share of rows left to the csv module, each reason on its own."""
    if not fallbacks:
        return "0%"
    return ", ".join(f"{count / rows:.2%} {reason}" for reason, count in sorted(fallbacks.items()))


def _one_file(folder: Path, style: str, share: float, rows: int, *, keep: bool) -> bool:
    """Writes, checks and reports one file; True when its outcome is not the expected one."""
    # Imported here: bench_files imports this module's constants.
    from bench_files import write_mixed_file

    path = folder / f"{style}-{share:g}.csv"
    if style == "valid":
        write_valid_file(path, rows)
    else:
        write_mixed_file(path, rows, error_share=share, style=style)
    return _check_one(path, style, share, rows, keep=keep)


def _check_one(
    path: Path, style: str, share: float | None, rows: int | None, *, keep: bool
) -> bool:
    """Checks and reports one file (`rows` rows expected, None: any); True when its outcome is
    not the expected one. Removes the file unless `keep`."""
    size_mb = path.stat().st_size / 1e6
    fallbacks: Counter[str] = Counter()
    started, started_cpu = time.perf_counter(), time.process_time()
    report = check_file(path, today=UPLOAD_DATE, fallbacks=fallbacks)
    elapsed_s = time.perf_counter() - started
    cpu_s = time.process_time() - started_cpu
    failed = False
    if (rows is not None and report.rows_total != rows) or (
        style == "valid" and report.status is not UploadStatus.PASSED
    ):
        print(f"unexpected outcome: {report.status} {report.rows_total}", file=sys.stderr)
        failed = True
    rows = report.rows_total
    invalid = "-" if share is None else f"{share:.0%}"
    print(
        f"{style:>7} {invalid:>8} {size_mb:>8.1f} {elapsed_s:>7.2f} {cpu_s:>7.2f}"
        f" {rows / elapsed_s:>9,.0f} {rows / cpu_s:>11,.0f}"
        f" {report.rows_invalid:>13,} {report.rows_warned:>7,} {len(report.issues):>7,}"
        f" {hashlib.sha256(report.to_json().encode()).hexdigest()[:12]}"
        f"  {fallback_shares(fallbacks, rows)}"
    )
    if keep:
        print(path)
    else:
        path.unlink()
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
