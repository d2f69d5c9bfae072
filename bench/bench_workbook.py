"""The guided workbook (scheme section 9): hostile workbooks refused fast in flat memory, and
the read speed of a big guided one.

    .venv/bin/python bench/bench_workbook.py [--rows 100000] [--keep]

Writes into a temporary folder (under `.local/` when it exists):

- `zip_bomb`: the guided workbook with a part of 1 GiB of zeros that deflates to about 1 MiB;
- `macros`: a guided workbook of 10,000 rows with a `vbaProject.bin` part, under an .xlsx name;
- `not_guided`: the same rows without the template's marker;
- `guided`: the guided workbook, guidance rows, the header and `--rows` valid rows (dates as
  date cells, identifiers as numbers), as openpyxl writes it.

Each is measured in a fresh child process (`--child MODE FILE`), three ways: the gateway's
screen (`screen_workbook`: the ZIP bounds on the bytes actually inflated, macros, links, the
marker), the sheet read as CSV records (`write_sheet_csv`), and the whole offline check
(`check_file`). Seconds are to the answer, by the clock and in CPU time (the fairer figure on
a shared machine); peak RSS is `VmHWM` of the child (the interpreter and its imports included:
about 80 MiB). Targets: the zip bomb and the macro workbook refused
in under a second, in flat memory. Prints a table and writes `bench/results/workbook.json`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

UPLOAD_DATE = date(2026, 11, 20)
MODES = ("screen", "sheet", "check")
LIMIT_BYTES = 200 * 1024 * 1024


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _child(mode: str, path: Path) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    from services.core.scheme.check import check_file
    from services.core.scheme.records import path_opener
    from services.core.scheme.workbook_records import screen_workbook, write_sheet_csv

    started = time.perf_counter()
    cpu_started = time.process_time()
    if mode == "screen":
        error = screen_workbook(path_opener(path), size_limit_bytes=LIMIT_BYTES)
        answer = error.code.value if error else "guided"
        rows = None
    elif mode == "sheet":
        with tempfile.TemporaryFile() as out:
            error = write_sheet_csv(path_opener(path), out, size_limit_bytes=LIMIT_BYTES)
            answer = error.code.value if error else f"{out.tell():,} bytes of CSV"
        rows = None
    else:
        report = check_file(path, today=UPLOAD_DATE, size_limit_bytes=LIMIT_BYTES)
        answer = report.file_errors[0].code.value if report.file_errors else report.status.value
        rows = report.rows_total
    return {
        "answer": answer,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def _measure(mode: str, path: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1800,
        check=False,
    )
    if completed.returncode != 0:
        return {"answer": f"crashed ({completed.returncode})", "stderr": completed.stderr[-400:]}
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# --- the files ---------------------------------------------------------------------------------


def _guided_rows(path: Path, rows: int, *, marker: bool = True) -> None:
    """A guided workbook as openpyxl writes it, in its streaming mode (flat memory)."""
    import openpyxl
    from bench_offline_check import _valid_ulns
    from openpyxl.workbook.defined_name import DefinedName

    from services.core.scheme.columns import COLUMNS
    from services.core.scheme.reference import bundled_reference
    from services.core.scheme.workbook_records import TEMPLATE_MARKER

    levy = [e.levy_number for e in bundled_reference().employers() if e.grant_eligible]
    courses = ("SD-WAH-101", "SD-MSF-102", "SD-ABR-103", "SD-FAW-107", "CPCS-A09T")
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Achievements")
    sheet.append(["# One row per achievement, under the header."])
    sheet.append(["# Dates as dd/mm/yyyy; leave optional cells empty."])
    sheet.append([spec.header for spec in COLUMNS])
    ulns = _valid_ulns()
    for i in range(rows):
        sheet.append(
            [
                f"REF-{i:07d}",
                courses[i % len(courses)],
                UPLOAD_DATE - timedelta(days=i % 10),
                "Amelia",
                "Hartley",
                date(1960, 1, 1) + timedelta(days=(i * 37) % 14_000),
                int(next(ulns)),
                None,
                None,
                levy[i % len(levy)],
                "Completed in full",
            ]
        )
    if marker:
        book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    book.save(path)


def _with_part(source: Path, target: Path, name: str, write: Any) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, old.read(info.filename), zipfile.ZIP_DEFLATED)
        part = zipfile.ZipInfo(name)
        part.compress_type = zipfile.ZIP_DEFLATED
        with new.open(part, "w", force_zip64=True) as entry:
            write(entry)


def write_files(folder: Path, rows: int) -> dict[str, tuple[str, Path]]:
    small = folder / "small.xlsx"
    _guided_rows(small, 10_000)
    bomb = folder / "zip_bomb.xlsx"

    def gigabyte_of_zeros(entry: io.BufferedIOBase) -> None:
        block = bytes(1024 * 1024)
        for _ in range(1024):
            entry.write(block)

    _with_part(small, bomb, "xl/media/image1.png", gigabyte_of_zeros)
    macros = folder / "macros.xlsx"
    _with_part(small, macros, "xl/vbaProject.bin", lambda e: e.write(b"\xd0\xcf\x11\xe0" * 4096))
    not_guided = folder / "not_guided.xlsx"
    _guided_rows(not_guided, 10_000, marker=False)
    guided = folder / "guided.xlsx"
    _guided_rows(guided, rows)
    small.unlink()
    return {
        "zip_bomb": ("guided, plus 1 GiB of zeros deflated to ~1 MiB", bomb),
        "macros": ("10,000 rows and a vbaProject.bin, named .xlsx", macros),
        "not_guided": ("10,000 rows, no template marker", not_guided),
        "guided": (f"guidance rows, header, {rows:,} valid rows", guided),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--no-write", action="store_true", help="no bench/results file")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        mode, path = options.child
        print(json.dumps(_child(mode, Path(path))))
        return
    base = REPO / ".local" if (REPO / ".local").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="bench-workbook-", dir=base))
    started = time.perf_counter()
    files = write_files(folder, options.rows)
    print(f"files written in {time.perf_counter() - started:.1f} s in {folder}", file=sys.stderr)
    results: dict[str, Any] = {}
    print(
        "| file | what | MiB | "
        + " | ".join(f"{m}: answer | s | CPU s | peak MB" for m in MODES)
        + " |"
    )
    print("|---|---|---|" + "---|---|---|---|" * len(MODES))
    for name, (what, path) in files.items():
        measured = {mode: _measure(mode, path) for mode in MODES}
        results[name] = {"what": what, "mib": round(path.stat().st_size / 2**20, 1), **measured}
        cells = [
            f"{m['answer']} | {m.get('seconds', '–')} | {m.get('cpu_seconds', '–')}"
            f" | {m.get('peak_rss_mib', '–')}"
            for m in measured.values()
        ]
        print(f"| `{name}` | {what} | {results[name]['mib']} | " + " | ".join(cells) + " |")
    guided = results["guided"]["sheet"]
    if guided.get("seconds"):
        print(
            f"\nguided sheet read: {options.rows / guided['seconds']:,.0f} rows/s by the clock,"
            f" {options.rows / max(guided['cpu_seconds'], 1e-9):,.0f} rows/s by CPU time"
        )
    if not options.no_write:
        out = REPO / "bench" / "results" / "workbook.json"
        out.write_text(json.dumps({"rows": options.rows, "files": results}, indent=2) + "\n")
    if not options.keep:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    main()
