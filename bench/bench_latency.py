"""`make bench`, second part: a small upload's time to its outcome, and where that time goes.

    .venv/bin/python bench/bench_latency.py [--small 200] [--big-rows 300000] [--idle-s 60]
        [--medium-rows 10000] [--repo PATH] [--quick]

Starts the real gateway and two validators as processes (their metrics ports open) on the
local stack's PostgreSQL and Kafka (`make infra`), with a database, a topic prefix and a
storage folder of their own, all removed afterwards. Then, one stage after the other:

- **idle CPU**: the user and system CPU seconds of the services' processes and of their
  PostgreSQL backends over `--idle-s` seconds of an idle stack (nothing uploaded);
- **idle**: `--small` uploads of 20 rows, one after another (ATOs in turn, each file distinct):
  for each, the time from the POST to the first status read showing the outcome, the client
  reading the status every 10 ms. Targets: p50 <= 150 ms, p99 <= 400 ms;
- **under load**: the same, while another ATO's two `--big-rows` uploads validate (a new pair,
  of a new ATO, whenever the last one is decided, until `--small` small uploads are done).
  Target: p99 <= 1 s;
- **medium**: one `--medium-rows` upload, from the POST to its outcome (10 ms polls), beside a
  COPY of the rows it accepted into `achievements` (bench_scale.py's `copy_accepted`). Target:
  at most 2x the COPY's time. (`make bench` measures the same in bench_scale.py on a database
  of 10,000,000 achievements; this database holds only what this run wrote.)

For each of the two small-upload stages it prints the split of an upload's time, from the
timestamps on its row (the POST; received to validation started: the outbox relay, the Kafka
hop and the consumer; validation started to decided: planning, the chunk queue, the chunk and
the decision; decided to seen: the commit and the poll) and, from the services' histogram
`pipeline_step_seconds` (services/core/metrics.py, scraped before and after), each step's mean
and p50/p99 (read from the buckets).

`--repo PATH` starts the services of another checkout (the commit before a change, say) with
this benchmark, to compare. Writes bench/results/latency.json unless `--quick`. Figures vary
with the machine's load; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from bench_files import write_mixed_file
from bench_scale import backend_cpu, copy_accepted, cpu_spent, free_port, process_cpu_s
from prometheus_client.parser import text_string_to_metric_families
from scratch_database import admin, database_url

from services.core.db import migrate_dsn
from services.core.events import Topics
from services.core.kafka import ensure_topics
from services.core.reference_store import load_into_database
from services.core.settings import KafkaSettings
from services.core.states import FINAL
from services.upload_gateway.keys import create_ato

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results" / "latency.json"
FINAL_STATUSES = frozenset(state.value for state in FINAL)
SMALL_ROWS = 20
POLL_S = 0.01
SMALL_ATOS = 20
# The targets (milliseconds; the medium upload's as a multiple of its COPY).
IDLE_P50_MS, IDLE_P99_MS, LOAD_P99_MS, MEDIUM_OVER_COPY = 150.0, 400.0, 1000.0, 2.0
STEPS = ("outbox_relay", "kafka_delivery", "planning", "chunk_queue", "chunk", "decision")


# --- the services ---------------------------------------------------------------------------------


@dataclass
class Services:
    repo: Path
    scratch: Path
    env: dict[str, str]
    gateway_url: str
    metrics_urls: list[str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        gateway_port = int(self.gateway_url.rsplit(":", 1)[1])
        for name, module, extra in (
            ("gateway", "services.upload_gateway", {"GATEWAY_PORT": str(gateway_port)}),
            *(
                (
                    f"validator-{n}",
                    "services.validator",
                    {
                        "VALIDATOR_WORKER_NAME": f"validator-{n}",
                        "VALIDATOR_HTTP_PORT": self.metrics_urls[n].rsplit(":", 1)[1].split("/")[0],
                    },
                )
                for n in (1, 2)
            ),
        ):
            with (self.scratch / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", module],
                    cwd=self.repo,
                    env={**self.env, **extra},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; its log: {self.scratch / name}.log")

    def cpu_s(self) -> float:
        return sum(process_cpu_s(process.pid) for process in self.processes.values())

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def start_services(repo: Path, scratch: Path, dsn: str, kafka: KafkaSettings) -> Services:
    metrics_ports = {n: free_port() for n in (1, 2)}
    env = {
        **{k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"},
        "DEPLOYMENT_MODE": "local",
        "DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "STORAGE_BACKEND": "folder",
        "STORAGE_ROOT": str(scratch / "storage"),
        "LOG_LEVEL": "WARNING",
    }
    services = Services(
        repo=repo,
        scratch=scratch,
        env=env,
        gateway_url=f"http://127.0.0.1:{free_port()}",
        metrics_urls=[""] + [f"http://127.0.0.1:{metrics_ports[n]}/metrics" for n in (1, 2)],
    )
    services.metrics_urls[0] = f"{services.gateway_url}/metrics"
    services.start()
    return services


async def wait_for_port(url: str, timeout_s: float = 90) -> None:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing answered on {url}")


# --- uploads --------------------------------------------------------------------------------------


@dataclass
class Upload:
    upload_id: uuid.UUID
    requested: float  # epoch seconds
    responded: float
    seen: float  # the first status read showing the outcome
    status: str

    @property
    def total_ms(self) -> float:
        return (self.seen - self.requested) * 1000


async def upload(
    session: aiohttp.ClientSession,
    services: Services,
    api_key: str,
    path: Path,
    *,
    timeout_s: float = 600,
) -> Upload:
    """POSTs the file, then reads the status every 10 ms until it shows the outcome."""
    headers = {"Authorization": f"Bearer {api_key}"}
    requested = time.time()
    async with session.post(
        f"{services.gateway_url}/v1/uploads",
        data=await asyncio.to_thread(path.read_bytes),
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
            f"{services.gateway_url}/v1/uploads/{upload_id}", headers=headers
        ) as response:
            status = (await response.json()).get("status")
        if status in FINAL_STATUSES:
            return Upload(upload_id, requested, responded, time.time(), status)
        if time.monotonic() > deadline:
            raise RuntimeError(f"upload {upload_id} not decided in {timeout_s:.0f}s")
        services.check_alive()
        await asyncio.sleep(POLL_S)


async def new_atos(dsn: str, label: str, count: int) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        keys = [
            await create_ato(connection, f"bench_latency {label} {n}", default_policy="valid_rows")
            for n in range(count)
        ]
    finally:
        await connection.close()
    return [(key.ato_id, key.api_key) for key in keys]


async def splits(dsn: str, uploads: list[Upload]) -> dict[str, dict[str, float]]:
    """The median and p99 of each part of the uploads' time, from their rows' timestamps."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = {
            row["upload_id"]: row
            for row in await connection.fetch(
                "SELECT upload_id, received_at, validation_started_at, validated_at"
                " FROM uploads WHERE upload_id = ANY($1::uuid[])",
                [u.upload_id for u in uploads],
            )
        }
    finally:
        await connection.close()
    parts: dict[str, list[float]] = defaultdict(list)
    for u in uploads:
        row = rows[u.upload_id]
        received = row["received_at"].timestamp()
        started = (row["validation_started_at"] or row["received_at"]).timestamp()
        decided = row["validated_at"].timestamp() if row["validated_at"] else u.seen
        parts["post (gateway 202)"].append(u.responded - u.requested)
        parts["received -> validation started"].append(started - received)
        parts["validation started -> decided"].append(decided - started)
        parts["decided -> seen by the client"].append(u.seen - decided)
    return {name: quantiles_ms(values) for name, values in parts.items()}


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.50), 1),
        "p99_ms": round(percentile(values, 0.99), 1),
        "max_ms": round(values[-1], 1),
    }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank: the value that `q` of the values are at or below."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --- the services' step histograms ---------------------------------------------------------------


Histograms = dict[str, dict[str, float]]  # step -> {"le:<bound>": count, "sum": s, "count": n}


async def scrape(session: aiohttp.ClientSession, services: Services) -> Histograms:
    """`pipeline_step_seconds` of every service, added up."""
    found: Histograms = defaultdict(lambda: defaultdict(float))
    for url in services.metrics_urls:
        async with session.get(url) as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            if family.name != "pipeline_step_seconds":
                continue
            for sample in family.samples:
                step = sample.labels.get("step", "?")
                if sample.name.endswith("_bucket"):
                    found[step][f"le:{sample.labels['le']}"] += sample.value
                elif sample.name.endswith("_sum"):
                    found[step]["sum"] += sample.value
                elif sample.name.endswith("_count"):
                    found[step]["count"] += sample.value
    return found


def bucket_bound(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    """The upper bound of the first bucket holding the `q` quantile (cumulative buckets)."""
    for upper, cumulative in buckets:
        if cumulative >= q * count:
            return upper
    return math.inf


def step_figures(before: Histograms, after: Histograms) -> dict[str, dict[str, float]]:
    """Per step, over what happened between the two scrapes: how many, the mean, and p50/p99
    read from the buckets (the bucket's upper bound: an upper estimate)."""
    figures = {}
    for step in [*STEPS, *sorted(set(after) - set(STEPS))]:
        now, then = after.get(step, {}), before.get(step, {})
        count = now.get("count", 0) - then.get("count", 0)
        if count <= 0:
            continue
        buckets = sorted(
            (float(key[3:]), now[key] - then.get(key, 0)) for key in now if key.startswith("le:")
        )
        figures[step] = {
            "n": int(count),
            "mean_ms": round((now.get("sum", 0) - then.get("sum", 0)) / count * 1000, 1),
            "p50_ms_at_most": round(bucket_bound(buckets, count, 0.5) * 1000, 1),
            "p99_ms_at_most": round(bucket_bound(buckets, count, 0.99) * 1000, 1),
        }
    return figures


# --- the stages ----------------------------------------------------------------------------------


@dataclass
class Learners:
    """Hands out runs of learners no other file of the run has (`write_mixed_file`'s `first`:
    it skips that many ULNs, so the runs are kept short and consecutive)."""

    next: int = 0

    def take(self, rows: int) -> int:
        first, self.next = self.next, self.next + rows
        return first


def small_files(scratch: Path, count: int, learners: Learners, today: date) -> list[Path]:
    paths = []
    for n in range(count):
        first = learners.take(SMALL_ROWS)
        path = scratch / f"small-{first}.csv"
        write_mixed_file(path, SMALL_ROWS, today=today, first=first, seed=n)
        paths.append(path)
    return paths


async def idle_cpu(services: Services, dsn: str, seconds: float) -> dict[str, float]:
    monitor = await asyncpg.connect(dsn)
    try:
        await asyncio.sleep(5)  # the start's own work settles
        services_before, backends_before = services.cpu_s(), await backend_cpu(monitor)
        await asyncio.sleep(seconds)
        services_after, backends_after = services.cpu_s(), await backend_cpu(monitor)
        # The monitor's own backend did two reads: not the stack's.
        mine = await monitor.fetchval("SELECT pg_backend_pid()")
        backends_before.pop(mine, None)
        backends_after.pop(mine, None)
    finally:
        await monitor.close()
    return {
        "seconds": seconds,
        "services_cpu_s": round(services_after - services_before, 2),
        "postgres_cpu_s": round(cpu_spent(backends_before, backends_after), 2),
    }


async def small_stage(
    session: aiohttp.ClientSession,
    services: Services,
    dsn: str,
    files: list[Path],
    keys: list[tuple[str, str]],
) -> tuple[list[Upload], Histograms, Histograms]:
    """The files uploaded one after another (ATOs in turn), with the step histograms before
    and after."""
    before = await scrape(session, services)
    done: list[Upload] = []
    for n, path in enumerate(files):
        done.append(await upload(session, services, keys[n % len(keys)][1], path))
    after = await scrape(session, services)
    return done, before, after


async def big_uploads(
    session: aiohttp.ClientSession,
    services: Services,
    dsn: str,
    big: list[Path],
    stop: asyncio.Event,
) -> int:
    """Pairs of big uploads of one ATO (a new ATO for each pair) until `stop`; the pairs
    completed."""
    pairs = 0
    while not stop.is_set():
        (ato,) = await new_atos(dsn, f"big {pairs}", 1)
        await asyncio.gather(*(upload(session, services, ato[1], path) for path in big))
        pairs += 1
    return pairs


async def wait_validating(dsn: str) -> None:
    """Until a big upload has a chunk done: the small ones come while it validates."""
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            busy = await connection.fetchval(
                "SELECT count(*) FROM uploads u JOIN atos a USING (ato_id)"
                " WHERE a.name LIKE 'bench_latency big%' AND u.chunks_done > 0"
            )
            if busy:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


def report_small(
    label: str, uploads: list[Upload], split: dict[str, Any], steps: dict[str, Any]
) -> dict[str, Any]:
    totals = quantiles_ms([u.total_ms / 1000 for u in uploads])
    statuses = sorted({u.status for u in uploads})
    print(
        f"{label}: {totals['n']} uploads of {SMALL_ROWS} rows ({', '.join(statuses)}):"
        f" p50 {totals['p50_ms']:.0f} ms, p99 {totals['p99_ms']:.0f} ms,"
        f" max {totals['max_ms']:.0f} ms"
    )
    print("  split (from the upload rows' timestamps):")
    for name, figures in split.items():
        print(f"    {name:34} p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms")
    print("  steps (pipeline_step_seconds; p50/p99 are bucket bounds):")
    for step, figures in steps.items():
        print(
            f"    {step:16} n {figures['n']:5}  mean {figures['mean_ms']:7.1f} ms"
            f"  p50 <= {figures['p50_ms_at_most']:7.1f} ms"
            f"  p99 <= {figures['p99_ms_at_most']:7.1f} ms"
        )
    return {"uploads": totals, "split": split, "steps": steps, "statuses": statuses}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    today = datetime.now(UTC).date()
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-latency-{run_id}-"))
    database = f"bench_latency_{run_id}"
    dsn = database_url(database)
    kafka = KafkaSettings(topic_prefix=f"bench-latency-{run_id}.")
    topics = Topics(kafka.topic_prefix)
    services: Services | None = None
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "services_from": str(args.repo),
        "nproc": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    try:
        await admin(f"CREATE DATABASE {database}")
        await migrate_dsn(dsn)
        connection = await asyncpg.connect(dsn)
        try:
            await load_into_database(connection)
        finally:
            await connection.close()
        await ensure_topics(kafka, topics)
        services = start_services(args.repo, scratch, dsn, kafka)
        for url in services.metrics_urls:
            await wait_for_port(url)
        keys = await new_atos(dsn, "small", SMALL_ATOS)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            # The consumer groups join and every path runs once before anything is measured.
            learners = Learners()
            warm = small_files(scratch, 3, learners, today)
            for path in warm:
                await upload(session, services, keys[0][1], path, timeout_s=300)
            print(f"bench_latency {run_id}: services up (from {args.repo})")

            if args.idle_s:
                report["idle_cpu"] = await idle_cpu(services, dsn, args.idle_s)
                cpu = report["idle_cpu"]
                print(
                    f"idle CPU over {args.idle_s:.0f}s: services {cpu['services_cpu_s']:.2f}s,"
                    f" their PostgreSQL backends {cpu['postgres_cpu_s']:.2f}s"
                )
            if args.cpu_only:
                return report

            files = small_files(scratch, args.small, learners, today)
            uploads, before, after = await small_stage(session, services, dsn, files, keys)
            report["idle"] = report_small(
                "idle", uploads, await splits(dsn, uploads), step_figures(before, after)
            )

            if args.big_rows:
                big = [scratch / f"big-{n}.csv" for n in (1, 2)]
                for n, path in enumerate(big):
                    write_mixed_file(path, args.big_rows, today=today, first=n * args.big_rows)
                files = small_files(scratch, args.small, learners, today)
                stop = asyncio.Event()
                load = asyncio.create_task(big_uploads(session, services, dsn, big, stop))
                await wait_validating(dsn)
                uploads, before, after = await small_stage(session, services, dsn, files, keys)
                stop.set()
                pairs = await load
                report["load"] = report_small(
                    f"under load ({pairs} pairs of {args.big_rows:,}-row uploads of one ATO)",
                    uploads,
                    await splits(dsn, uploads),
                    step_figures(before, after),
                )
                report["load"]["big_pairs"] = pairs

            if args.medium_rows:
                report["medium"] = await medium(
                    args.medium_rows, session, services, dsn, scratch, today
                )
        report["targets"] = targets(report)
        for line in report["targets"]:
            print(line)
        return report
    finally:
        if services is not None:
            services.stop()
        await admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin_client = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin_client.start()
        try:
            await admin_client.delete_topics(topics.all())
        finally:
            await admin_client.close()
        if args.keep:
            print(f"files and service logs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


async def medium(
    rows: int,
    session: aiohttp.ClientSession,
    services: Services,
    dsn: str,
    scratch: Path,
    today: date,
) -> dict[str, Any]:
    path = scratch / f"medium-{rows}.csv"
    write_mixed_file(path, rows, today=today, first=0)
    ((ato_id, api_key),) = await new_atos(dsn, "medium", 1)
    done = await upload(session, services, api_key, path)
    copy = await copy_accepted(dsn, done.upload_id, ato_id, today, scratch)
    ratio = done.total_ms / 1000 / copy["wall_s"] if copy["wall_s"] else math.inf
    print(
        f"medium: {rows:,} rows to {done.status} in {done.total_ms:.0f} ms;"
        f" COPY of its {copy['rows']:,} accepted rows {copy['wall_s'] * 1000:.0f} ms:"
        f" {ratio:.2f}x the COPY"
    )
    return {
        "rows": rows,
        "total_ms": round(done.total_ms, 1),
        "copy": copy,
        "over_copy": round(ratio, 2),
    }


def targets(report: dict[str, Any]) -> list[str]:
    lines = ["targets:"]
    if "idle" in report:
        idle = report["idle"]["uploads"]
        lines.append(
            f"- idle p50 {idle['p50_ms']:.0f} ms (<= {IDLE_P50_MS:.0f}),"
            f" p99 {idle['p99_ms']:.0f} ms (<= {IDLE_P99_MS:.0f})"
        )
    if "load" in report:
        load = report["load"]["uploads"]
        lines.append(f"- under load p99 {load['p99_ms']:.0f} ms (<= {LOAD_P99_MS:.0f})")
    if "medium" in report:
        lines.append(
            f"- {report['medium']['rows']:,} rows: {report['medium']['over_copy']:.2f}x its COPY"
            f" (<= {MEDIUM_OVER_COPY:.0f}x)"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--small", type=int, default=200, help="20-row uploads per stage")
    parser.add_argument("--big-rows", type=int, default=300_000, help="0: no stage under load")
    parser.add_argument("--medium-rows", type=int, default=10_000, help="0: no medium upload")
    parser.add_argument("--idle-s", type=float, default=60.0, help="0: no idle CPU figure")
    parser.add_argument("--cpu-only", action="store_true", help="only the idle CPU figure")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="whose services to start")
    parser.add_argument("--quick", action="store_true", help="a check that the bench works")
    parser.add_argument("--keep", action="store_true", help="keep the files and service logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.big_rows, args.medium_rows, args.idle_s = 20, 30_000, 2_000, 5.0
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = asyncio.run(run(args))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
