"""The hostile files of issue 9: time and peak memory of the offline check, the validator and
the gateway on each.

    .venv/bin/python bench/bench_hostile.py [--only NAME ...] [--scale 1.0] [--skip-gateway]

Generates each file in a temporary folder (under `.local/` when there is one; deleted after),
then measures, each in a fresh child process so that one file's peak is not another's:

- **offline check**: `check_file` on the file (what `achievements check` runs): wall time,
  outcome, peak RSS;
- **validator**: the validator's own code paths on the stored file, as a worker runs them:
  `planner.plan_file` (inspection, header, record scan, chunk plan), then
  `chunk_worker.validate_leased_chunk` for every planned chunk in turn (the bulk pass, the row
  validator, the rows kept for the database): wall time, outcome, chunks, peak RSS. Kafka and
  PostgreSQL are left out: they hold no file data;
- **gateway**: the gateway app (aiohttp, the real middlewares, storage and content check) in a
  child process on a free port against a scratch PostgreSQL database (outbox relay off, so no
  Kafka), the file uploaded to it as a streamed `text/csv` body (or, for the parts file, as
  the multipart body): the answer, wall time, peak RSS of the gateway process.

Peak RSS is `VmHWM` from `/proc` (the process's own high-water mark; `ru_maxrss` would carry
the parent's peak over `execve`), read by the child at its end (offline check, validator) or by
the parent after the upload (gateway), in MiB; the offline check and validator
children start as `python bench/bench_hostile.py --offline-check FILE` (or `--validator FILE`),
so their figure includes the interpreter and the modules they import.

Targets: validator <= 300 MB, gateway <= 150 MB, a 200 MB file of newlines or of empty records
gets its status in under 10 s. The table is printed and written to `bench/results/hostile.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

# The measured child processes import only what they measure: the database, HTTP client and
# gateway modules are imported where the parent needs them.
from services.core.scheme.columns import template_header_line

MIB = 1024 * 1024
BLOCK = 4 * MIB
UPLOAD_DATE = date(2026, 11, 20)
HEADER = template_header_line().encode() + b"\r\n"
VALID_ROW = b"REF-1,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,1000000043,,,79049946,\r\n"
RESULTS = Path(__file__).parent / "results" / "hostile.json"
REPO = Path(__file__).resolve().parent.parent
VALIDATOR_TARGET_MB = 300
GATEWAY_TARGET_MB = 150
STATUS_TARGET_S = 10.0


# --- The files ---------------------------------------------------------------------------------


def _write_repeated(
    path: Path, head: bytes, piece: bytes, total_bytes: int, tail: bytes = b""
) -> None:
    """head, then `piece` repeated to `total_bytes` in all (whole pieces), then tail."""
    count = max(0, (total_bytes - len(head) - len(tail)) // len(piece))
    per_block = max(1, BLOCK // len(piece))
    block = piece * per_block
    with path.open("wb") as out:
        out.write(head)
        for _ in range(count // per_block):
            out.write(block)
        out.write(piece * (count % per_block))
        out.write(tail)


def newlines(path: Path, size: int) -> None:
    _write_repeated(path, HEADER, b"\n", size)


def empty_records(path: Path, size: int) -> None:
    _write_repeated(path, HEADER, b",,,,\n", size)


def quoted_line_breaks(path: Path, size: int) -> None:
    """One record of quoted cells that each hold a line break: `"a\\nb",` repeated."""
    _write_repeated(path, HEADER, b'"a\nb",', size, b"\r\n")


def wide_rows(path: Path, size: int) -> None:
    """Rows of about 1 MB within every bound of one record (11 cells of 91,000 characters):
    each is read, validated and reported in full."""
    cell = b"x" * 91_000
    row = b",".join([cell] * 11) + b"\r\n"
    _write_repeated(path, HEADER, row, size)


def header_131kb(path: Path, size: int) -> None:
    """A header row of 131 KB: the template's headers and 900 unknown ones, then valid rows."""
    unknown = [f"Unknown{index:04d}".ljust(140, "x").encode() for index in range(900)]
    header = HEADER.rstrip(b"\r\n") + b"," + b",".join(unknown) + b"\r\n"
    _write_repeated(path, header, VALID_ROW, size)


def million_columns(path: Path, size: int) -> None:
    """One data record of tens of millions of empty cells."""
    _write_repeated(path, HEADER, b",", size, b"\r\n")


def utf16(path: Path, size: int) -> None:
    """A 'Unicode text' export: UTF-16 with its byte-order mark."""
    text = (HEADER + VALID_ROW * max(1, (size // 2 - len(HEADER)) // len(VALID_ROW))).decode()
    path.write_bytes(text.encode("utf-16"))


def workbook(path: Path, size: int) -> None:
    """A zip workbook (an .xlsx's layout), its sheet stored uncompressed to reach the size."""
    sheet = b'<sheetData><row r="1"><c t="s"><v>0</v></c></row></sheetData>'
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", sheet * max(1, size // len(sheet)))


def multipart_parts(path: Path, size: int) -> None:
    """A multipart body of 200,000 tiny parts, then the terms and the file: for the gateway."""
    del size
    parts = b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nx\r\n' * 200_000
    tail = (
        b'--B\r\nContent-Disposition: form-data; name="terms_accepted"\r\n\r\ntrue\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + HEADER + VALID_ROW + b"\r\n--B--\r\n"
    )
    path.write_bytes(parts + tail)


def multipart_ignored_part(path: Path, size: int) -> None:
    """A multipart body whose first part, ignored by the gateway, is 300 MB, then the file:
    sent chunked (no length to refuse up front), it must be cut off at the body cap."""
    head = b'--B\r\nContent-Disposition: form-data; name="junk"\r\n\r\n'
    tail = (
        b'\r\n--B\r\nContent-Disposition: form-data; name="terms_accepted"\r\n\r\ntrue\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + HEADER + VALID_ROW + b"\r\n--B--\r\n"
    )
    _write_repeated(path, head, b"x" * 1024, size, tail)


@dataclass(frozen=True)
class Hostile:
    name: str
    size_bytes: int  # at --scale 1.0
    write: Callable[[Path, int], None]
    what: str
    multipart: bool = False  # a gateway body only: the checks get nothing of it
    status_target: bool = False  # status in under 10 s


HOSTILE = (
    Hostile(
        "newlines_200mb", 200 * MIB, newlines, "header, then 200 MiB of \\n", status_target=True
    ),
    Hostile(
        "empty_records_200mb",
        200 * MIB,
        empty_records,
        "header, then 200 MiB of ,,,,\\n",
        status_target=True,
    ),
    Hostile("quoted_breaks_27mb", 27 * 1000 * 1000, quoted_line_breaks, 'one record of "a\\nb",'),
    Hostile("quoted_breaks_195mb", 195 * 1000 * 1000, quoted_line_breaks, 'one record of "a\\nb",'),
    Hostile("wide_rows_100mb", 100 * 1000 * 1000, wide_rows, "100 rows of 1 MB (11 x 91 KB)"),
    Hostile("header_131kb", 1 * MIB, header_131kb, "131 KB header row, then valid rows"),
    Hostile("million_columns_50mb", 50 * 1000 * 1000, million_columns, "one row, 50 M cells"),
    Hostile("utf16_20mb", 20 * 1000 * 1000, utf16, "UTF-16 export with BOM"),
    Hostile("workbook_10mb", 10 * 1000 * 1000, workbook, "zip workbook (.xlsx layout)"),
    Hostile(
        "multipart_200k_parts",
        12 * MIB,
        multipart_parts,
        "200,000 tiny multipart parts",
        multipart=True,
    ),
    Hostile(
        "multipart_300mb_ignored_part",
        300 * 1000 * 1000,
        multipart_ignored_part,
        "chunked multipart, a 300 MB ignored part",
        multipart=True,
    ),
)


# --- Child processes ---------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DEPLOYMENT_MODE", "local")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _run_measured(args: list[str], timeout_s: float) -> tuple[dict[str, Any], float, float]:
    """Runs a child; its JSON line, wall seconds and peak RSS in MiB (from wait4)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), cwd=REPO
    )
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"error": f"timed out after {timeout_s:.0f} s"}, time.perf_counter() - started, 0.0
    # The child reports its own peak (RUSAGE_CHILDREN would be the largest child's so far).
    elapsed_s = time.perf_counter() - started
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        tail = err.decode()[-400:]
        return {"error": f"exit {child.returncode}: {tail}"}, elapsed_s, 0.0
    result = json.loads(lines[-1])
    return result, elapsed_s, float(result.pop("peak_rss_mb", 0.0))


def _offline_child(path: str) -> None:
    from services.core.scheme.check import check_file

    started = time.perf_counter()
    report = check_file(path, today=UPLOAD_DATE)
    elapsed_s = time.perf_counter() - started
    print(
        json.dumps(
            {
                "status": report.status.value,
                "code": report.file_errors[0].code.value if report.file_errors else None,
                # A file error's message is stored and returned in every list page: bounded.
                "message_chars": len(report.file_errors[0].message) if report.file_errors else 0,
                "rows_total": report.rows_total,
                "issues": len(report.issues),
                "status_s": round(elapsed_s, 2),
                "peak_rss_mb": _peak_rss_mb(os.getpid()),
            }
        )
    )


def _validator_child(path: str) -> None:
    from services.core.scheme.reference import bundled_reference
    from services.core.storage import FolderStorage
    from services.validator.chunk_queue import LeasedChunk
    from services.validator.chunk_worker import validate_leased_chunk
    from services.validator.planner import plan_file
    from services.validator.settings import ValidatorSettings

    settings = ValidatorSettings()
    stored = Path(path)
    storage = FolderStorage(stored.parent)
    reference = bundled_reference()
    # Newer workers reuse a chunk's readers (header, bulk validator) across one upload's chunks.
    reuses_readers = "readers" in inspect.signature(validate_leased_chunk).parameters
    upload_id = uuid.uuid4()
    started = time.perf_counter()
    plan = plan_file(storage, stored.name, settings)
    planned_s = time.perf_counter() - started
    rows = invalid = issues = 0
    error = plan.file_error
    readers: Any = None
    # A file error from the plan rejects the upload; its chunks are never leased.
    for number, segments in enumerate([] if error else plan.chunks):
        chunk = LeasedChunk(
            upload_id=upload_id,
            chunk_no=number,
            ato_id="ATO-BENCH",
            segments=tuple(segments),
            attempts=1,
            storage_key=stored.name,
            encoding=plan.encoding or "utf-8",
            delimiter=plan.delimiter,
            upload_date=UPLOAD_DATE,
            reference_version=1,
        )
        if reuses_readers:
            result, readers = validate_leased_chunk(
                storage, chunk, reference, settings.max_stored_issues, readers
            )
        else:
            result = validate_leased_chunk(storage, chunk, reference, settings.max_stored_issues)
        rows += result.rows_total
        invalid += result.rows_invalid
        issues += len(result.issues)
        error = error or getattr(result, "file_error", None)
        del result
    elapsed_s = time.perf_counter() - started
    # What the outcome decides once every chunk is in (section 8's order after the scan).
    code = error.code.value if error else None
    if code is None and rows == 0:
        code = "FILE_02"
    elif code is None and rows > settings.limits.max_rows:
        code = "FILE_05"
    status = "rejected" if code else ("failed" if invalid else "passed")
    print(
        json.dumps(
            {
                "status": status,
                "code": code,
                "chunks": len(plan.chunks),
                "rows_total": rows,
                "rows_invalid": invalid,
                "issues_kept": issues,
                "plan_s": round(planned_s, 2),
                "status_s": round(elapsed_s, 2),
                "peak_rss_mb": _peak_rss_mb(os.getpid()),
            }
        )
    )


def _gateway_child(port: str, dsn: str, root: str) -> None:
    from aiohttp import web
    from pydantic import SecretStr

    from services.core.settings import CommonSettings, PostgresSettings, StorageSettings
    from services.upload_gateway.app import create_app, runner_options
    from services.upload_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        port=int(port),
        run_outbox_relay=False,
        # The bench disk may hold less than the production margin; the check itself stays on.
        min_free_disk_bytes=MIB,
        common=CommonSettings(
            postgres=PostgresSettings(database_url=SecretStr(dsn)),
            storage=StorageSettings(root=Path(root)),
        ),
    )

    async def serve() -> None:
        runner = web.AppRunner(create_app(settings), **runner_options(settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(256 * 1024):
            yield chunk


async def _wait_ready(port: int, child: asyncio.subprocess.Process) -> bool:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if child.returncode is not None:
                return False
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    return False


async def _upload(
    port: int, api_key: str, path: Path, multipart: bool
) -> tuple[int, str, int | None]:
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"}
    params = {"file_name": path.name}
    if multipart:
        headers["Content-Type"] = "multipart/form-data; boundary=B"
    else:
        headers["Content-Type"] = "text/csv"
        params["terms_accepted"] = "true"
    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            f"http://127.0.0.1:{port}/v1/uploads",
            data=_file_chunks(path),
            params=params,
            headers=headers,
        ) as response,
    ):
        body = await response.json(content_type=None)
        code = body.get("code") or body.get("status") or ""
        return response.status, str(code), body.get("size_bytes")


async def _measure_gateway(
    dsn: str, api_key: str, path: Path, folder: Path, multipart: bool
) -> dict[str, Any]:
    import aiohttp

    port = _free_port()
    root = folder / "gateway-storage"
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, __file__, "--serve-gateway", str(port), dsn, str(root)),
        stdout=asyncio.subprocess.DEVNULL,  # its request logs: never a pipe that could fill
        env=_child_env(),
        cwd=REPO,
    )
    try:
        if not await _wait_ready(port, child):
            return {"error": "the gateway did not start"}
        idle_mb = _peak_rss_mb(child.pid)
        started = time.perf_counter()
        try:
            status, code, stored_bytes = await _upload(port, api_key, path, multipart)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            status, code, stored_bytes = 0, f"{type(error).__name__}", None
        elapsed_s = time.perf_counter() - started
        return {
            "answer": f"{status} {code}".strip(),
            "stored_bytes": stored_bytes,  # the size the gateway stored, for a 202
            "wall_s": round(elapsed_s, 2),
            "peak_rss_mb": round(_peak_rss_mb(child.pid), 1),
            "idle_rss_mb": round(idle_mb, 1),
        }
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), 30)
        shutil.rmtree(root, ignore_errors=True)


# --- The run -----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    what: str
    size_bytes: int
    offline: dict[str, Any] = field(default_factory=dict)
    validator: dict[str, Any] = field(default_factory=dict)
    gateway: dict[str, Any] = field(default_factory=dict)


def _measure_checks(hostile: Hostile, path: Path, row: Row) -> None:
    for key, mode in (("offline", "--offline-check"), ("validator", "--validator")):
        result, wall_s, peak_mb = _run_measured([sys.executable, __file__, mode, str(path)], 900)
        result["wall_s"] = round(wall_s, 2)
        result["peak_rss_mb"] = round(peak_mb, 1)
        setattr(row, key, result)


async def run(
    names: list[str] | None, scale: float, gateway: bool, tmp_root: str | None
) -> list[Row]:
    import asyncpg
    from scratch_database import admin, database_url

    from services.core.db import migrate_dsn
    from services.upload_gateway.keys import create_ato

    chosen = [h for h in HOSTILE if names is None or h.name in names]
    rows: list[Row] = []
    database = f"bench_hostile_{uuid.uuid4().hex[:10]}"
    dsn = database_url(database)
    if gateway:
        await admin(f"CREATE DATABASE {database}")
    try:
        api_key = ""
        if gateway:
            await migrate_dsn(dsn)
            connection = await asyncpg.connect(dsn)
            try:
                api_key = (await create_ato(connection, "Hostile ATO")).api_key
            finally:
                await connection.close()
        for hostile in chosen:
            with tempfile.TemporaryDirectory(prefix="bench-hostile-", dir=tmp_root) as tmp:
                folder = Path(tmp)
                path = folder / f"{hostile.name}.csv"
                hostile.write(path, max(1, int(hostile.size_bytes * scale)))
                row = Row(hostile.name, hostile.what, path.stat().st_size)
                print(f"{hostile.name}: {row.size_bytes / MIB:,.1f} MiB ...", flush=True)
                if not hostile.multipart:
                    _measure_checks(hostile, path, row)
                if gateway:
                    row.gateway = await _measure_gateway(
                        dsn, api_key, path, folder, hostile.multipart
                    )
                rows.append(row)
                print(
                    "   ",
                    json.dumps(
                        {"offline": row.offline, "validator": row.validator, "gateway": row.gateway}
                    ),
                    flush=True,
                )
    finally:
        if gateway:
            await admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return rows


def _cell(result: dict[str, Any], *keys: str) -> str:
    if not result:
        return "-"
    if "error" in result:
        return "error"
    return " ".join(str(result[key]) for key in keys if result.get(key) is not None)


def _figures(result: dict[str, Any], time_key: str) -> str:
    return f"{result.get(time_key, '-'):>6} {result.get('peak_rss_mb', '-'):>6}"


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'file':<28} {'MiB':>7} | {'offline check':<22} {'s':>6} {'MB':>6} |"
        f" {'validator':<16} {'s':>6} {'MB':>6} | {'gateway answer':<20} {'s':>6} {'MB':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        o, v, g = row.offline, row.validator, row.gateway
        print(
            f"{row.name:<28} {row.size_bytes / MIB:>7.1f} |"
            f" {_cell(o, 'status', 'code'):<22} {_figures(o, 'status_s')} |"
            f" {_cell(v, 'status', 'code'):<16} {_figures(v, 'status_s')} |"
            f" {_cell(g, 'answer'):<20} {_figures(g, 'wall_s')}"
        )


def _verdicts(rows: list[Row]) -> dict[str, bool]:
    validator_ok = all(
        row.validator.get("peak_rss_mb", 0) <= VALIDATOR_TARGET_MB and "error" not in row.validator
        for row in rows
        if row.validator
    )
    gateway_ok = all(
        row.gateway.get("peak_rss_mb", 0) <= GATEWAY_TARGET_MB and "error" not in row.gateway
        for row in rows
        if row.gateway
    )
    timed = [h.name for h in HOSTILE if h.status_target]
    status_ok = all(
        row.offline.get("status_s", 1e9) < STATUS_TARGET_S
        and row.validator.get("status_s", 1e9) < STATUS_TARGET_S
        for row in rows
        if row.name in timed and row.offline
    )
    return {
        f"validator_peak_rss_at_most_{VALIDATOR_TARGET_MB}_mb": validator_ok,
        f"gateway_peak_rss_at_most_{GATEWAY_TARGET_MB}_mb": gateway_ok,
        f"newlines_and_empty_records_status_under_{STATUS_TARGET_S:g}_s": status_ok,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="names of the files to try (default: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="file sizes times this")
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    # Internal: the child processes.
    parser.add_argument("--offline-check", help=argparse.SUPPRESS)
    parser.add_argument("--validator", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.offline_check:
        _offline_child(args.offline_check)
        return
    if args.validator:
        _validator_child(args.validator)
        return
    if args.serve_gateway:
        _gateway_child(*args.serve_gateway)
        return
    tmp_root = str(REPO / ".local") if (REPO / ".local").is_dir() else None
    started = time.perf_counter()
    rows = asyncio.run(run(args.only, args.scale, not args.skip_gateway, tmp_root))
    print()
    print_table(rows)
    verdicts = _verdicts(rows)
    for name, ok in verdicts.items():
        print(f"{name}: {'yes' if ok else 'NO'}")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
                    "python": platform.python_version(),
                    "scale": args.scale,
                    "targets": {
                        "validator_peak_rss_mb": VALIDATOR_TARGET_MB,
                        "gateway_peak_rss_mb": GATEWAY_TARGET_MB,
                        "status_s": STATUS_TARGET_S,
                    },
                    "verdicts": verdicts,
                    "took_s": round(time.perf_counter() - started, 1),
                    "files": [row.__dict__ for row in rows],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"written: {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
