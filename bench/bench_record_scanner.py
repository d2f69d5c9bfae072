"""Throughput of the record scanner (`scan_records`) on the files it must take at byte speed.

    .venv/bin/python bench/bench_record_scanner.py [--rows 1000000] [--mb 200] [--runs 3]

Files, written to a temporary folder and removed afterwards:

- plain: the all-valid file of bench_offline_check.py (quote-free, CR LF);
- quoted: the same rows with every Notes cell quoted and holding a line break;
- newlines: `--mb` MiB of `\\n` (one header record, then only empty records);
- empty rows: `--mb` MiB of `,,,,,,,,,,\\r\\n` (what a spreadsheet saves for formatted empty rows).

For each it prints MB/s by the wall clock and by CPU time (the fairer figure on a shared
machine; best of `--runs`), the records, chunks and blank records left out of the plan, and the
peak memory the scan allocates (tracemalloc, in a separate untimed run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from bench_offline_check import write_valid_file

from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import ScanResult, scan_records

_WRITE_BLOCK = 8 * 1024 * 1024


def write_quoted_file(plain: Path, path: Path) -> None:
    """The plain file with each Notes cell (the last) quoted and given a second line."""
    with plain.open("rb") as source, path.open("wb") as out:
        out.write(source.readline())
        for line in source:
            row, _, notes = line.rstrip(b"\r\n").rpartition(b",")
            out.write(row + b',"' + notes + b'\r\nsecond line"\r\n')


def write_repeated(path: Path, unit: bytes, size_bytes: int) -> None:
    block = unit * (_WRITE_BLOCK // len(unit))
    written = 0
    with path.open("wb") as out:
        while written + len(block) <= size_bytes:
            out.write(block)
            written += len(block)
        out.write(unit * ((size_bytes - written) // len(unit)))


def scan_file(path: Path) -> ScanResult:
    with path.open("rb") as stream:
        return scan_records(stream, ",", encoding=Encoding.UTF_8)


def measure(name: str, path: Path, runs: int, expect: Callable[[ScanResult], bool]) -> bool:
    size = path.stat().st_size
    scan_file(path)  # warm the page cache: the figures are the scanner's, not the disk's
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = scan_file(path)
        best_wall = min(best_wall, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    assert result is not None
    tracemalloc.start()
    scan_file(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{name:<11} size={size / 1e6:6.1f}MB wall={best_wall:5.2f}s"
        f" MB/s={size / 1e6 / best_wall:6.0f} MB/s_cpu={size / 1e6 / best_cpu:6.0f}"
        f" records={result.records:,} chunks={len(result.chunks)}"
        f" blank_skipped={result.blank_records_skipped:,} peak_alloc={peak / 2**20:.1f}MiB"
    )
    if not expect(result):
        print(f"unexpected result for {name}: {result.error}", file=sys.stderr)
        return False
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mb", type=int, default=200, help="MiB of the blank-record files")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-record-scanner-"))
    plain, quoted = folder / "plain.csv", folder / "quoted.csv"
    newlines, empty_rows = folder / "newlines.csv", folder / "empty_rows.csv"
    try:
        write_valid_file(plain, args.rows)
        write_quoted_file(plain, quoted)
        write_repeated(newlines, b"\n", args.mb * 1024 * 1024)
        write_repeated(empty_rows, b",,,,,,,,,,\r\n", args.mb * 1024 * 1024)
        every_row = args.rows

        def all_rows_planned(result: ScanResult) -> bool:
            return result.error is None and result.records == every_row

        def no_chunk_work(result: ScanResult) -> bool:
            return result.error is None and result.chunks == ()

        ok = all(
            [
                measure("plain", plain, args.runs, all_rows_planned),
                measure("quoted", quoted, args.runs, all_rows_planned),
                measure("newlines", newlines, args.runs, no_chunk_work),
                measure("empty rows", empty_rows, args.runs, no_chunk_work),
            ]
        )
    finally:
        for path in (plain, quoted, newlines, empty_rows):
            path.unlink(missing_ok=True)
        folder.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
