"""Soak: steady load for a long time, and whether anything grows that should not.

    make soak DURATION=1h          (or: .venv/bin/python bench/soak.py --duration 1h)

Runs the real services as processes on the local stack's PostgreSQL and Kafka (`make infra`),
with a database, a topic prefix and a storage folder of their own (bench_load.LoadStack), plus
the purge (`achievements purge --every 60`, a retention of `--retention-s`, so uploads are purged
within the run) and the operations exporter (consumer lag, from outside the groups).

The load is steady, at a rate whose claims the bridge keeps up with (`--rows-per-s`, 150 by
default: about 140 claims a second against the bridge's several hundred): `--atos` ATOs send, in
turn, files of 1,000 to 5,000 rows written as spreadsheets write them (accents, quoted notes);
every `--withdraw-every`-th upload is withdrawn once final; a probe ATO sends a 20-row file every
5 s; the portal's reads (`GET /v1/uploads/{id}`, `/healthz`) run throughout.

Every `--sample-every-s` it records, for each service process, its resident memory, open file
descriptors and sockets; for the pipeline's database, its connections, each table's live and
dead tuples, and the accepted rows; the consumer lag of the validator and bridge groups. At the
end it writes the samples (bench/results/soak-latest.csv), a plot of each figure over time
(docs/soak.png), and judges the second half of the run:

- each service's RSS, descriptors and sockets grow by less than 10 %;
- the work tables (outbox, validation_chunks, accepted_event_parts, page_sessions,
  processed_events, portal_token_uses) stay flat;
- the tables that hold data grow no faster than the accepted rows;
- dead tuples stay under DEAD_TUPLES_CEILING per table and the lag under LAG_CEILING messages.

"Grows" compares the median of the first fifth of the second half with that of its last fifth,
so one noisy sample decides nothing. Exits non-zero when a judgement fails; nothing asserts a
timing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import random
import re
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
from bench_load import (
    FINAL,
    LoadStack,
    Probe,
    free_port,
    outcome,
    percentiles,
    probe,
    send_upload,
    ulns,
    wait_for_port,
    write_file,
)

from services.core import operators

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK_TABLES = (
    "outbox",
    "validation_chunks",
    "accepted_event_parts",
    "page_sessions",
    "processed_events",
    "portal_token_uses",
)
DATA_TABLES = ("uploads", "achievements", "row_results", "row_issues", "grant_claims")
# Ceilings, absolute: autovacuum keeps dead tuples far below these on tables of this size; a
# lag above a few thousand messages would mean the consumers fall behind the steady load.
DEAD_TUPLES_CEILING = 200_000
LAG_CEILING = 20_000
GROWTH_LIMIT = 0.10
# A work table counts as flat while its rows stay within this of where the second half began.
WORK_TABLE_SLACK_ROWS = 200


def duration_s(text: str) -> float:
    """`1h`, `30m`, `90s` or a number of seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([hms]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 1h, 30m, 600)")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"h": 3600, "m": 60, "s": 1, "": 1}[unit]


# --- Sampling ----------------------------------------------------------------------------------


def process_figures(pid: int) -> dict[str, float]:
    """Resident memory (MiB), open descriptors and sockets of one process, from /proc."""
    figures: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                figures["rss_mib"] = int(line.split()[1]) / 1024
    descriptors = os.listdir(f"/proc/{pid}/fd")
    figures["fds"] = len(descriptors)
    sockets = 0
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/{pid}/fd/{descriptor}").startswith("socket:"):
                sockets += 1
        except OSError:  # closed between the listing and the look
            continue
    figures["sockets"] = sockets
    return figures


async def database_figures(connection: asyncpg.Connection) -> dict[str, float]:
    figures: dict[str, float] = {}
    for row in await connection.fetch(
        "SELECT relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables"
    ):
        figures[f"live:{row['relname']}"] = row["n_live_tup"]
        figures[f"dead:{row['relname']}"] = row["n_dead_tup"]
    for table in WORK_TABLES + DATA_TABLES:
        # Exact counts for the tables judged: the statistics lag behind by up to a minute.
        exists = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        if exists:
            figures[f"rows:{table}"] = await connection.fetchval(
                f"SELECT count(*) FROM {table}"  # noqa: S608 (a name from the list above)
            )
    figures["accepted_rows"] = await connection.fetchval("SELECT count(*) FROM achievements")
    figures["connections"] = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    )
    return figures


LAG_LINE = re.compile(
    r'^achievements_consumer_group_lag_messages\{[^}]*group="([^"]+)"[^}]*\} ([0-9.e+]+)$'
)


async def lag_figures(session: aiohttp.ClientSession, exporter_url: str) -> dict[str, float]:
    """The exporter's lag per group, summed over topics and partitions."""
    async with session.get(f"{exporter_url}/metrics") as response:
        text = await response.text()
    lags: dict[str, float] = {}
    for line in text.splitlines():
        match = LAG_LINE.match(line)
        if match:
            name = f"lag:{match.group(1).rsplit('.', 1)[-1]}"
            lags[name] = lags.get(name, 0.0) + float(match.group(2))
    return lags


@dataclass
class Samples:
    rows: list[dict[str, float]] = field(default_factory=list)

    def column(self, name: str) -> list[float]:
        return [row.get(name, float("nan")) for row in self.rows]

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)


async def sample_forever(
    stack: LoadStack,
    exporter_url: str,
    every_s: float,
    started: float,
    stop: asyncio.Event,
    samples: Samples,
) -> None:
    connection = await asyncpg.connect(stack.pipeline_dsn)
    try:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                row: dict[str, float] = {"t_s": round(time.monotonic() - started, 1)}
                for name, process in stack.services.processes.items():
                    for figure, value in process_figures(process.pid).items():
                        row[f"{figure}:{name}"] = value
                row.update(await database_figures(connection))
                try:
                    row.update(await lag_figures(session, exporter_url))
                except aiohttp.ClientError:
                    row["lag_unavailable"] = 1
                samples.rows.append(row)
                try:
                    await asyncio.wait_for(stop.wait(), every_s)
                except TimeoutError:
                    continue
    finally:
        await connection.close()


# --- Load ----------------------------------------------------------------------------------------


@dataclass
class Load:
    uploads: int = 0
    rows: int = 0
    withdrawn: int = 0
    refused: list[str] = field(default_factory=list)
    probe_s: list[float] = field(default_factory=list)


async def steady_uploads(
    session: aiohttp.ClientSession,
    stack: LoadStack,
    args: argparse.Namespace,
    until: float,
    sent: list[tuple[str, str]],
    load: Load,
) -> None:
    """Files in turn from each ATO, at `--rows-per-s` on average; the local copy is removed once
    sent (an hour of files would fill the disk for nothing)."""
    chance = random.Random(20261207)  # a schedule that repeats from run to run
    learners = ulns()
    atos = itertools.cycle(stack.keys[:-1])
    for n in itertools.count():
        if time.monotonic() >= until:
            return
        key = next(atos)
        rows = chance.randint(1_000, 5_000)
        generated = write_file(
            stack.scratch / f"soak-{n:05d}.csv",
            rows,
            learners,
            invalid_every=50 if n % 3 == 2 else None,
        )
        began = time.monotonic()
        try:
            upload_id = await send_upload(session, stack.gateway_url, key.api_key, generated.path)
            sent.append((key.api_key, upload_id))
            load.uploads += 1
            load.rows += rows
        except (RuntimeError, aiohttp.ClientError) as error:
            load.refused.append(f"{generated.path.name}: {error}")
        finally:
            generated.path.unlink(missing_ok=True)
        await asyncio.sleep(max(0.0, rows / args.rows_per_s - (time.monotonic() - began)))


async def withdraw_some(
    session: aiohttp.ClientSession,
    stack: LoadStack,
    every: int,
    until: float,
    sent: list[tuple[str, str]],
    load: Load,
) -> None:
    """Every `every`-th upload, once final, withdrawn by its ATO."""
    next_index = every - 1
    while time.monotonic() < until:
        if next_index >= len(sent):
            await asyncio.sleep(1)
            continue
        api_key, upload_id = sent[next_index]
        headers = {"Authorization": f"Bearer {api_key}"}
        async with session.get(
            f"{stack.gateway_url}/v1/uploads/{upload_id}", headers=headers
        ) as response:
            status = (await response.json()).get("status")
        if status not in FINAL:
            await asyncio.sleep(1)
            continue
        async with session.post(
            f"{stack.gateway_url}/v1/uploads/{upload_id}/withdraw", headers=headers
        ) as response:
            if response.status in (200, 202):
                load.withdrawn += 1
        next_index += every


async def probe_every(
    session: aiohttp.ClientSession,
    stack: LoadStack,
    every_s: float,
    until: float,
    load: Load,
) -> None:
    # Far from the steady load's learners: distinct achievements, never DUP_02.
    learners = ulns(first_prefix=900_000_000)
    api_key = stack.keys[-1].api_key
    for n in itertools.count():
        began = time.monotonic()
        if began >= until:
            return
        generated = write_file(
            stack.scratch / f"probe-{n:05d}.csv", 20, learners, invalid_every=None
        )
        sent_at = time.perf_counter()
        upload_id = await send_upload(session, stack.gateway_url, api_key, generated.path)
        generated.path.unlink(missing_ok=True)
        await outcome(session, stack.gateway_url, api_key, upload_id)
        load.probe_s.append(time.perf_counter() - sent_at)
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - began)))


# --- Judging and plotting ------------------------------------------------------------------------


def second_half(samples: Samples, name: str) -> tuple[float, float] | None:
    """The medians of the first and the last fifth of the second half of `name`'s samples."""
    values = [v for v in samples.column(name)[len(samples.rows) // 2 :] if v == v]
    fifth = max(1, len(values) // 5)
    if len(values) < 2:
        return None
    return statistics.median(values[:fifth]), statistics.median(values[-fifth:])


def judge(samples: Samples) -> tuple[list[str], list[str]]:
    """What held and what failed, one line each."""
    held: list[str] = []
    failed: list[str] = []

    def verdict(ok: bool, line: str) -> None:
        (held if ok else failed).append(line)

    names = samples.names()
    for name in names:
        kind = name.split(":", 1)[0]
        if kind in ("rss_mib", "fds", "sockets"):
            halves = second_half(samples, name)
            if halves is None:
                continue
            first, last = halves
            growth = (last - first) / first if first else 0.0
            verdict(growth < GROWTH_LIMIT, f"{name}: {first:.1f} -> {last:.1f} ({growth:+.1%})")
    for table in WORK_TABLES:
        halves = second_half(samples, f"rows:{table}")
        if halves is not None:
            first, last = halves
            verdict(
                last <= first * (1 + GROWTH_LIMIT) + WORK_TABLE_SLACK_ROWS,
                f"work table {table}: {first:.0f} -> {last:.0f} rows",
            )
    accepted = second_half(samples, "accepted_rows")
    for table in DATA_TABLES:
        halves = second_half(samples, f"rows:{table}")
        if halves is None or accepted is None or table == "achievements":
            continue
        table_growth = halves[1] - halves[0]
        accepted_growth = accepted[1] - accepted[0]
        verdict(
            table_growth <= max(accepted_growth, 0) * (1 + GROWTH_LIMIT) + WORK_TABLE_SLACK_ROWS,
            f"data table {table}: +{table_growth:.0f} rows against +{accepted_growth:.0f} accepted",
        )
    for name in names:
        if name.startswith("dead:"):
            worst = max(v for v in samples.column(name) if v == v)
            if worst > DEAD_TUPLES_CEILING / 10:
                verdict(worst < DEAD_TUPLES_CEILING, f"{name}: at most {worst:.0f} dead tuples")
        if name.startswith("lag:"):
            worst = max(v for v in samples.column(name)[len(samples.rows) // 2 :] if v == v)
            verdict(worst < LAG_CEILING, f"{name}: at most {worst:.0f} messages behind")
    return held, failed


def plot(samples: Samples, path: Path, title: str) -> None:
    import matplotlib  # only the soak needs it: imported when it plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [t / 60 for t in samples.column("t_s")]
    names = samples.names()
    panels: list[tuple[str, Callable[[str], bool]]] = [
        ("resident memory (MiB)", lambda n: n.startswith("rss_mib:")),
        ("open descriptors", lambda n: n.startswith("fds:")),
        ("sockets", lambda n: n.startswith("sockets:")),
        ("work tables (rows)", lambda n: n in {f"rows:{t}" for t in WORK_TABLES}),
        (
            "data tables (rows)",
            lambda n: n in {f"rows:{t}" for t in DATA_TABLES} or n == "accepted_rows",
        ),
        (
            "dead tuples",
            lambda n: (
                n.startswith("dead:")
                and max((v for v in samples.column(n) if v == v), default=0) > 1000
            ),
        ),
        ("consumer lag (messages)", lambda n: n.startswith("lag:")),
        ("database connections", lambda n: n == "connections"),
    ]
    figure, axes = plt.subplots(4, 2, figsize=(14, 16), sharex=True)
    for axis, (label, wanted) in zip(axes.flat, panels, strict=True):
        for name in (n for n in names if wanted(n)):
            axis.plot(minutes, samples.column(name), label=name.split(":", 1)[-1])
        axis.axvline(minutes[-1] / 2 if minutes else 0, color="grey", linestyle=":")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7, loc="upper left")
    for axis in axes[-1]:
        axis.set_xlabel("minutes")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


# --- The run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    purge_token_holder: dict[str, str] = {}
    async with LoadStack.started(
        args.atos + 1,
        window_s=args.window_s,
        keep_logs=args.keep_logs,
        extra_env={
            "RETENTION_SECONDS": str(args.retention_s),
            # The work rows too, on the soak's short clock.
            "RETENTION_SENT_EVENTS_KEPT_S": "300",
            "RETENTION_PROCESSED_EVENTS_KEPT_S": str(args.retention_s),
        },
    ) as stack:
        connection = await asyncpg.connect(stack.pipeline_dsn)
        try:
            created = await operators.create(connection, "soak-purge", None, datetime.now(UTC))
            purge_token_holder["token"] = created.token
        finally:
            await connection.close()
        exporter_port = free_port()
        stack.services.env["ACHIEVEMENTS_OPERATOR_TOKEN"] = purge_token_holder["token"]
        stack.services.start("purge", "services.cli", "purge", "--every", "60", "--json")
        stack.services.start(
            "exporter", "services.cli", "exporter", "serve", "--port", str(exporter_port)
        )
        await wait_for_port(exporter_port)
        exporter_url = f"http://127.0.0.1:{exporter_port}"

        started = time.monotonic()
        until = started + args.duration
        samples, load, reads = Samples(), Load(), Probe()
        sent: list[tuple[str, str]] = []
        stop = asyncio.Event()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            sampler = asyncio.create_task(
                sample_forever(stack, exporter_url, args.sample_every_s, started, stop, samples)
            )
            reader = asyncio.create_task(
                probe(stack.gateway_url, sent, args.probe_interval_s, stop, reads)
            )
            try:
                await asyncio.gather(
                    steady_uploads(session, stack, args, until, sent, load),
                    withdraw_some(session, stack, args.withdraw_every, until, sent, load),
                    probe_every(session, stack, 5.0, until, load),
                    watch_services(stack, until),
                )
            finally:
                stop.set()
                await sampler
                await reader

        out = REPO_ROOT / "bench" / "results" / "soak-latest.csv"
        names = samples.names()
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=names)
            writer.writeheader()
            writer.writerows(samples.rows)
        held, failed = judge(samples)
        hours = args.duration / 3600
        plot(
            samples,
            REPO_ROOT / "docs" / "soak.png",
            f"soak: {hours:g} h at {args.rows_per_s:g} rows/s, {load.uploads} uploads,"
            f" {load.withdrawn} withdrawn, retention {args.retention_s} s",
        )
        report = {
            "duration_s": args.duration,
            "rows_per_s": args.rows_per_s,
            "uploads": load.uploads,
            "rows": load.rows,
            "withdrawn": load.withdrawn,
            "refused": load.refused[:10],
            "probe_upload": percentiles([s * 1000 for s in load.probe_s], 2000.0),
            "healthz": percentiles(reads.healthz_ms, 50.0),
            "get_upload": percentiles(reads.upload_ms, 100.0),
            "read_errors": dict(reads.errors),
            "held": held,
            "failed": failed,
            "samples": str(out.relative_to(REPO_ROOT)),
            "plot": "docs/soak.png",
        }
        print(json.dumps(report, indent=2))
        return 1 if failed or load.refused else 0


async def watch_services(stack: LoadStack, until: float) -> None:
    while time.monotonic() < until:
        stack.services.check_alive()
        await asyncio.sleep(5)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=duration_s, default=duration_s("1h"))
    parser.add_argument("--atos", type=int, default=20)
    parser.add_argument("--rows-per-s", type=float, default=150.0)
    parser.add_argument("--retention-s", type=int, default=600)
    parser.add_argument("--withdraw-every", type=int, default=10)
    parser.add_argument("--sample-every-s", type=float, default=30.0)
    parser.add_argument("--window-s", type=float, default=5.0, help="the amendment window")
    parser.add_argument("--probe-interval-s", type=float, default=0.5)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
