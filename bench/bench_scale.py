"""`make bench`: the validation pipeline at scale, beside the limits it is measured against.

    .venv/bin/python bench/bench_scale.py [--quick] [--sizes 10000,100000,1000000]
        [--fair-rows 300000] [--seed-rows 10000000] [--storage-rows 1000000]

One run, on the local stack's PostgreSQL and Kafka (`make infra`), prints and records:

- the database: `achievements_bench`, kept between runs (created and migrated if missing,
  reference data loaded), holding at least `--seed-rows` achievements of earlier uploads of
  many ATOs (seeded with COPY by child processes the first time; a later run reuses them);
- per size (10k, 100k, 1M rows; 2% invalid rows, policy valid_rows), on the same file:
  - the naive limit: read the file, today's row-by-row rules (`RowValidator`), COPY the valid
    rows into `achievements` in batches; one process, then two processes on the file's halves;
    no Kafka, no HTTP, no duplicate rules;
  - the pipeline: the real gateway and two validators (`python -m services.validator`) as
    processes with their own topic prefix and storage; the time from the upload request to the
    outcome, its split (upload, queue, validation, the deciding transaction from the
    validators' `upload_outcome` log line), the CPU seconds of the services and of their
    PostgreSQL backends, the statements PostgreSQL was seen running (sampled), and each
    service's peak RSS (VmHWM of its process tree, reset before the upload);
  - COPY: the rows the pipeline accepted, COPYed again in one statement into `achievements`;
  - the offline check (`check_file`) on one core;
- the offline check on one core at 20% invalid rows, and the record scanner's MB/s;
- fairness: another ATO's two `--fair-rows` uploads, first alone, then again while 20-row
  uploads of other ATOs come in one after another: each small upload's time to its outcome,
  and the big ones' times against alone. An upload whose chunks are all done but which has
  no outcome after `--stall-s` is reported as a problem with the statements running; the
  services are then restarted and the same is measured with the big uploads of two ATOs.
- storage side by side: one `--storage-rows` file uploaded to the pipeline on the folder, then
  to the same services on S3 (the project's own S3 server, started for the stage on free
  ports, tests/s3_server.py), from the POST to the outcome; the two outcomes must match, and
  S3's speed against the folder's is shown beside the target (≥ 0.9).

CPU seconds are given beside wall-clock times: on a machine shared with other work they say
what a stage costs whatever else runs (PostgreSQL runs on the same machine).

Every upload's rows (achievements, issues, events, the upload and its ATO) are deleted
afterwards, so the database holds the seed and nothing else between runs. Writes
`bench/results/latest.json` and `docs/performance.md` (`--quick`, a check that the benchmark
works, writes neither). Figures vary with the machine's load; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
from bench_files import EarlierKey, write_mixed_file
from bench_offline_check import fallback_shares
from bench_record_scanner import scan_file
from scratch_database import admin, database_url

from services.core.db import migrate_dsn
from services.core.reference_store import load_into_database
from services.core.scheme.codes import FileError, Policy
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import Segment, read_chunk, scan_records
from services.core.scheme.records import detect_layout, path_opener
from services.core.scheme.reference import bundled_reference
from services.core.scheme.validation import RowValidator
from services.core.settings import KafkaSettings
from services.core.states import FINAL
from services.upload_gateway.keys import create_ato
from services.validator.chunk_validation import ACHIEVEMENT_COLUMNS, achievement_id
from services.validator.settings import ValidatorSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
# The test suite's runner of the project's S3 server (one way to start it, tests/s3_server.py).
sys.path.insert(0, str(REPO_ROOT))
from tests.s3_server import running_s3_server  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
DOC_PATH = REPO_ROOT / "docs" / "performance.md"
DATABASE = "achievements_bench"
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
FAIR_ROWS = 300_000
QUICK_FAIR_ROWS = 30_000
STORAGE_ROWS = 1_000_000
QUICK_STORAGE_ROWS = 10_000
# What the folder's and S3's outcomes of the same file must agree on.
OUTCOME_FIELDS = (
    "status",
    "rows_total",
    "rows_valid",
    "rows_invalid",
    "rows_warned",
    "counts_by_code",
    "achievements",
)
SMALL_ROWS = 20
ERROR_SHARE = 0.02
HIGH_ERROR_SHARE = 0.20
# ATOs this benchmark creates are named so; a run removes what an interrupted run left.
RUN_ATO_NAME = "bench_scale run"
FINAL_STATUSES = frozenset(state.value for state in FINAL)
VACUUM_AFTER_ROWS = 50_000
RUN_LOCK = 0x62656E63685F7363  # the advisory lock of a run on its database ("bench_sc")
NOTES_MARKER = "<!-- Below this line: notes kept when bench_scale.py rewrites the page. -->\n"

# The seed: uploads of SEED_UPLOAD_ROWS achievements, SEED_BATCH_UPLOADS per transaction,
# spread over SEED_ATOS ATOs and three years, with the identifier mix of real files.
SEED_UPLOAD_ROWS = 1_000
SEED_BATCH_UPLOADS = 100
SEED_BATCH_ROWS = SEED_UPLOAD_ROWS * SEED_BATCH_UPLOADS
SEED_ATOS = 2_000
SEED_WORKERS = 2
_SEED_NAMESPACE = uuid.UUID("5d7c1c52-8f4e-4c63-9a53-0b6f1d3e2a10")
_SEED_FORENAMES = ("Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Zoë", "Seán", "Mia")
_SEED_SURNAMES = ("Smith", "Jones", "Taylor", "Brown", "O'Neill", "Williams", "Davies")


def _mb(kib: float) -> float:
    return kib / 1024


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of any process on this machine (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_cpu(connection: asyncpg.Connection) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend serving this database. On a shared machine
    CPU seconds say what a stage costs whatever else runs; PostgreSQL is on this machine."""
    pids = await connection.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    )
    return {row["pid"]: process_cpu_s(row["pid"]) for row in pids}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """Backends that closed in between are missed: the services' pools keep theirs."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# --- the database: created once, seeded once, cleaned after every upload -----------------------


async def hold_database(database: str) -> asyncpg.Connection:
    """Creates the kept database if missing and takes it for this run (a session advisory lock,
    held until the returned connection closes). Two runs on one database would disturb each
    other's figures, and worse: each run's validators take the other's chunk tasks from the
    shared table without its stored files, and each run's clean-up deletes the other's rows."""
    exists = await _admin_fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
    if not exists:
        await admin(f"CREATE DATABASE {database}")
        print(f"created database {database}")
    connection = await asyncpg.connect(database_url(database))
    if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK):
        print(f"another bench_scale run is using {database}: waiting for it to end")
        await connection.execute("SELECT pg_advisory_lock($1)", RUN_LOCK)
    return connection


async def prepare_database(database: str, seed_rows: int) -> dict[str, Any]:
    """Migrates and seeds the kept database; removes what an interrupted run left. Call with
    the database held (`hold_database`)."""
    dsn = database_url(database)
    await migrate_dsn(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await load_into_database(connection)
        leftovers = await purge_run_atos(connection)
        if leftovers:
            print(f"removed {leftovers} uploads left by an interrupted run")
        started = time.perf_counter()
        before = await connection.fetchval("SELECT count(*) FROM achievements")
        count_s = time.perf_counter() - started
        print(f"achievements in {database}: {before:,} (counted in {count_s:.1f}s)")
        seeded = seed_s = vacuum_s = 0.0
        if before < seed_rows:
            missing = seed_rows - before
            started = time.perf_counter()
            seeded = await _seed(connection, dsn, math.ceil(missing / SEED_BATCH_ROWS))
            seed_s = time.perf_counter() - started
            print(
                f"seeded {seeded:,.0f} achievements with COPY in {seed_s:.0f}s"
                f" ({seeded / seed_s:,.0f} rows/s, {SEED_WORKERS} child processes)"
            )
            started = time.perf_counter()
            await connection.execute("VACUUM (ANALYZE) achievements")
            await connection.execute("VACUUM (ANALYZE) uploads")
            vacuum_s = time.perf_counter() - started
            print(f"VACUUM (ANALYZE) after seeding: {vacuum_s:.0f}s")
        else:
            print("seed reused")
        achievements = await connection.fetchval("SELECT count(*) FROM achievements")
        uploads = await connection.fetchval("SELECT count(*) FROM uploads")
        size_gb = await connection.fetchval("SELECT pg_database_size(current_database())") / 1e9
    finally:
        await connection.close()
    print(f"database: {achievements:,} achievements in {uploads:,} uploads, {size_gb:.1f} GB")
    return {
        "name": database,
        "achievements": achievements,
        "uploads": uploads,
        "size_gb": round(size_gb, 2),
        "seeded_now": int(seeded),
        "seed_s": round(seed_s, 1),
        "vacuum_s": round(vacuum_s, 1),
    }


async def _admin_fetchval(sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(database_url("postgres"))
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def _seed(connection: asyncpg.Connection, dsn: str, batches: int) -> float:
    await connection.executemany(
        "INSERT INTO atos (ato_id, name, default_policy) VALUES ($1, $2, 'valid_rows')"
        " ON CONFLICT (ato_id) DO NOTHING",
        [(_seed_ato(n), f"Seeded ATO {n}") for n in range(SEED_ATOS)],
    )
    done = await connection.fetchval(
        "SELECT coalesce(max(split_part(storage_key, '/', 2)::integer), -1) FROM uploads"
        " WHERE storage_key LIKE 'seed/%'"
    )
    numbers = list(range(done + 1, done + 1 + batches))
    today = datetime.now(UTC).date().isoformat()
    # Generating the rows is Python work: it runs in child processes, each with its own
    # connection, while PostgreSQL takes the COPYs.
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=seed_batches, args=(dsn, numbers[k::SEED_WORKERS], today))
        for k in range(SEED_WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.join)
        if worker.exitcode != 0:
            raise RuntimeError(f"a seeding process failed (exit code {worker.exitcode})")
    return float(len(numbers) * SEED_BATCH_ROWS)


def _seed_ato(number: int) -> str:
    return f"SEED-{number % SEED_ATOS:04d}"


def seed_batches(dsn: str, numbers: Sequence[int], today: str) -> None:
    """Child process: COPYs the given seed batches, one transaction each."""
    asyncio.run(_seed_batches(dsn, numbers, date.fromisoformat(today)))


async def _seed_batches(dsn: str, numbers: Sequence[int], today: date) -> None:
    courses = [course.code for course in bundled_reference().courses()]
    levies = [employer.levy_number for employer in bundled_reference().employers()]
    connection = await asyncpg.connect(dsn)
    try:
        for position, number in enumerate(numbers, start=1):
            uploads, achievements = _seed_records(number, today, courses, levies)
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "uploads", columns=_SEED_UPLOAD_COLUMNS, records=uploads
                )
                await connection.copy_records_to_table(
                    "achievements", columns=_SEED_ACHIEVEMENT_COLUMNS, records=achievements
                )
            if position % 10 == 0 or position == len(numbers):
                print(
                    f"  seed process {os.getpid()}: {position}/{len(numbers)} batches", flush=True
                )
    finally:
        await connection.close()


_SEED_UPLOAD_COLUMNS = (
    "upload_id",
    "ato_id",
    "file_name",
    "size_bytes",
    "sha256",
    "policy",
    "storage_key",
    "terms_accepted_at",
    "upload_date",
    "status",
    "encoding",
    "delimiter",
    "rows_total",
    "rows_valid",
    "rows_processed",
    "received_at",
    "validation_started_at",
    "validated_at",
    "release_at",
)
_SEED_ACHIEVEMENT_COLUMNS = (*ACHIEVEMENT_COLUMNS, "release_at", "claimed_at")


def _seed_records(
    number: int, today: date, courses: Sequence[str], levies: Sequence[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """One batch: SEED_BATCH_UPLOADS passed uploads and their achievements, released (and
    mostly claimed) long ago."""
    uploads: list[tuple[Any, ...]] = []
    achievements: list[tuple[Any, ...]] = []
    for k in range(SEED_BATCH_UPLOADS):
        n = number * SEED_BATCH_UPLOADS + k
        upload_id = uuid.uuid5(_SEED_NAMESPACE, f"upload-{n}")
        ato = _seed_ato(n)
        upload_day = today - timedelta(days=30 + n % 1_000)
        validated = datetime(upload_day.year, upload_day.month, upload_day.day, 12, tzinfo=UTC)
        release = validated + timedelta(days=2)
        uploads.append(
            (
                upload_id,
                ato,
                "seed.csv",
                SEED_UPLOAD_ROWS * 110,
                hashlib.sha256(upload_id.bytes).hexdigest(),
                "valid_rows",
                f"seed/{number}/{n}",
                validated,
                upload_day,
                "passed",
                "utf-8",
                ",",
                SEED_UPLOAD_ROWS,
                SEED_UPLOAD_ROWS,
                SEED_UPLOAD_ROWS,
                validated,
                validated,
                validated,
                release,
            )
        )
        days = [upload_day - timedelta(days=d) for d in range(10)]
        for row in range(2, SEED_UPLOAD_ROWS + 2):
            g = n * SEED_UPLOAD_ROWS + row
            kind = g % 20  # the mix of bench_files: ULN, ULN and NI, NI, CITB, ULN and CITB
            eligible = g % 5 != 0
            achievements.append(
                (
                    achievement_id(upload_id, row),
                    upload_id,
                    row,
                    ato,
                    f"S{g}",
                    courses[g % len(courses)],
                    days[g % 10],
                    _SEED_FORENAMES[g % 9],
                    _SEED_SURNAMES[g % 7],
                    days[0] - timedelta(days=7_000 + g % 9_000),
                    str(1_000_000_000 + g) if kind <= 15 or kind == 19 else None,
                    f"JK{g % 1_000_000:06d}{'ABCD'[g // 1_000_000 % 4]}"
                    if 13 <= kind <= 17
                    else None,
                    f"S{g:08d}" if kind >= 18 else None,
                    levies[g % len(levies)],
                    None,
                    eligible,
                    "claimed" if eligible else "not_eligible",
                    release,
                    release if eligible else None,
                )
            )
    return uploads, achievements


async def purge(
    connection: asyncpg.Connection, upload_ids: Sequence[uuid.UUID], ato_ids: Sequence[str] = ()
) -> None:
    """Everything the benchmark's uploads (and ATOs) left in the database."""
    ids = list(upload_ids)
    deleted = await connection.execute("DELETE FROM achievements WHERE upload_id = ANY($1)", ids)
    await connection.execute(
        "DELETE FROM outbox WHERE key = ANY($1::text[])", [str(i) for i in ids]
    )
    # row_issues and validation_chunks go with the upload (ON DELETE CASCADE).
    await connection.execute("DELETE FROM uploads WHERE upload_id = ANY($1)", ids)
    if ato_ids:
        for table in ("api_keys", "ato_turns", "atos"):
            await connection.execute(f"DELETE FROM {table} WHERE ato_id = ANY($1)", list(ato_ids))
    if int(deleted.split()[-1]) >= VACUUM_AFTER_ROWS:
        # Untimed: otherwise autovacuum starts on the dead rows in the middle of a later
        # measurement, and each stage would meet a table in a different state.
        await connection.execute("VACUUM achievements")


async def purge_run_atos(connection: asyncpg.Connection) -> int:
    atos = [
        row["ato_id"]
        for row in await connection.fetch(
            "SELECT ato_id FROM atos WHERE name LIKE $1", RUN_ATO_NAME + " %"
        )
    ]
    uploads = [
        row["upload_id"]
        for row in await connection.fetch(
            "SELECT upload_id FROM uploads WHERE ato_id = ANY($1)", atos
        )
    ]
    await purge(connection, uploads, atos)
    return len(uploads)


async def new_ato(dsn: str, label: str) -> tuple[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        key = await create_ato(connection, f"{RUN_ATO_NAME} {label}", default_policy="valid_rows")
    finally:
        await connection.close()
    return key.ato_id, key.api_key


async def record_upload(
    connection: asyncpg.Connection, ato_id: str, status: str, today: date
) -> uuid.UUID:
    """An upload row the benchmark writes itself (naive limit, COPY, earlier achievements);
    `received` keeps its achievements out of every DUP_02 look."""
    upload_id = uuid.uuid4()
    await connection.execute(
        "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
        " storage_key, terms_accepted_at, upload_date, status, release_at)"
        " VALUES ($1, $2, 'bench.csv', 0, $3, 'valid_rows', 'bench', now(), $4, $5,"
        " CASE WHEN $5 = 'passed' THEN now() END)",
        upload_id,
        ato_id,
        upload_id.hex,
        today,
        status,
    )
    return upload_id


async def record_earlier(
    connection: asyncpg.Connection, ato_id: str, earlier: Sequence[EarlierKey], today: date
) -> uuid.UUID:
    """The ATO's earlier accepted upload that the file's DUP_02 rows repeat."""
    upload_id = await record_upload(connection, ato_id, "passed", today)
    now = datetime.now(UTC)
    await connection.copy_records_to_table(
        "achievements",
        columns=[
            "achievement_id",
            "upload_id",
            "row_number",
            "ato_id",
            "course_code",
            "achievement_date",
            "forename",
            "surname",
            "date_of_birth",
            "uln",
            "grant_eligible",
            "release_at",
            "grant_state",
        ],
        records=[
            (
                achievement_id(upload_id, n + 2),
                upload_id,
                n + 2,
                ato_id,
                course,
                day,
                "A",
                "B",
                date(1990, 1, 1),
                uln,
                True,
                now,
                "held",
            )
            for n, (course, day, uln) in enumerate(earlier)
        ],
    )
    return upload_id


# --- the naive limit: the rules and a COPY, nothing else -----------------------------------------


@dataclass(frozen=True, slots=True)
class FilePlan:
    encoding: str
    delimiter: str
    segments: tuple[Segment, ...]


def plan_file(path: Path) -> FilePlan:
    """The file's record boundaries (untimed): how the naive limit splits it in halves."""
    opener = path_opener(path)
    layout = detect_layout(opener, Encoding.UTF_8)
    assert not isinstance(layout, FileError)
    with opener() as stream:
        # Small chunks, so that even a 10,000-row file splits into two even halves.
        scan = scan_records(stream, layout.delimiter, encoding=Encoding.UTF_8, chunk_rows=1_000)
    assert scan.error is None, scan.error
    segments = tuple(segment for chunk in scan.chunks for segment in chunk.segments)
    return FilePlan(Encoding.UTF_8.value, layout.delimiter, segments)


def naive_worker(
    dsn: str,
    path: str,
    plan: FilePlan,
    segments: Sequence[Segment],
    upload_id: str,
    ato_id: str,
    today: str,
    batch_rows: int,
    barrier: Any,
    results: Any,
) -> None:
    """Child process: its segments through `RowValidator`, valid rows COPYed in batches."""
    results.put(
        asyncio.run(
            _naive(
                dsn,
                Path(path),
                plan,
                segments,
                uuid.UUID(upload_id),
                ato_id,
                date.fromisoformat(today),
                batch_rows,
                barrier,
            )
        )
    )


async def _naive(
    dsn: str,
    path: Path,
    plan: FilePlan,
    segments: Sequence[Segment],
    upload_id: uuid.UUID,
    ato_id: str,
    today: date,
    batch_rows: int,
    barrier: Any,
) -> dict[str, float]:
    opener = path_opener(path)
    encoding = Encoding(plan.encoding)
    layout = detect_layout(opener, encoding)
    assert not isinstance(layout, FileError)
    assert not isinstance(layout.header, FileError)
    header = layout.header
    validate = RowValidator(header, today, bundled_reference()).validate
    connection = await asyncpg.connect(dsn)
    backend = await connection.fetchval("SELECT pg_backend_pid()")
    rows = valid = 0
    copy_s = 0.0
    try:
        await asyncio.to_thread(barrier.wait)  # the processes start together
        started, started_cpu = time.time(), time.process_time()
        started_backend = process_cpu_s(backend)
        batch: list[tuple[Any, ...]] = []
        for record in read_chunk(opener, encoding, plan.delimiter, segments):
            result = validate(record)
            if result is None:
                continue
            rows += 1
            achievement = result.achievement
            if achievement is None:
                continue
            batch.append(
                (
                    achievement_id(upload_id, result.row_number),
                    upload_id,
                    result.row_number,
                    ato_id,
                    *achievement,
                    "held" if achievement.grant_eligible else "not_eligible",
                )
            )
            if len(batch) >= batch_rows:
                copy_s += await _copy_batch(connection, batch)
                valid += len(batch)
                batch = []
        if batch:
            copy_s += await _copy_batch(connection, batch)
            valid += len(batch)
        ended, cpu_s = time.time(), time.process_time() - started_cpu
        pg_cpu_s = process_cpu_s(backend) - started_backend
    finally:
        await connection.close()
    return {
        "started": started,
        "ended": ended,
        "cpu_s": cpu_s,
        "pg_cpu_s": pg_cpu_s,
        "copy_s": copy_s,
        "rows": rows,
        "valid": valid,
        "peak_rss_mb": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    }


async def _copy_batch(connection: asyncpg.Connection, batch: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    await connection.copy_records_to_table(
        "achievements", columns=ACHIEVEMENT_COLUMNS, records=batch
    )
    return time.perf_counter() - started


async def naive_limit(
    dsn: str, path: Path, plan: FilePlan, ato_id: str, today: date, processes: int
) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        upload_id = await record_upload(connection, ato_id, "received", today)
    finally:
        await connection.close()
    context = multiprocessing.get_context("spawn")
    halves = _split(plan.segments, processes)
    barrier, results = context.Barrier(len(halves)), context.Queue()
    workers = [
        context.Process(
            target=naive_worker,
            args=(
                dsn,
                str(path),
                plan,
                part,
                str(upload_id),
                ato_id,
                today.isoformat(),
                ValidatorSettings().chunk_rows,
                barrier,
                results,
            ),
        )
        for part in halves
    ]
    for worker in workers:
        worker.start()
    parts = await collect(workers, results)
    connection = await asyncpg.connect(dsn)
    try:
        await purge(connection, [upload_id])
    finally:
        await connection.close()
    wall_s = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    rows = sum(p["rows"] for p in parts)
    return {
        "processes": processes,
        "wall_s": round(wall_s, 2),
        "rows_per_s": round(rows / wall_s),
        "cpu_s": round(sum(p["cpu_s"] for p in parts), 2),
        "pg_cpu_s": round(sum(p["pg_cpu_s"] for p in parts), 2),
        "copy_s": round(max(p["copy_s"] for p in parts), 2),
        "rows": rows,
        "valid": sum(p["valid"] for p in parts),
        "peak_rss_mb": round(max(p["peak_rss_mb"] for p in parts)),
    }


def _split(segments: Sequence[Segment], parts: int) -> list[tuple[Segment, ...]]:
    """Consecutive runs of segments holding about the same bytes each."""
    total = sum(end - start for start, end, _ in segments)
    out: list[list[Segment]] = [[] for _ in range(parts)]
    seen = 0
    for segment in segments:
        out[min(parts - 1, seen * parts // total)].append(segment)
        seen += segment[1] - segment[0]
    return [tuple(part) for part in out if part]


# --- COPY of the accepted rows --------------------------------------------------------------------


async def copy_accepted(
    dsn: str, source_upload: uuid.UUID, ato_id: str, today: date, scratch: Path
) -> dict[str, Any]:
    """The rows the pipeline accepted, exported (untimed) under a new upload id with the
    pipeline's kind of achievement ids, then COPYed back into `achievements` in one statement."""
    export = scratch / f"accepted-{source_upload}.bin"
    connection = await asyncpg.connect(dsn)
    try:
        upload_id = await record_upload(connection, ato_id, "received", today)
        columns = ", ".join(ACHIEVEMENT_COLUMNS[4:])
        prefix = upload_id.hex[:24]
        await connection.copy_from_query(
            f"SELECT ('{prefix}' || lpad(to_hex(row_number), 8, '0'))::uuid,"
            f" '{upload_id}'::uuid, row_number, ato_id, {columns}"
            " FROM achievements WHERE upload_id = $1 ORDER BY row_number",
            source_upload,
            output=str(export),
            format="binary",
        )
        await purge(connection, [source_upload])
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        started, started_backend = time.perf_counter(), process_cpu_s(backend)
        result = await connection.copy_to_table(
            "achievements", source=str(export), columns=ACHIEVEMENT_COLUMNS, format="binary"
        )
        copy_s = time.perf_counter() - started
        pg_cpu_s = process_cpu_s(backend) - started_backend
        rows = int(result.split()[-1])
        await purge(connection, [upload_id])
    finally:
        await connection.close()
        export.unlink(missing_ok=True)
    return {
        "rows": rows,
        "wall_s": round(copy_s, 2),
        "rows_per_s": round(rows / copy_s),
        "pg_cpu_s": round(pg_cpu_s, 2),
    }


# --- the offline check and the scanner, on one core ----------------------------------------------


def offline_worker(path: str, today: str, cpu: int, results: Any) -> None:
    """Child process pinned to one CPU (Polars started with one thread by the parent)."""
    from services.core.scheme.check import check_file

    os.sched_setaffinity(0, {cpu})
    bundled_reference()
    fallbacks: collections.Counter[str] = collections.Counter()
    started, started_cpu = time.perf_counter(), time.process_time()
    report = check_file(
        path, today=date.fromisoformat(today), policy=Policy.VALID_ROWS, fallbacks=fallbacks
    )
    wall_s, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    results.put(
        {
            "wall_s": round(wall_s, 2),
            "cpu_s": round(cpu_s, 2),
            "rows_per_s": round(report.rows_total / wall_s),
            "rows_per_cpu_s": round(report.rows_total / cpu_s),
            "status": str(report.status),
            "rows_total": report.rows_total,
            "rows_invalid": report.rows_invalid,
            "peak_rss_mb": round(_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)),
            # Records the bulk pass's reading left to the csv module, by reason.
            "fallbacks": dict(fallbacks),
        }
    )


async def offline_check(path: Path, today: date) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    cpu = max(os.sched_getaffinity(0))
    previous = os.environ.get("POLARS_MAX_THREADS")
    os.environ["POLARS_MAX_THREADS"] = "1"  # read by Polars when the child imports it
    try:
        worker = context.Process(
            target=offline_worker, args=(str(path), today.isoformat(), cpu, results)
        )
        worker.start()
    finally:
        if previous is None:
            del os.environ["POLARS_MAX_THREADS"]
        else:
            os.environ["POLARS_MAX_THREADS"] = previous
    return (await collect([worker], results))[0]


async def collect(workers: Sequence[Any], results: Any) -> list[dict[str, Any]]:
    """One result from each child process; raises when one died without its result."""
    parts: list[dict[str, Any]] = []
    while len(parts) < len(workers):
        try:
            parts.append(await asyncio.to_thread(results.get, True, 1.0))
        except queue.Empty:
            if any(w.exitcode not in (None, 0) for w in workers):
                raise RuntimeError("a benchmark child process failed") from None
    for worker in workers:
        await asyncio.to_thread(worker.join)
    return parts


def scanner_mb_s(path: Path, runs: int = 3) -> dict[str, Any]:
    scan_file(path)  # warms the page cache: the figure is the scanner's, not the disk's
    best = min(_timed(scan_file, path) for _ in range(runs))
    size_mb = path.stat().st_size / 1e6
    return {
        "size_mb": round(size_mb, 1),
        "wall_s": round(best, 2),
        "mb_per_s": round(size_mb / best),
    }


def _timed(function: Any, *args: Any) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


# --- the services as processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        """The process and its descendants (a service may start children)."""
        assert self.process is not None
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    todo += [int(child) for child in children.read_text().split()]
        return found

    def reset_peak(self) -> bool:
        """Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the next peak is the
        next stage's own; False where the kernel refuses."""
        ok = True
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the process tree (an upper bound of the tree's peak)."""
        total_kib = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                found = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
                total_kib += int(found.group(1)) if found else 0
        return _mb(total_kib)

    def cpu_s(self) -> float:
        return sum(process_cpu_s(pid) for pid in self.pids())

    def outcome_lines(self) -> list[dict[str, Any]]:
        lines = []
        with self.log_path.open(encoding="utf-8", errors="replace") as log:
            for line in log:
                if '"upload_outcome"' in line:
                    with contextlib.suppress(ValueError):
                        lines.append(json.loads(line))
        return lines


@dataclass
class Pipeline:
    dsn: str
    gateway_url: str
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def validators(self) -> list[Service]:
        return [s for name, s in self.services.items() if name.startswith("validator")]

    def reset_peaks(self) -> bool:
        # Every service reset, whichever refuses.
        done = [service.reset_peak() for service in self.services.values()]
        return all(done)

    def peaks(self) -> dict[str, float]:
        return {name: round(s.peak_rss_mb(), 1) for name, s in self.services.items()}

    def cpu_s(self) -> dict[str, float]:
        return {name: service.cpu_s() for name, service in self.services.items()}

    def decide_s(self, validated_at: float, rows_total: int) -> float | None:
        """The `decide_s` of the validators' `upload_outcome` line for this outcome: the line
        with its rows count logged closest to `validated_at` (stamped just before it)."""
        best: tuple[float, float] | None = None
        for service in self.validators:
            for line in service.outcome_lines():
                if "decide_s" not in line or line.get("rows_total") != rows_total:
                    continue
                logged = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
                distance = abs(logged.timestamp() - validated_at)
                if distance < 5 and (best is None or distance < best[0]):
                    best = (distance, float(line["decide_s"]))
        return best[1] if best else None

    def check_alive(self) -> None:
        for name, service in self.services.items():
            if not service.alive():
                raise RuntimeError(f"{name} exited; its log: {service.log_path}")


def start_pipeline(
    dsn: str, scratch: Path, run_id: str, storage_env: dict[str, str] | None = None
) -> Pipeline:
    """The gateway and two validators; on the folder unless `storage_env` says otherwise."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"},
        "DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": KafkaSettings().bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": f"bench-scale-{run_id}.",
        "STORAGE_BACKEND": "folder",
        "STORAGE_ROOT": str(scratch / "storage"),
        "GATEWAY_PORT": str(port),
        "LOG_LEVEL": "INFO",
        **(storage_env or {}),
    }
    pipeline = Pipeline(dsn=dsn, gateway_url=f"http://127.0.0.1:{port}")
    logs = scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, module, extra in (
        ("gateway", "services.upload_gateway", {}),
        ("validator-1", "services.validator", {"VALIDATOR_WORKER_NAME": "validator-1"}),
        ("validator-2", "services.validator", {"VALIDATOR_WORKER_NAME": "validator-2"}),
    ):
        service = Service(name, module, {**env, **extra}, logs / f"{name}.log")
        service.start()
        pipeline.services[name] = service
    return pipeline


async def wait_for_port(url: str, timeout_s: float = 60) -> None:
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing answered on {url}")


@dataclass
class Upload:
    upload_id: uuid.UUID
    requested: float  # epoch seconds: when the request started
    responded: float  # the gateway's 202
    outcome_seen: float  # the first poll that saw a final status
    status: str


async def upload_file(
    session: aiohttp.ClientSession,
    pipeline: Pipeline,
    api_key: str,
    path: Path,
    *,
    poll_s: float = 0.1,
    timeout_s: float = 3_600,
) -> Upload:
    """Uploads through the gateway (the body streamed from disk) and polls to the outcome."""
    headers = {"Authorization": f"Bearer {api_key}"}
    requested = time.time()
    with _open_binary(path) as body:
        async with session.post(
            f"{pipeline.gateway_url}/v1/uploads",
            data=body,
            params={"file_name": path.name, "terms_accepted": "true", "policy": "valid_rows"},
            headers={**headers, "Content-Type": "text/csv"},
        ) as response:
            created = await response.json()
            if response.status != 202:
                raise RuntimeError(f"upload refused: {response.status} {created}")
    responded = time.time()
    upload_id = uuid.UUID(created["upload_id"])
    deadline = time.monotonic() + timeout_s
    while True:
        async with session.get(
            f"{pipeline.gateway_url}/v1/uploads/{upload_id}", headers=headers
        ) as response:
            status = (await response.json()).get("status")
        if status in FINAL_STATUSES:
            return Upload(upload_id, requested, responded, time.time(), status)
        if time.monotonic() > deadline:
            raise RuntimeError(f"upload {upload_id} not decided in {timeout_s:.0f}s")
        pipeline.check_alive()
        await asyncio.sleep(poll_s)


def _open_binary(path: Path) -> IO[bytes]:
    return path.open("rb")


def _json_object(value: str | dict[str, Any] | None) -> dict[str, Any]:
    """A jsonb column: text unless the connection has a codec for it."""
    if isinstance(value, str):
        loaded: dict[str, Any] = json.loads(value)
        return loaded
    return dict(value or {})


async def upload_facts(dsn: str, upload: Upload, pipeline: Pipeline) -> dict[str, Any]:
    """The outcome and the time split of one pipeline upload, from the database and the logs."""
    connection = await asyncpg.connect(dsn)
    try:
        row = await connection.fetchrow(
            "SELECT status, rows_total, rows_valid, rows_invalid, rows_warned, counts_by_code,"
            " received_at, validation_started_at, validated_at, chunks_total,"
            " (SELECT count(*) FROM achievements a WHERE a.upload_id = u.upload_id)"
            "   AS achievements"
            " FROM uploads u WHERE upload_id = $1",
            upload.upload_id,
        )
    finally:
        await connection.close()
    assert row is not None
    received = _epoch(row["received_at"])
    started = _epoch(row["validation_started_at"])
    validated = _epoch(row["validated_at"])
    assert received is not None
    assert validated is not None
    total_s = upload.outcome_seen - upload.requested
    decide_s = pipeline.decide_s(validated, row["rows_total"])
    return {
        "status": row["status"],
        "rows_total": row["rows_total"],
        "rows_valid": row["rows_valid"],
        "rows_invalid": row["rows_invalid"],
        "rows_warned": row["rows_warned"],
        "counts_by_code": _json_object(row["counts_by_code"]),
        "achievements": row["achievements"],
        "chunks": row["chunks_total"],
        "total_s": round(total_s, 2),
        "rows_per_s": round(row["rows_total"] / total_s),
        "upload_s": round(upload.responded - upload.requested, 2),
        "queue_s": round((started or received) - received, 2),
        "validate_s": round(validated - (started or received) - (decide_s or 0.0), 2),
        "decide_s": decide_s,
        "decide_share": round(decide_s / total_s, 3) if decide_s is not None else None,
        # From the outcome's stamp to the poll that saw it: the commit and the poll interval.
        "seen_after_s": round(upload.outcome_seen - validated, 2),
    }


# --- one size ------------------------------------------------------------------------------------


async def run_size(
    rows: int,
    dsn: str,
    pipeline: Pipeline,
    session: aiohttp.ClientSession,
    scratch: Path,
    today: date,
    style: str = "plain",
) -> tuple[dict[str, Any], Path]:
    """One file of `rows` rows, quoted as `style` says (bench_files.py), through the naive
    limit, the pipeline, COPY and the offline check."""
    label = "" if style == "plain" else f", {style}"
    print(f"\n== {rows:,} rows{label}, {ERROR_SHARE:.0%} invalid, policy valid_rows ==")
    path = scratch / (f"mixed-{rows}.csv" if style == "plain" else f"pipeline-{style}-{rows}.csv")
    started = time.perf_counter()
    earlier = write_mixed_file(path, rows, today=today, error_share=ERROR_SHARE, style=style)
    size_mb = path.stat().st_size / 1e6
    print(f"file: {size_mb:.1f} MB, generated in {time.perf_counter() - started:.1f}s")
    plan = plan_file(path)
    ato_id, api_key = await new_ato(dsn, f"size {rows}")
    connection = await asyncpg.connect(dsn)
    try:
        earlier_upload = await record_earlier(connection, ato_id, earlier, today)
    finally:
        await connection.close()
    result: dict[str, Any] = {"rows": rows, "style": style, "size_mb": round(size_mb, 1)}

    for processes in (1, 2):
        naive = await naive_limit(dsn, path, plan, ato_id, today, processes)
        result[f"naive_{processes}p"] = naive
        print(
            f"naive limit, {processes} process{'es' if processes > 1 else ''}:"
            f" {naive['rows_per_s']:>9,} rows/s  wall {naive['wall_s']:6.1f}s"
            f"  CPU {naive['cpu_s']:5.1f}s + PostgreSQL {naive['pg_cpu_s']:5.1f}s"
            f"  COPY wait {naive['copy_s']:5.1f}s"
            f"  peak RSS {naive['peak_rss_mb']} MB"
        )

    pipeline.reset_peaks()
    monitor = await asyncpg.connect(dsn)
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_statements(dsn, stop_sampling))
    try:
        services_before = pipeline.cpu_s()
        backends_before = await backend_cpu(monitor)
        # Read every 10 ms, as the small-upload target's client does, up to 100,000 rows:
        # a 10,000-row upload's outcome comes within a fraction of a second.
        poll_s = 0.01 if rows <= 100_000 else 0.1
        upload = await upload_file(session, pipeline, api_key, path, poll_s=poll_s)
        backends_after = await backend_cpu(monitor)
        services_after = pipeline.cpu_s()
    finally:
        stop_sampling.set()
        statements = await sampler
        await monitor.close()
    facts = await upload_facts(dsn, upload, pipeline)
    spent = {name: services_after[name] - services_before[name] for name in services_after}
    facts["validator_cpu_s"] = round(
        sum(seconds for name, seconds in spent.items() if name.startswith("validator")), 1
    )
    facts["gateway_cpu_s"] = round(spent["gateway"], 1)
    facts["pg_cpu_s"] = round(cpu_spent(backends_before, backends_after), 1)
    facts["peak_rss_mb"] = pipeline.peaks()
    facts["statements_s"] = statements
    result["pipeline"] = facts
    naive_2p = result["naive_2p"]["rows_per_s"]
    print(
        f"pipeline:                {facts['rows_per_s']:>9,} rows/s  total {facts['total_s']:6.1f}s"
        f" = {facts['rows_per_s'] / naive_2p:.2f}x the 2-process naive limit"
    )
    decide = (
        "decide ?s (no upload_outcome line with decide_s found)"
        if facts["decide_s"] is None
        else f"decide {facts['decide_s']:.1f}s ({facts['decide_share']:.0%} of the total)"
    )
    print(
        f"  split: upload {facts['upload_s']:.1f}s, queue {facts['queue_s']:.1f}s,"
        f" validation {facts['validate_s']:.1f}s ({facts['chunks']} chunks), {decide},"
        f" outcome seen {facts['seen_after_s']:.1f}s after its stamp"
    )
    print(
        f"  CPU: validators {facts['validator_cpu_s']:.1f}s, gateway {facts['gateway_cpu_s']:.1f}s,"
        f" PostgreSQL {facts['pg_cpu_s']:.1f}s ({_cpu_ratio(result):.2f}x the naive limit's"
        " CPU efficiency); peak RSS "
        + ", ".join(f"{name} {mb:.0f} MB" for name, mb in facts["peak_rss_mb"].items())
    )
    print("  PostgreSQL statements running (sampled seconds, all connections together):")
    for statement, seconds in list(statements.items())[:6]:
        print(f"    {seconds:6.1f}s  {statement}")
    print(
        f"  outcome {facts['status']}: {facts['rows_total']:,} rows, {facts['rows_invalid']:,}"
        f" invalid, {facts['rows_warned']:,} warned, {facts['achievements']:,} achievements"
    )

    copy = await copy_accepted(dsn, upload.upload_id, ato_id, today, scratch)
    copy["pipeline_ratio"] = round(copy["wall_s"] / facts["total_s"], 2)
    result["copy_accepted"] = copy
    print(
        f"COPY of the accepted rows: {copy['rows_per_s']:>9,} rows/s  wall {copy['wall_s']:6.1f}s"
        f"  PostgreSQL CPU {copy['pg_cpu_s']:.1f}s"
        f"  (pipeline = {copy['pipeline_ratio']:.2f}x its speed)"
    )

    offline = await offline_check(path, today)
    result["offline_1core"] = offline
    print(
        f"offline check, one core: {offline['rows_per_s']:>9,} rows/s"
        f"  wall {offline['wall_s']:6.1f}s  cpu {offline['cpu_s']:6.1f}s"
        f"  peak RSS {offline['peak_rss_mb']} MB"
    )
    result["problems"] = _problems(result, len(earlier))
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")

    connection = await asyncpg.connect(dsn)
    try:
        await purge(connection, [upload.upload_id, earlier_upload], [ato_id])
    finally:
        await connection.close()
    return result, path


async def sample_statements(
    dsn: str, stop: asyncio.Event, interval_s: float = 0.2
) -> dict[str, float]:
    """How long each statement was seen running on the database (by its first words; lock
    waits apart), sampled every `interval_s` until `stop`: where PostgreSQL's time goes."""
    seen: collections.Counter[str] = collections.Counter()
    connection = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            rows = await connection.fetch(
                "SELECT wait_event_type,"
                " left(btrim(regexp_replace(query, '\\s+', ' ', 'g')), 70) AS query"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'active' AND pid <> pg_backend_pid()"
            )
            for row in rows:
                lock = " [waiting for a lock]" if row["wait_event_type"] == "Lock" else ""
                seen[row["query"] + lock] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    finally:
        await connection.close()
    return {query: round(n * interval_s, 1) for query, n in seen.most_common(10)}


def _cpu_ratio(size: dict[str, Any]) -> float:
    """The 2-process naive limit's CPU seconds (its processes and their backends) over the
    pipeline's (validators, gateway, backends): the ratio of the two by CPU instead of time."""
    naive, piped = size["naive_2p"], size["pipeline"]
    piped_cpu = piped["validator_cpu_s"] + piped["gateway_cpu_s"] + piped["pg_cpu_s"]
    return (naive["cpu_s"] + naive["pg_cpu_s"]) / piped_cpu if piped_cpu else float("nan")


def _problems(result: dict[str, Any], earlier: int) -> list[str]:
    """What would make the figures meaningless: the paths disagreeing, rows left undone."""
    piped, offline = result["pipeline"], result["offline_1core"]
    dup_02 = piped["counts_by_code"].get("DUP_02", 0)
    problems = []
    if piped["status"] != "partially_accepted":
        problems.append(f"pipeline outcome {piped['status']}")
    if piped["rows_total"] != result["rows"] or offline["rows_total"] != result["rows"]:
        problems.append("rows_total differs from the rows written")
    if dup_02 != earlier or piped["rows_invalid"] != offline["rows_invalid"] + dup_02:
        problems.append(
            f"invalid rows: pipeline {piped['rows_invalid']}, offline {offline['rows_invalid']}"
            f" + DUP_02 {dup_02} (expected {earlier})"
        )
    if piped["achievements"] != piped["rows_valid"]:
        problems.append(f"{piped['achievements']} achievements for {piped['rows_valid']} valid")
    if result["copy_accepted"]["rows"] != piped["rows_valid"]:
        problems.append("the COPY did not take every accepted row")
    return problems


# --- fairness ------------------------------------------------------------------------------------


class DecideStalled(Exception):
    """An upload has had every chunk done for longer than the stall limit, without an outcome."""


async def fairness(
    fair_rows: int,
    dsn: str,
    pipeline: Pipeline,
    session: aiohttp.ClientSession,
    scratch: Path,
    today: date,
    *,
    one_ato: bool,
    stall_s: float,
) -> dict[str, Any]:
    """Two big uploads (of one ATO, or of two ATOs) first alone, then while 20-row uploads of
    other ATOs come one after another; DecideStalled when an outcome does not come."""
    owners = "one ATO's two" if one_ato else "two ATOs' (one each)"
    print(f"\n== fairness: {owners} {fair_rows:,}-row uploads, other ATOs' 20-row uploads ==")
    big = [scratch / f"fair-{fair_rows}-{n}.csv" for n in (1, 2)]
    for n, path in enumerate(big):
        if not path.exists():
            write_mixed_file(path, fair_rows, today=today, first=n * fair_rows)
    small = scratch / f"small-{SMALL_ROWS}.csv"
    write_mixed_file(small, SMALL_ROWS, today=today)

    async def big_pair(label: str) -> tuple[list[asyncio.Task[Upload]], list[str]]:
        keys = [await new_ato(dsn, f"fair {label} {n}") for n in range(1 if one_ato else 2)]
        tasks = [
            asyncio.create_task(upload_file(session, pipeline, keys[n % len(keys)][1], path))
            for n, path in enumerate(big)
        ]
        return tasks, [ato_id for ato_id, _ in keys]

    pipeline.reset_peaks()
    tasks, alone_atos = await big_pair("alone")
    watch = asyncio.create_task(watch_decides(dsn, alone_atos, stall_s))
    try:
        alone = await until(asyncio.gather(*tasks), watch)
    finally:
        watch.cancel()
    alone_s = [u.outcome_seen - u.requested for u in alone]
    print("alone:  " + ", ".join(f"{s:.1f}s" for s in alone_s))
    await _purge_uploads(dsn, [u.upload_id for u in alone], alone_atos)

    tasks, shared_atos = await big_pair("shared")
    small_s: list[float] = []
    small_ids: list[uuid.UUID] = []
    small_atos: list[str] = []
    watch = asyncio.create_task(watch_decides(dsn, shared_atos, stall_s))
    try:
        await until(_wait_validating(dsn, shared_atos, tasks), watch)
        # At least one small upload, even when the big ones are done first (a very fast
        # machine or a small --fair-rows): then its figure is not one of contention.
        while not small_s or not all(task.done() for task in tasks):
            contended = not all(task.done() for task in tasks)
            ato_id, api_key = await new_ato(dsn, f"small {len(small_s) + 1}")
            small_atos.append(ato_id)
            upload = await until(
                upload_file(session, pipeline, api_key, small, poll_s=0.05, timeout_s=600), watch
            )
            small_ids.append(upload.upload_id)
            small_s.append(upload.outcome_seen - upload.requested)
            print(
                f"  {SMALL_ROWS}-row upload {len(small_s)}: {small_s[-1]:.2f}s to {upload.status}"
                + ("" if contended else " (the big ones were done before it)")
            )
            await asyncio.sleep(1.0)
        shared = await until(asyncio.gather(*tasks), watch)
    finally:
        watch.cancel()
    shared_s = [u.outcome_seen - u.requested for u in shared]
    peaks = pipeline.peaks()
    print("shared: " + ", ".join(f"{s:.1f}s" for s in shared_s))
    slower = max(shared_s) / max(alone_s) - 1
    print(
        f"small uploads: {len(small_s)}, worst {max(small_s):.2f}s, median"
        f" {statistics.median(small_s):.2f}s; big ones {slower:+.0%} against alone (the later"
        " of the two)"
    )
    await _purge_uploads(dsn, [u.upload_id for u in shared] + small_ids, shared_atos + small_atos)
    return {
        "big_uploads_of": "one ATO" if one_ato else "two ATOs",
        "big_rows": fair_rows,
        "small_rows": SMALL_ROWS,
        "big_alone_s": [round(s, 1) for s in alone_s],
        "big_shared_s": [round(s, 1) for s in shared_s],
        "big_slower": round(slower, 3),
        "small_uploads": len(small_s),
        "small_worst_s": round(max(small_s), 2),
        "small_median_s": round(statistics.median(small_s), 2),
        "small_s": [round(s, 2) for s in small_s],
        "peak_rss_mb": peaks,
    }


async def until(awaitable: Any, watch: asyncio.Task[None]) -> Any:
    """`awaitable`'s result, unless `watch` raises first (then `awaitable` is cancelled)."""
    work = asyncio.ensure_future(awaitable)
    await asyncio.wait([work, watch], return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        watch.result()  # raises DecideStalled
    return work.result()


async def watch_decides(dsn: str, ato_ids: Sequence[str], stall_s: float) -> None:
    """Raises DecideStalled when an upload of these ATOs has had every chunk done for
    `stall_s` without an outcome, naming the statements running that long."""
    connection = await asyncpg.connect(dsn)
    waiting_since: dict[uuid.UUID, float] = {}
    try:
        while True:
            waiting = await connection.fetch(
                "SELECT upload_id FROM uploads WHERE ato_id = ANY($1) AND status = 'validating'"
                " AND chunks_total IS NOT NULL AND chunks_done >= chunks_total",
                list(ato_ids),
            )
            now = time.monotonic()
            waiting_since = {
                row["upload_id"]: waiting_since.get(row["upload_id"], now) for row in waiting
            }
            stalled = [u for u, since in waiting_since.items() if now - since > stall_s]
            if stalled:
                running = await connection.fetch(
                    "SELECT round(extract(epoch FROM now() - query_start)) AS s,"
                    " wait_event_type AS waits_for,"
                    " left(btrim(regexp_replace(query, '\\s+', ' ', 'g')), 120) AS query"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state = 'active' AND pid <> pg_backend_pid() ORDER BY query_start"
                )
                statements = "; ".join(
                    f"for {row['s']:.0f}s"
                    + (f" waiting for a {row['waits_for']}" if row["waits_for"] else "")
                    + f": {row['query']}"
                    for row in running
                )
                raise DecideStalled(
                    f"upload {stalled[0]} had every chunk done {stall_s:.0f}s ago and no"
                    f" outcome; running: {statements or 'nothing'}"
                )
            await asyncio.sleep(1.0)
    finally:
        await connection.close()


async def _wait_validating(
    dsn: str, ato_ids: Sequence[str], tasks: Sequence[asyncio.Task[Upload]]
) -> None:
    """Until both big uploads have chunks done: the small ones arrive while they validate."""
    connection = await asyncpg.connect(dsn)
    try:
        while not any(task.done() for task in tasks):
            busy = await connection.fetchval(
                "SELECT count(*) FROM uploads WHERE ato_id = ANY($1) AND chunks_done > 0",
                list(ato_ids),
            )
            if busy >= len(tasks):
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def _purge_uploads(dsn: str, uploads: Sequence[uuid.UUID], atos: Sequence[str]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await purge(connection, uploads, atos)
    finally:
        await connection.close()


# --- the report ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    return {
        "nproc": os.cpu_count(),
        "cpu": model.group(1).strip() if model else "?",
        "memory_gb": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return commit + (" with uncommitted changes" if dirty else "")


def summary_rows(sizes: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for s in sizes:
        piped, naive_2p = s["pipeline"], s["naive_2p"]
        decide = piped["decide_s"]
        validators = [mb for name, mb in piped["peak_rss_mb"].items() if name.startswith("valid")]
        style = s.get("style", "plain")
        rows.append(
            [
                f"{s['rows']:,}" + ("" if style == "plain" else f" {style}"),
                f"{s['naive_1p']['rows_per_s']:,}",
                f"{naive_2p['rows_per_s']:,}",
                f"{piped['total_s']:.1f}",
                f"{piped['rows_per_s']:,}",
                f"{piped['rows_per_s'] / naive_2p['rows_per_s']:.2f}",
                f"{_cpu_ratio(s):.2f}",
                "?" if decide is None else f"{decide:.1f} ({piped['decide_share']:.0%})",
                f"{s['copy_accepted']['rows_per_s']:,}",
                f"{s['copy_accepted']['pipeline_ratio']:.2f}",
                f"{s['offline_1core']['rows_per_s']:,}",
                " / ".join(f"{mb:.0f}" for mb in validators),
                f"{piped['peak_rss_mb'].get('gateway', 0):.0f}",
            ]
        )
    return rows


SUMMARY_HEADER = [
    "rows",
    "naive 1 proc rows/s",
    "naive 2 proc rows/s",
    "pipeline s",
    "pipeline rows/s",
    "pipeline / naive 2 proc",
    "same, by CPU s",
    "decide s (share)",
    "COPY accepted rows/s",
    "pipeline / COPY",
    "offline 1 core rows/s",
    "validator peak RSS MB (1 / 2)",
    "gateway peak RSS MB",
]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    # A `|` in a cell (SQL's split_part(key, '|', 1)) would end the cell.
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def all_sizes(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The plain files' sizes, then the same rows quoted as spreadsheets quote them."""
    return [*report["sizes"], *report.get("styled_sizes", [])]


def print_summary(report: dict[str, Any]) -> None:
    print("\n== summary ==")
    rows = summary_rows(all_sizes(report))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(SUMMARY_HEADER)]
    for line in [SUMMARY_HEADER, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    for line in target_lines(report):
        print(line)


def target_lines(report: dict[str, Any]) -> list[str]:
    """The issues' targets beside the figures (shown, never asserted)."""
    largest = report["sizes"][-1] if report["sizes"] else None
    lines = []
    if largest is not None:
        piped = largest["pipeline"]
        n = f"{largest['rows']:,} rows"
        ratio = piped["rows_per_s"] / largest["naive_2p"]["rows_per_s"]
        lines.append(f"- pipeline / 2-process naive limit at {n}: {ratio:.2f} (target ≥ 0.8)")
        ratio = largest["copy_accepted"]["pipeline_ratio"]
        lines.append(f"- pipeline / COPY of the accepted rows at {n}: {ratio:.2f} (target ≥ 0.8)")
        if piped["decide_share"] is not None:
            share = piped["decide_share"]
            lines.append(f"- decide step share of the total at {n}: {share:.1%} (target ≤ 10%)")
    for styled in report.get("styled_sizes", []):
        ratio = styled["pipeline"]["rows_per_s"] / styled["naive_2p"]["rows_per_s"]
        lines.append(
            f"- pipeline / 2-process naive limit, {styled['rows']:,} rows, {styled['style']}"
            f" file: {ratio:.2f} (target ≥ 0.8)"
        )
    peaks = [
        mb
        for s in report["sizes"]
        for name, mb in s["pipeline"]["peak_rss_mb"].items()
        if name.startswith("validator")
    ]
    if report.get("fairness"):
        peaks += [
            mb for name, mb in report["fairness"]["peak_rss_mb"].items() if name.startswith("val")
        ]
    if peaks:
        lines.append(
            f"- validator peak RSS (process tree), worst: {max(peaks):.0f} MB (target ≤ 300)"
        )
    fair = report.get("fairness")
    if fair:
        lines.append(
            f"- 20-row upload while two {fair['big_rows']:,}-row uploads ({fair['big_uploads_of']})"
            " validate: worst"
            f" {fair['small_worst_s']:.2f}s of {fair['small_uploads']} (target ≤ 3 s)"
        )
        lines.append(f"- the big ones against alone: {fair['big_slower']:+.1%} (target ≤ +10%)")
    stored = report.get("storage")
    if stored:
        lines.append(
            f"- S3 speed against the folder's, {stored['rows']:,} rows from the POST to the"
            f" outcome: {stored['s3_speed_vs_folder']:.2f} (target ≥ 0.9;"
            f" folder {stored['folder']['total_s']:.1f}s, S3 {stored['s3']['total_s']:.1f}s)"
        )
    offline = report.get("offline") or {}
    for style in STYLES:
        figures = offline.get(f"{style}_2pct")
        if figures:
            lines.append(
                f"- offline check, one core, {style} file: {figures['rows_per_s']:,} rows/s"
                f" (target ≥ {OFFLINE_TARGET_ROWS_S:,})"
            )
    return lines


def write_doc(report: dict[str, Any]) -> None:
    m = report["machine"]
    db = report["database"]
    fair = report.get("fairness")
    offline = report["offline"]
    parts = [
        "# Performance",
        "",
        "The figures of the last full `make bench` run (`bench/bench_scale.py`, also in"
        " `bench/results/latest.json`). They are printed, never asserted: the machine is shared"
        " and runs vary.",
        "",
        "## How to reproduce",
        "",
        "```sh",
        "make bench        # make infra (Kafka, PostgreSQL), then " + report["command"],
        "```",
        "",
        f"The first run creates the database `{db['name']}` on the stack's PostgreSQL and seeds"
        f" it with {report['seed_rows']:,} achievements of earlier uploads ({SEED_ATOS:,} ATOs,"
        f" uploads of {SEED_UPLOAD_ROWS:,} rows, COPY from child processes); later runs reuse"
        " it. Every benchmark upload's rows are deleted afterwards. `--quick` (10k and 100k"
        " rows, a smaller fairness run) checks that the benchmark works and writes neither"
        " this page nor the JSON.",
        "",
        f"Run on {report['date']}, commit {report['commit']}: {m['nproc']} CPUs ({m['cpu']}),"
        f" {m['memory_gb']} GB memory, Python {m['python']}, PostgreSQL"
        f" {report['postgres']}. The database held {db['achievements']:,} achievements"
        f" ({db['size_gb']} GB).",
        "",
        "## Throughput, per file size (2% invalid rows, policy valid_rows)",
        "",
        markdown_table(SUMMARY_HEADER, summary_rows(all_sizes(report))),
        "",
        "- **naive limit**: read the file, `RowValidator` row by row, COPY the valid rows into"
        " `achievements` (its indexes, the seeded rows) in batches of a chunk's rows; no"
        " Kafka, no HTTP, no duplicate rules. Two processes take the two halves of the file.",
        "- **pipeline**: the gateway and two validator processes; from the upload request to"
        " the first poll of `GET /v1/uploads/{id}` that shows the outcome.",
        "- **by CPU s**: the naive limit's CPU seconds (its processes and their PostgreSQL"
        " backends) over the pipeline's (validators, gateway, their backends). PostgreSQL runs"
        " on the same machine, so on a loaded machine this says more than the wall clock.",
        "- **decide**: the transaction that decides the outcome (`upload_outcome.decide`, the"
        " `decide_s` of its log line), and its share of the pipeline's time.",
        "- **COPY accepted**: the rows the pipeline accepted, COPYed again into `achievements`"
        " in one statement; `pipeline / COPY` is the COPY's time over the pipeline's.",
        "- **offline**: `achievements check` (`check_file`) in a process pinned to one CPU,"
        " Polars on one thread.",
        "- **peak RSS**: VmHWM of each service's process tree, reset before the upload.",
        "",
        "## Where the pipeline's time goes",
        "",
        markdown_table(
            [
                "rows",
                "upload s",
                "queue s",
                "validation s",
                "decide s",
                "chunks",
                "CPU s: validators",
                "gateway",
                "PostgreSQL",
            ],
            [
                [
                    f"{s['rows']:,}",
                    f"{s['pipeline']['upload_s']:.1f}",
                    f"{s['pipeline']['queue_s']:.1f}",
                    f"{s['pipeline']['validate_s']:.1f}",
                    "?"
                    if s["pipeline"]["decide_s"] is None
                    else f"{s['pipeline']['decide_s']:.1f}",
                    str(s["pipeline"]["chunks"]),
                    f"{s['pipeline']['validator_cpu_s']:.1f}",
                    f"{s['pipeline']['gateway_cpu_s']:.1f}",
                    f"{s['pipeline']['pg_cpu_s']:.1f}",
                ]
                for s in report["sizes"]
            ],
        ),
        "",
        "Upload: the request until the gateway's 202. Queue: `received_at` to"
        " `validation_started_at` (outbox relay, Kafka, the planner's poll). Validation: planning"
        " and every chunk, to the start of the deciding transaction.",
        "",
        *_statements_section(report["sizes"][-1] if report["sizes"] else None),
        "## The offline check and the record scanner, one core",
        "",
        markdown_table(
            ["file", "rows/s", "rows/s of CPU", "rows that left the fast path (why)"],
            [
                [
                    f"{offline[key]['rows_total']:,} rows, {label}",
                    f"{offline[key]['rows_per_s']:,}",
                    f"{offline[key]['rows_per_cpu_s']:,}",
                    fallback_shares(
                        collections.Counter(offline[key].get("fallbacks", {})),
                        offline[key]["rows_total"],
                    ),
                ]
                for key, label in OFFLINE_FILES
                if key in offline
            ],
        ),
        "",
        f"Record scanner (`scan_records`, the planning pass) on the {offline['scanner']['size_mb']}"
        f" MB file: {offline['scanner']['mb_per_s']} MB/s.",
        "",
    ]
    if fair:
        owner = "One ATO uploads" if fair["big_uploads_of"] == "one ATO" else "Two ATOs upload"
        parts += [
            "## Fairness",
            "",
            f"{owner} two files of {fair['big_rows']:,} rows at once, first alone, then"
            f" again while other ATOs upload {fair['small_rows']}-row files one after another"
            " (each waits for its outcome, then a second's pause).",
            "",
            markdown_table(
                ["figure", "value"],
                [
                    [
                        f"{fair['small_rows']}-row uploads: worst / median time to outcome",
                        f"{fair['small_worst_s']:.2f} s / {fair['small_median_s']:.2f} s"
                        f" ({fair['small_uploads']} of them)",
                    ],
                    [
                        "big uploads alone (s)",
                        " / ".join(f"{s:.1f}" for s in fair["big_alone_s"]),
                    ],
                    [
                        "big uploads with the small ones (s)",
                        " / ".join(f"{s:.1f}" for s in fair["big_shared_s"]),
                    ],
                    ["the later big one against alone", f"{fair['big_slower']:+.1%}"],
                ],
            ),
            "",
        ]
    parts += ["## Against the targets", "", *target_lines(report), ""]
    if report["problems"]:
        parts += [
            "## Problems this run found",
            "",
            *[f"- {problem}" for problem in report["problems"]],
            "",
        ]
    # What people wrote below the marker (what a run's figures mean) outlives the figures.
    old = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    notes = old.partition(NOTES_MARKER)[2] if NOTES_MARKER in old else "\n"
    DOC_PATH.write_text("\n".join(parts) + "\n" + NOTES_MARKER + notes, encoding="utf-8")


def _statements_section(size: dict[str, Any] | None) -> list[str]:
    if size is None or not size["pipeline"].get("statements_s"):
        return []
    return [
        f"PostgreSQL statements seen running during the {size['rows']:,}-row upload (sampled"
        " every 0.2 s over all connections; seconds of statement time, so two at once count"
        " twice):",
        "",
        markdown_table(
            ["seconds", "statement (its start)"],
            [
                [f"{seconds:.1f}", f"`{statement}`"]
                for statement, seconds in size["pipeline"]["statements_s"].items()
            ],
        ),
        "",
    ]


# --- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    dsn = database_url(args.database)
    today = datetime.now(UTC).date()
    run_id = uuid.uuid4().hex[:8]
    report: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine(),
        "seed_rows": args.seed_rows,
    }
    print(
        f"bench_scale {run_id}: {report['machine']['nproc']} CPUs,"
        f" {report['machine']['memory_gb']} GB, commit {report['commit']}"
    )
    report["postgres"] = (await _admin_fetchval("SHOW server_version")).split()[0]
    held = await hold_database(args.database)
    try:
        return await _run_held(args, report, run_id, dsn, today)
    finally:
        await held.close()


async def _run_held(
    args: argparse.Namespace, report: dict[str, Any], run_id: str, dsn: str, today: date
) -> dict[str, Any]:
    report["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")  # after any wait
    report["database"] = await prepare_database(args.database, args.seed_rows)
    # The project's scratch folder when there is one: the same disk as the stack's storage.
    scratch = Path(
        tempfile.mkdtemp(
            prefix="bench-scale-",
            dir=REPO_ROOT / ".local" if (REPO_ROOT / ".local").is_dir() else None,
        )
    )
    pipeline = start_pipeline(dsn, scratch, run_id)
    report["sizes"] = []
    report["problems"] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            await warm_up(session, pipeline, dsn, scratch, today)
            largest: Path | None = None
            for rows in args.sizes:
                result, largest = await run_size(rows, dsn, pipeline, session, scratch, today)
                report["sizes"].append(result)
                report["problems"] += [f"{rows:,} rows: {p}" for p in result["problems"]]
            # The largest size again as spreadsheets quote it (half the rows with quoted
            # cells), and with the shapes they never write (hand-edited quotes).
            report["styled_sizes"] = []
            for style in STYLES if args.sizes else ():
                result, styled_path = await run_size(
                    args.sizes[-1], dsn, pipeline, session, scratch, today, style=style
                )
                styled_path.unlink()
                report["styled_sizes"].append(result)
                report["problems"] += [
                    f"{args.sizes[-1]:,} rows, {style}: {p}" for p in result["problems"]
                ]
            # The scenario first (one ATO's two big uploads); if an outcome stalls
            # there, the same with the big uploads of two ATOs, to still measure fairness.
            for one_ato in (True, False) if args.fair_rows else ():
                try:
                    report["fairness"] = await fairness(
                        args.fair_rows,
                        dsn,
                        pipeline,
                        session,
                        scratch,
                        today,
                        one_ato=one_ato,
                        stall_s=args.stall_s,
                    )
                    break
                except DecideStalled as stalled:
                    owners = "one ATO's two" if one_ato else "two ATOs'"
                    problem = f"fairness, {owners} {args.fair_rows:,}-row uploads: {stalled}"
                    print(f"PROBLEM: {problem}")
                    report["problems"].append(problem)
                    # The stalled statement holds its locks until its backend goes, and the
                    # other validators' workers wait behind them: the services start afresh.
                    pipeline = await restart_pipeline(pipeline, dsn, scratch)
                    await warm_up(session, pipeline, dsn, scratch, today)
            # Inside the session: the storage stage sends its uploads with it too.
            if args.storage_rows:
                report["storage"], pipeline = await storage_side_by_side(
                    args.storage_rows, dsn, pipeline, session, scratch, today
                )
                report["problems"] += report["storage"]["problems"]
        # The uploads' purges leave PostgreSQL vacuuming for a while: the one-core figures
        # wait for it, as they would on a machine doing nothing else.
        await database_at_rest(dsn)
        report["offline"] = await offline_figures(report, largest, scratch, today)
    except BaseException:
        args.keep = True  # the service logs explain a failure
        raise
    finally:
        for service in pipeline.services.values():
            service.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"files and service logs kept in {scratch}")
    connection = await asyncpg.connect(dsn)
    try:
        await purge_run_atos(connection)  # whatever a failed stage left
        after = await connection.fetchval("SELECT count(*) FROM achievements")
    finally:
        await connection.close()
    grown = after - report["database"]["achievements"]
    print(f"\nachievements after the run: {after:,} ({grown:+,} against before the run)")
    report["database"]["achievements_after"] = after
    return report


async def warm_up(
    session: aiohttp.ClientSession, pipeline: Pipeline, dsn: str, scratch: Path, today: date
) -> None:
    """Waits for the services and passes one small upload (the consumer group joins)."""
    await wait_for_port(pipeline.gateway_url)
    warm = scratch / "warm-up.csv"
    write_mixed_file(warm, SMALL_ROWS, today=today)
    ato_id, api_key = await new_ato(dsn, "warm-up")
    started = time.perf_counter()
    upload = await upload_file(session, pipeline, api_key, warm, timeout_s=300)
    await _purge_uploads(dsn, [upload.upload_id], [ato_id])
    print(
        f"\nservices up; a warm-up upload reached {upload.status} in"
        f" {time.perf_counter() - started:.1f}s (consumer groups joining included)"
    )


STORAGE_ROUNDS = 3  # folder, S3, folder, S3...: the best of each, so that neither goes first only


async def storage_side_by_side(
    rows: int,
    dsn: str,
    pipeline: Pipeline,
    session: aiohttp.ClientSession,
    scratch: Path,
    today: date,
) -> tuple[dict[str, Any], Pipeline]:
    """One file, from the POST to the outcome, stored in the folder and then in S3 by the same
    services, `STORAGE_ROUNDS` times in turn (only one pipeline runs at a time: the same CPUs
    for both); the best time of each is compared. Returns the figures and the pipeline left
    running (the caller stops it)."""
    print(f"\n== storage side by side: {rows:,} rows in the folder, then in S3, in turn ==")
    path = scratch / f"storage-{rows}.csv"
    write_mixed_file(path, rows, today=today, error_share=ERROR_SHARE)
    result: dict[str, Any] = {"rows": rows, "size_mb": round(path.stat().st_size / 1e6, 1)}
    runs: dict[str, list[dict[str, Any]]] = {"folder": [], "s3": []}

    async def one(label: str, on: Pipeline, server_pid: int | None = None) -> None:
        ato_id, api_key = await new_ato(dsn, f"storage {label} {rows}")
        server_cpu = process_cpu_s(server_pid) if server_pid else 0.0
        services_cpu = sum(on.cpu_s().values())
        upload = await upload_file(session, on, api_key, path)
        facts = await upload_facts(dsn, upload, on)
        facts["services_cpu_s"] = round(sum(on.cpu_s().values()) - services_cpu, 1)
        if server_pid:
            facts["s3_server_cpu_s"] = round(process_cpu_s(server_pid) - server_cpu, 1)
        await _purge_uploads(dsn, [upload.upload_id], [ato_id])
        print(
            f"{label:>6}: {facts['status']} in {facts['total_s']:6.1f}s"
            f" ({facts['rows_per_s']:,} rows/s; upload {facts['upload_s']:.1f}s,"
            f" queue {facts['queue_s']:.1f}s; services' CPU {facts['services_cpu_s']}s"
            + (f", the S3 server's {facts['s3_server_cpu_s']}s)" if server_pid else ")")
        )
        runs[label].append(facts)

    with running_s3_server(scratch / "s3") as server:
        storage_env = {
            "STORAGE_BACKEND": "s3",
            "STORAGE_S3_ENDPOINT": server.endpoint,
            "STORAGE_S3_BUCKET": server.bucket,
            "STORAGE_S3_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": server.access_key_id,
            "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
        }
        for round_no in range(STORAGE_ROUNDS):
            if round_no:
                pipeline = start_pipeline(dsn, scratch, uuid.uuid4().hex[:8])
                await warm_up(session, pipeline, dsn, scratch, today)
            await one("folder", pipeline)
            for service in pipeline.services.values():
                service.stop()
            pipeline = start_pipeline(dsn, scratch, uuid.uuid4().hex[:8], storage_env)
            await warm_up(session, pipeline, dsn, scratch, today)
            await one("s3", pipeline, server.process.pid)
            if round_no + 1 < STORAGE_ROUNDS:
                for service in pipeline.services.values():
                    service.stop()
    path.unlink()
    for label, label_runs in runs.items():
        result[label] = min(label_runs, key=lambda facts: float(facts["total_s"]))
        result[f"{label}_runs_s"] = [facts["total_s"] for facts in label_runs]
    folder_s, s3_s = result["folder"]["total_s"], result["s3"]["total_s"]
    result["s3_speed_vs_folder"] = round(folder_s / s3_s, 3)
    print(
        f"S3 speed / folder speed, best of {STORAGE_ROUNDS} each:"
        f" {result['s3_speed_vs_folder']:.2f} (target ≥ 0.9)"
    )
    result["problems"] = [
        f"storage side by side: {field} differs: folder {facts[field]!r}, S3 {other[field]!r}"
        for facts in runs["folder"]
        for other in runs["s3"]
        for field in OUTCOME_FIELDS
        if facts[field] != other[field]
    ]
    return result, pipeline


async def restart_pipeline(pipeline: Pipeline, dsn: str, scratch: Path) -> Pipeline:
    """Stops the services, ends their backends' statements, cleans up, starts them again."""
    for service in pipeline.services.values():
        service.stop()
    connection = await asyncpg.connect(dsn)
    try:
        # A backend keeps running its statement after its client is gone.
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        await purge_run_atos(connection)
    finally:
        await connection.close()
    return start_pipeline(dsn, scratch, uuid.uuid4().hex[:8])


async def offline_figures(
    report: dict[str, Any], largest: Path | None, scratch: Path, today: date
) -> dict[str, Any]:
    print("\n== offline check and record scanner, one core ==")
    figures: dict[str, Any] = {}
    if largest is None:
        return figures
    rows = report["sizes"][-1]["rows"]
    figures["invalid_2pct"] = report["sizes"][-1]["offline_1core"]
    high = scratch / f"mixed-{rows}-20pct.csv"
    write_mixed_file(high, rows, today=today, error_share=HIGH_ERROR_SHARE)
    figures["invalid_20pct"] = await offline_check(high, today)
    high.unlink()
    # The same rows quoted as spreadsheets quote them, and with the shapes they never write.
    for style in ("quoted", "mixed"):
        styled = scratch / f"styled-{style}-{rows}.csv"  # not mixed-{rows}.csv, the largest
        write_mixed_file(styled, rows, today=today, error_share=ERROR_SHARE, style=style)
        figures[f"{style}_2pct"] = await offline_check(styled, today)
        styled.unlink()
    for key, label in OFFLINE_FILES:
        f = figures[key]
        print(
            f"offline check, {rows:,} rows, {label}: {f['rows_per_s']:>8,} rows/s"
            f" ({f['rows_per_cpu_s']:,} per CPU second); left the fast path:"
            f" {fallback_shares(collections.Counter(f.get('fallbacks', {})), f['rows_total'])}"
        )
    figures["scanner"] = scanner_mb_s(largest)
    print(
        f"record scanner on the {figures['scanner']['size_mb']} MB file:"
        f" {figures['scanner']['mb_per_s']} MB/s"
    )
    return figures


STYLES = ("quoted", "mixed")
OFFLINE_TARGET_ROWS_S = 300_000  # issue 23: the quoted and the mixed file, one core
REST_TIMEOUT_S = 120.0


async def database_at_rest(dsn: str) -> None:
    """Waits (up to REST_TIMEOUT_S) until no other backend of the cluster is active, autovacuum
    workers included."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + REST_TIMEOUT_S
        while time.monotonic() < deadline:
            busy = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND (state = 'active' OR backend_type = 'autovacuum worker')"
            )
            if not busy:
                return
            await asyncio.sleep(1.0)
        print(f"PostgreSQL still busy after {REST_TIMEOUT_S:.0f} s: offline figures taken anyway")
    finally:
        await connection.close()


# The offline check's files: (key in the report, label), the plain ones first.
OFFLINE_FILES = (
    ("invalid_2pct", "2% invalid"),
    ("invalid_20pct", "20% invalid"),
    ("quoted_2pct", "half the rows quoted, 2% invalid"),
    ("mixed_2pct", "quoted and hand-edited shapes, 2% invalid"),
)


def _sizes(text: str) -> list[int]:
    return sorted(int(part.replace("_", "")) for part in text.split(",") if part.strip())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, help="rows per file, comma-separated")
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows, small fairness")
    parser.add_argument("--fair-rows", type=int, help=f"rows of each big upload ({FAIR_ROWS:,})")
    parser.add_argument("--seed-rows", type=int, default=10_000_000)
    parser.add_argument("--database", default=DATABASE, help="kept between runs")
    parser.add_argument(
        "--stall-s",
        type=float,
        default=300.0,
        help="an upload with every chunk done and no outcome for this long is reported stalled",
    )
    parser.add_argument(
        "--storage-rows",
        type=int,
        help=f"rows of the folder-against-S3 upload ({STORAGE_ROWS:,}; 0 leaves it out)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the files and service logs")
    args = parser.parse_args(argv)
    if args.storage_rows is None:
        args.storage_rows = QUICK_STORAGE_ROWS if args.quick else STORAGE_ROWS
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    if args.fair_rows is None:
        args.fair_rows = QUICK_FAIR_ROWS if args.quick else FAIR_ROWS
    command = " ".join([".venv/bin/python bench/bench_scale.py", *argv])
    if os.environ.get("DEPLOYMENT_MODE") == "local":  # `make bench` sets it for the local stack
        command = "DEPLOYMENT_MODE=local " + command
    report = asyncio.run(run(args, command))
    print_summary(report)
    problems = report["problems"]
    if args.quick:
        # A check that the benchmark works, not figures to keep.
        print("\n--quick: bench/results/latest.json and docs/performance.md left as they were")
    else:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        results = RESULTS_DIR / "latest.json"
        results.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
        write_doc(report)
        print(f"\nwrote {results.relative_to(REPO_ROOT)} and {DOC_PATH.relative_to(REPO_ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
