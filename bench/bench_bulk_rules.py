"""The offline check with the bulk pass against the row validator alone, on one core.

    .venv/bin/python bench/bench_bulk_rules.py [--rows 1000000] [--shares 0,0.02,0.2]
        [--styles plain,quoted,mixed]

For each quoting style and share of invalid rows it writes a realistic file
(`bench_files.write_mixed_file`: spaced and lower-case identifiers, `="…"` cells, both date
formats, notes with line breaks, about 3% warnings, duplicates; `plain`, `quoted` or `mixed`
quoting, see there), runs `check_file` twice, with the bulk pass (what the check does) and with
the row validator alone, checks that both give the same report, and prints rows per second by
the wall clock and by CPU time (the fairer figure on a shared machine), and the share of rows
whose record the bulk pass's reading left to the csv module, by reason.
"""

from __future__ import annotations

import os

# One core: Polars must know before it is imported (its thread pool starts with it).
os.environ["POLARS_MAX_THREADS"] = "1"

import argparse
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_files import write_mixed_file
from bench_offline_check import UPLOAD_DATE, fallback_shares

from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.reference import Course, Employer, bundled_reference


class _LookupsOnly:
    """The bundled reference data behind lookups alone: a reference that cannot list its
    catalogue and register gets the row validator only (what the check did before)."""

    def course(self, code: str) -> Course | None:
        return bundled_reference().course(code)

    def employer(self, levy_number: str) -> Employer | None:
        return bundled_reference().employer(levy_number)


def _timed(
    path: Path, *, bulk: bool, fallbacks: Counter[str] | None = None
) -> tuple[CheckReport, float, float]:
    reference = bundled_reference() if bulk else _LookupsOnly()
    started, started_cpu = time.perf_counter(), time.process_time()
    report = check_file(path, today=UPLOAD_DATE, reference=reference, fallbacks=fallbacks)
    return report, time.perf_counter() - started, time.process_time() - started_cpu


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shares", default="0,0.02,0.2", help="shares of invalid rows")
    parser.add_argument("--styles", default="plain,quoted,mixed", help="quoting styles")
    args = parser.parse_args(argv)
    shares = [float(share) for share in args.shares.split(",")]
    files = [(style, share) for style in args.styles.split(",") for share in shares]
    bundled_reference()  # loaded once per process, as in the CLI
    folder = Path(tempfile.mkdtemp(prefix="bench-bulk-rules-"))
    print(f"rows={args.rows:,} one core (POLARS_MAX_THREADS={os.environ['POLARS_MAX_THREADS']})")
    print(
        f"{'file':>7} {'invalid':>8} {'bulk rows/s':>12} {'(cpu)':>10}"
        f" {'row validator rows/s':>21} {'(cpu)':>10} {'speed-up (cpu)':>15} {'same report':>12}"
        "  left the fast path (why)"
    )
    failed = False
    for style, share in files:
        path = folder / f"{style}-{share:g}.csv"
        write_mixed_file(path, args.rows, error_share=share, style=style)
        fallbacks: Counter[str] = Counter()
        report, wall, cpu = _timed(path, bulk=True, fallbacks=fallbacks)
        exact_report, exact_wall, exact_cpu = _timed(path, bulk=False)
        same = report.to_json() == exact_report.to_json()
        failed |= not same or report.rows_total != args.rows
        rows = report.rows_total
        print(
            f"{style:>7} {share:>8.0%} {rows / wall:>12,.0f} {rows / cpu:>10,.0f}"
            f" {rows / exact_wall:>21,.0f} {rows / exact_cpu:>10,.0f}"
            f" {exact_cpu / cpu:>14.1f}x {'yes' if same else 'NO':>12}"
            f"  {fallback_shares(fallbacks, rows)}"
        )
        path.unlink()
    folder.rmdir()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_rss={peak_rss_mb:.0f}MB (the whole run)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
