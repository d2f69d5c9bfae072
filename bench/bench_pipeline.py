"""One huge upload through the validator pipeline, side by side with the offline check.

    .venv/bin/python bench/bench_pipeline.py [--rows 1000000] [--compare-sizes] [--keep]
        [--profile PATH]

For each size (100,000 then `--rows` with `--compare-sizes`, else `--rows` alone) it creates a
fresh database on the shared PostgreSQL (migrated, reference data loaded, dropped WITH (FORCE)
at the end even on failure), generates a file of distinct learners with mixed identifiers and
spreadsheet habits, ~5% invalid rows and ~3% warnings (so the error path and the stored-issue
cap are exercised), and a handful of earlier accepted achievements for DUP_02. Then, each in
its own fresh child process so the peak RSS is per stage:

- offline: `check_file` on the file (policy valid_rows);
- pipeline: `UploadValidation(...).run()` with policy valid_rows, so the accepted rows are
  inserted into `achievements` and announced in the outbox, as a worker does.

Prints rows/s, wall and CPU seconds, peak RSS, the pipeline/offline ratio and the pipeline's
time split: the streaming pass (inspection, rules, batched COPY) and the final transaction,
step by step. Kafka is not involved: events stay in the outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import functools
import hashlib
import multiprocessing
import random
import resource
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from bench_offline_check import _COURSES, _FORENAMES, _SURNAMES, UPLOAD_DATE, _valid_ulns
from pydantic import SecretStr
from scratch_database import admin, database_url

from services.core.db import create_pool, migrate_dsn
from services.core.settings import PostgresSettings

SMALL_ROWS = 100_000
ERROR_SHARE = 0.05
# NI number prefixes that pass NINO_02/03 (no D F I Q U V, no O second, not reserved).
_NINO_PREFIXES = ("AB", "CE", "HJ", "JK", "LM", "PR", "ST", "WX")
_UNREGISTERED_LEVY = "99999999"  # well-formed, not in the bundled register: LEVY_02
_DUP_01_DISTANCE = 50  # rows; a multiple of the course and date cycles, so the key repeats
_DUP_02_EVERY = 1_000  # one row in this many repeats an earlier upload's achievement

# (course code, achievement date, ULN) of a row that an earlier upload already had accepted.
EarlierKey = tuple[str, date, str]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the file ------------------------------------------------------------------------------


def write_mixed_file(path: Path, rows: int, seed: int = 7) -> list[EarlierKey]:
    """Writes `rows` data rows; returns the keys to seed as an earlier upload's achievements.

    Every row has its own learner (distinct ULNs with valid check digits, NI numbers, CITB
    ids). About 5% carry one error each (a spread of codes, DUP_01 included), about 3% a
    warning, 0.1% repeat an earlier upload (DUP_02). Cells use the habits of real files:
    spaced and lower-case identifiers, ISO and d/m/yyyy dates, `="…"` text formulas, accents,
    notes with line breaks.
    """
    from services.core.scheme.columns import template_header_line
    from services.core.scheme.reference import bundled_reference

    rng = random.Random(seed)
    levy_numbers = [e.levy_number for e in bundled_reference().employers() if e.grant_eligible]
    ulns = _valid_ulns()
    recent_ulns: deque[str] = deque(maxlen=_DUP_01_DISTANCE)
    earlier: list[EarlierKey] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(template_header_line() + "\r\n")
        writer = csv.writer(out, lineterminator="\r\n")
        for i in range(rows):
            course = _COURSES[i % len(_COURSES)]
            achieved = UPLOAD_DATE - timedelta(days=i % 10)
            born = date(1960, 1, 1) + timedelta(days=(i * 37) % 14_000)
            forename, surname = _FORENAMES[i % 8], _SURNAMES[i % 7]
            levy = levy_numbers[i % len(levy_numbers)]
            notes = ("Completed in full", "", "On site", "")[i % 4]
            if i % 97 == 0:
                notes = "Passed\r\nresit booked"  # a line break inside a quoted field
            uln = next(ulns)
            kind = i % 20  # 65% ULN, 15% ULN and NI, 10% NI, 5% CITB, 5% ULN and CITB
            uln_cell = uln if kind <= 15 or kind == 19 else ""
            nino = (
                f"{_NINO_PREFIXES[i % 8]}{(i // 8) % 1_000_000:06d}{'ABCD'[(i // 8_000_000) % 4]}"
            )
            nino_cell = nino if 13 <= kind <= 17 else ""
            citb_cell = f"C{i:08d}" if kind >= 18 else ""
            extra: list[str] = []
            dob_override: str | None = None

            warning = rng.random()
            if warning < 0.01:
                achieved -= timedelta(days=11)  # ACHDATE_03
            elif warning < 0.02:
                levy = _UNREGISTERED_LEVY  # LEVY_02
            elif warning < 0.025:
                notes = "-see the assessor's report"  # NOTES_02
            elif warning < 0.03:
                levy = ""  # LEVY_03

            if rng.random() < ERROR_SHARE:
                error = rng.randrange(11)
                if error == 0:  # ULN_03: the check digit is wrong
                    uln_cell = f"{uln[:9]}{(int(uln[9]) + 1) % 10}"
                elif error == 1:  # ULN_01 (damaged by a spreadsheet)
                    uln_cell = "1.00000E+09"
                elif error == 2:  # NINO_01
                    nino_cell = nino[:7]
                elif error == 3:  # COURSE_03
                    course = "SD-XXX-999"
                elif error == 4:  # ACHDATE_02
                    achieved = UPLOAD_DATE + timedelta(days=3)
                elif error == 5:  # DOB_01: no such day
                    dob_override = "31/02/1990"
                elif error == 6:  # DOB_02: ten years old
                    born = achieved - timedelta(days=3653)
                elif error == 7:  # NAME_01
                    forename = "J0hn"
                elif error == 8:  # ID_01
                    uln_cell = nino_cell = citb_cell = ""
                elif error == 9:  # DUP_01: the learner of 50 rows earlier, same course and date
                    if len(recent_ulns) == _DUP_01_DISTANCE and recent_ulns[0]:
                        uln_cell, nino_cell, citb_cell = recent_ulns[0], "", ""
                    else:
                        uln_cell = "9999999999"  # ULN_02
                else:  # ROW_01: a cell beyond the template
                    extra = ["stray"]
            else:
                error = -1
            seeded = error == -1 and uln_cell and i % _DUP_02_EVERY == _DUP_02_EVERY // 2
            if seeded:
                earlier.append((course.upper(), achieved, uln_cell))
            # DUP_01 copies only a clean, unseeded row with the cycle's own date, so each
            # duplicate code comes from exactly one cause and the counts can be checked.
            recent_ulns.append(uln_cell if error == -1 and warning >= 0.01 and not seeded else "")
            writer.writerow(
                [
                    f"REF-{i:07d}" if i % 11 else "",
                    course.lower() if i % 9 == 4 else course,
                    _date_cell(achieved, i + 1),
                    forename,
                    surname,
                    dob_override or _date_cell(born, i),
                    _uln_cell(uln_cell, i),
                    f"{nino_cell[:2].lower()} {nino_cell[2:4]} {nino_cell[4:6]} {nino_cell[6:8]}"
                    f" {nino_cell[8:].lower()}"
                    if nino_cell and i % 5 == 1
                    else nino_cell,
                    citb_cell,
                    levy,
                    notes,
                    *extra,
                ]
            )
    return earlier


def _date_cell(day: date, i: int) -> str:
    return day.isoformat() if i % 4 == 0 else f"{day.day}/{day.month:02d}/{day.year}"


def _uln_cell(uln: str, i: int) -> str:
    if not uln or not uln.isdigit():
        return uln
    if i % 7 == 3:
        return f"{uln[:4]} {uln[4:7]} {uln[7:]}"
    if i % 53 == 5:
        return f'="{uln}"'  # a spreadsheet's text formula
    return uln


# --- the database ------------------------------------------------------------------------


async def _prepare_database(
    dsn: str, upload: tuple[uuid.UUID, str, int, str], earlier: list[EarlierKey]
) -> None:
    """Migrates, loads reference data, and records the upload (and an earlier accepted one)."""
    from services.core.reference_store import load_into_database
    from services.upload_gateway.keys import create_ato

    upload_id, storage_key, size_bytes, sha256 = upload
    await migrate_dsn(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await load_into_database(connection)
        ato_id = (await create_ato(connection, "Bench ATO")).ato_id
        now = datetime.now(UTC)
        insert_upload = (
            "INSERT INTO uploads (upload_id, ato_id, file_name, size_bytes, sha256, policy,"
            " storage_key, terms_accepted_at, upload_date, status)"
            " VALUES ($1, $2, 'bench.csv', $3, $4, 'valid_rows', $5, $6, $7, $8)"
        )
        earlier_id = uuid.uuid4()
        await connection.execute(
            insert_upload, earlier_id, ato_id, 0, "0" * 64, "earlier", now, UPLOAD_DATE, "passed"
        )
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
                    uuid.uuid4(),
                    earlier_id,
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
        await connection.execute(
            insert_upload,
            upload_id,
            ato_id,
            size_bytes,
            sha256,
            storage_key,
            now,
            UPLOAD_DATE,
            "received",
        )
    finally:
        await connection.close()


# --- the stages, each in its own child process ----------------------------------------------


def offline_stage(path: str) -> dict[str, Any]:
    from services.core.scheme.check import check_file
    from services.core.scheme.codes import Policy
    from services.core.scheme.reference import bundled_reference

    bundled_reference()  # loaded once per process, as in the CLI
    rss_before_mb = _peak_rss_mb()
    started, started_cpu = time.perf_counter(), time.process_time()
    report = check_file(path, today=UPLOAD_DATE, policy=Policy.VALID_ROWS)
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - started_cpu,
        "rss_before_mb": rss_before_mb,
        "peak_rss_mb": _peak_rss_mb(),
        "status": str(report.status),
        "rows_total": report.rows_total,
        "rows_invalid": report.rows_invalid,
        "rows_warned": report.rows_warned,
        "issues": len(report.issues),
    }


class _Timings:
    """Accumulates the seconds spent in chosen functions, by patching them in place."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap_async(self, owner: Any, name: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(original)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)

    def wrap_sync(self, owner: Any, name: str, label: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)


# The final transaction's steps, in the order `UploadValidation._finish` runs them.
FINISH_STEPS = (
    ("mark_in_file_duplicates", "DUP_01 over stored keys"),
    ("mark_earlier_upload_duplicates", "DUP_02 joins"),
    ("store_row_level_issues", "DUP issues insert"),
    ("count", "counts"),
    ("accept_valid_rows", "accept: INSERT achievements + events"),
    ("forget_row_payloads", "forget row payloads"),
    ("finish", "uploads row update"),
)


def pipeline_stage(
    dsn: str, storage_root: str, upload_id: str, profile_path: str = ""
) -> dict[str, Any]:
    return asyncio.run(_pipeline_stage(dsn, Path(storage_root), uuid.UUID(upload_id), profile_path))


async def _pipeline_stage(
    dsn: str, storage_root: Path, upload_id: uuid.UUID, profile_path: str
) -> dict[str, Any]:
    from services.core.events import Topics
    from services.core.logging import configure_logging
    from services.core.reference_store import ReferenceCache
    from services.core.settings import CommonSettings, StorageSettings
    from services.core.storage import FolderStorage
    from services.validator import pipeline
    from services.validator import results_store as store
    from services.validator.settings import ValidatorSettings

    configure_logging("bench_pipeline", "WARNING")
    timings = _Timings()
    timings.wrap_sync(pipeline, "inspect_stream", "inspection pass")
    timings.wrap_async(pipeline.UploadValidation, "_read_rows", "streaming pass")
    timings.wrap_async(store, "store_batch", "batched COPY (client wait)")
    timings.wrap_async(pipeline.UploadValidation, "_finish", "final transaction")
    for name, label in FINISH_STEPS:
        timings.wrap_async(store, name, label)
    timings.wrap_async(store, "enqueue", "accept: events")  # inside accept_valid_rows only

    pool = await create_pool(PostgresSettings(database_url=SecretStr(dsn)), dsn=dsn)
    try:
        validation = pipeline.UploadValidation(
            upload_id=upload_id,
            pool=pool,
            storage=FolderStorage(storage_root),
            reference=await ReferenceCache(pool).current(),
            settings=ValidatorSettings(
                common=CommonSettings(storage=StorageSettings(root=storage_root))
            ),
            topics=Topics("bench."),
        )
        rss_before_mb = _peak_rss_mb()
        profiler = cProfile.Profile() if profile_path else None
        started, started_cpu = time.perf_counter(), time.process_time()
        if profiler is None:
            await validation.run()
        else:
            profiler.enable()
            await validation.run()
            profiler.disable()
            profiler.dump_stats(profile_path)
        wall_s = time.perf_counter() - started
        cpu_s = time.process_time() - started_cpu
        peak_rss_mb = _peak_rss_mb()
        async with pool.acquire(timeout=30) as connection:
            upload = await connection.fetchrow(
                "SELECT status, rows_total, rows_invalid, rows_warned, counts_by_code"
                " FROM uploads WHERE upload_id = $1",
                upload_id,
            )
            assert upload is not None
            facts = await connection.fetchrow(
                "SELECT"
                " (SELECT count(*) FROM achievements WHERE upload_id = $1) AS achievements,"
                " (SELECT count(*) FROM row_issues WHERE upload_id = $1) AS issues_stored,"
                " (SELECT count(*) FROM row_payloads WHERE upload_id = $1) AS payloads_left,"
                " (SELECT count(*) FROM outbox"
                "   WHERE payload->>'event_type' = 'achievements.accepted') AS accepted_events,"
                " (SELECT coalesce(sum(jsonb_array_length(payload->'achievements')), 0)"
                "   FROM outbox WHERE payload->>'event_type' = 'achievements.accepted')"
                "   AS announced",
                upload_id,
            )
            assert facts is not None
    finally:
        await pool.close()
    return {
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "rss_before_mb": rss_before_mb,
        "peak_rss_mb": peak_rss_mb,
        "timings": dict(timings.seconds),
        **dict(upload.items()),
        **dict(facts.items()),
    }


def _in_child(function: Callable[..., dict[str, Any]], *args: str) -> dict[str, Any]:
    """Runs one stage in a fresh spawned process, so its peak RSS is its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        return executor.submit(function, *args).result()


# --- one size, and the report ------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _run_size(rows: int, scratch: Path, keep: bool, profile_path: str) -> dict[str, Any]:
    from services.core.storage import FolderStorage

    database = f"bench_{uuid.uuid4().hex[:12]}"
    upload_id = uuid.uuid4()
    storage_key = FolderStorage.key_for(upload_id)
    path = FolderStorage(scratch).path(storage_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    earlier = write_mixed_file(path, rows)
    generate_s = time.perf_counter() - started
    size_mb = path.stat().st_size / 1e6
    upload = (upload_id, storage_key, path.stat().st_size, _sha256(path))
    asyncio.run(admin(f"CREATE DATABASE {database}"))
    try:
        asyncio.run(_prepare_database(database_url(database), upload, earlier))
        offline = _in_child(offline_stage, str(path))
        piped = _in_child(
            pipeline_stage, database_url(database), str(scratch), str(upload_id), profile_path
        )
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        if not keep:
            path.unlink(missing_ok=True)
    return {
        "rows": rows,
        "size_mb": size_mb,
        "generate_s": generate_s,
        "earlier": len(earlier),
        "offline": offline,
        "pipeline": piped,
    }


def _print_size(result: dict[str, Any]) -> None:
    rows, offline, piped = result["rows"], result["offline"], result["pipeline"]
    by_code = piped["counts_by_code"]
    print(
        f"\n== {rows:,} rows, {result['size_mb']:.0f} MB"
        f" (generated in {result['generate_s']:.1f}s) =="
    )
    for name, stage in (("offline check", offline), ("pipeline", piped)):
        print(
            f"{name:>14}: {rows / stage['wall_s']:>8,.0f} rows/s  wall {stage['wall_s']:7.1f}s"
            f"  cpu {stage['cpu_s']:7.1f}s  peak RSS {stage['peak_rss_mb']:6.0f} MB"
            f" (before the run {stage['rss_before_mb']:.0f} MB)"
        )
    print(
        f"pipeline/offline: {piped['wall_s'] / offline['wall_s']:.2f}x wall,"
        f" {piped['cpu_s'] / offline['cpu_s']:.2f}x worker CPU"
    )
    seconds = piped["timings"]
    streaming = seconds["streaming pass"]
    final = seconds["final transaction"]
    rest = piped["wall_s"] - streaming - final
    print(
        f"pipeline split: streaming+COPY {streaming:.1f}s ({streaming / piped['wall_s']:.0%}),"
        f" final transaction {final:.1f}s ({final / piped['wall_s']:.0%}), other {rest:.1f}s"
    )
    inspection = seconds.get("inspection pass", 0.0)
    copy_s = seconds.get("batched COPY (client wait)", 0.0)
    print(
        f"  streaming: inspection pass {inspection:.1f}s, rules + reading"
        f" {streaming - inspection - copy_s:.1f}s, batched COPY {copy_s:.1f}s"
    )
    steps = [(label, seconds.get(label, 0.0)) for _, label in FINISH_STEPS]
    events_s = seconds.get("accept: events", 0.0)
    commit_s = final - sum(s for _, s in steps)
    print("  final: " + ", ".join(f"{label} {s:.1f}s" for label, s in steps))
    print(f"         (of which events {events_s:.1f}s), commit {commit_s:.1f}s")
    print(
        f"outcome: {piped['status']}, invalid {piped['rows_invalid']:,}"
        f" (offline {offline['rows_invalid']:,} + DUP_02 {by_code.get('DUP_02', 0):,}),"
        f" warned {piped['rows_warned']:,}, DUP_01 {by_code.get('DUP_01', 0):,};"
        f" stored issues {piped['issues_stored']:,} of {sum(by_code.values()):,};"
        f" achievements {piped['achievements']:,} announced in {piped['accepted_events']:,}"
        f" events; payloads left {piped['payloads_left']}"
    )


def _check(result: dict[str, Any]) -> list[str]:
    """What would make the figures meaningless: the two paths disagreeing, work left undone."""
    offline, piped = result["offline"], result["pipeline"]
    problems = []
    dup_02 = piped["counts_by_code"].get("DUP_02", 0)
    if piped["status"] != "partially_accepted" or offline["status"] != "partially_accepted":
        problems.append(f"status {piped['status']} / {offline['status']}")
    if piped["rows_total"] != result["rows"] or offline["rows_total"] != result["rows"]:
        problems.append("rows_total differs from the rows written")
    if piped["rows_invalid"] != offline["rows_invalid"] + dup_02 or dup_02 != result["earlier"]:
        problems.append("invalid rows differ beyond DUP_02")
    valid = piped["rows_total"] - piped["rows_invalid"]
    if piped["achievements"] != valid or piped["announced"] != valid:
        problems.append("not every valid row became an announced achievement")
    if piped["payloads_left"]:
        problems.append("row payloads left behind")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--compare-sizes", action="store_true", help=f"also run {SMALL_ROWS:,} rows first"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        default="",
        help="cProfile the pipeline run (slows it down) and write pstats to PATH",
    )
    args = parser.parse_args(argv)
    sizes = [SMALL_ROWS, args.rows] if args.compare_sizes and args.rows != SMALL_ROWS else []
    sizes = sizes or [args.rows]
    # The project's scratch folder when there is one: the same disk as the stack's storage.
    scratch = Path(
        tempfile.mkdtemp(
            prefix="bench-pipeline-", dir=".local" if Path(".local").is_dir() else None
        )
    )
    results = []
    for rows in sizes:
        result = _run_size(rows, scratch, args.keep, args.profile)
        _print_size(result)
        results.append(result)
    if len(results) > 1:
        small, large = results[0], results[-1]
        print("\n== peak RSS against rows ==")
        for name in ("offline", "pipeline"):
            print(
                f"{name:>9}: {small['rows']:,} rows {small[name]['peak_rss_mb']:.0f} MB,"
                f" {large['rows']:,} rows {large[name]['peak_rss_mb']:.0f} MB"
                f" ({large[name]['peak_rss_mb'] / small[name]['peak_rss_mb']:.2f}x for"
                f" {large['rows'] / small['rows']:.0f}x the rows)"
            )
    if args.keep:
        print(f"files kept in {scratch}")
    else:
        for folder in sorted(scratch.rglob("*"), reverse=True):
            folder.rmdir()
        scratch.rmdir()
    problems = [f"{r['rows']:,} rows: {p}" for r in results for p in _check(r)]
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
