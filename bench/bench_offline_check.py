"""Throughput and peak memory of the offline check on a generated all-valid file.

    .venv/bin/python bench/bench_offline_check.py [--rows 1000000] [--keep]

Prints rows per second for `check_file` (inspection, parsing, every rule, in-file duplicates)
on one core, by the wall clock and by CPU time (the fairer figure on a shared machine), and
the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--keep", action="store_true", help="print and keep the generated file")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-offline-check-"))
    path = folder / f"valid-{args.rows}.csv"
    write_valid_file(path, args.rows)
    size_mb = path.stat().st_size / 1e6
    bundled_reference()  # loaded once per process, as in the CLI
    started, started_cpu = time.perf_counter(), time.process_time()
    report = check_file(path, today=UPLOAD_DATE)
    elapsed_s = time.perf_counter() - started
    cpu_s = time.process_time() - started_cpu
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if report.status is not UploadStatus.PASSED or report.rows_total != args.rows:
        print(f"unexpected outcome: {report.status} {report.rows_total}", file=sys.stderr)
        return 1
    print(
        f"rows={args.rows} size={size_mb:.1f}MB elapsed={elapsed_s:.2f}s cpu={cpu_s:.2f}s"
        f" rows_per_s={args.rows / elapsed_s:,.0f} rows_per_cpu_s={args.rows / cpu_s:,.0f}"
        f" peak_rss={peak_rss_mb:.0f}MB"
    )
    if args.keep:
        print(path)
    else:
        path.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
