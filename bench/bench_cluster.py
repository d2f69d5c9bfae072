"""The cost of the production shape: one 1,000,000-row upload on `make cluster` and on the
single-node stack (`make up`), the same file, from the POST to the outcome.

    .venv/bin/python bench/bench_cluster.py run cluster    # against `make cluster`
    .venv/bin/python bench/bench_cluster.py run single     # against `make up`
    .venv/bin/python bench/bench_cluster.py table          # the two side by side

The two never run at once (2 cores): each `run` measures the stack that runs now and records
its figures in bench/results/cluster-shape-<name>.json; `table` prints both, the cluster's
speed against the single node's and the target (>= 0.7). Each endpoint is given by a preset
that `--gateway-url`, `--database-url` and `--ca-file` override:

- `cluster`: nginx at https://127.0.0.1:8443 (TLS, two gateways), the runtime role's URL from
  .local/cluster/env.sh (multi-host, `verify-full`), the cluster's CA;
- `single`: the gateway at http://127.0.0.1:8080 and the local stack's database.

Where the time goes, for each: the wall-clock split of the upload (the body sent and stored,
waiting for a validator, validating, the outcome seen), and the CPU seconds each process of the
stack spent meanwhile, by role (each process in `.local/run/<role>[-<n>].pid` with its
descendants: PostgreSQL's backends, the brokers' threads), so TLS (nginx), the three
replicas (kafka) and the synchronous standby (postgres) show as what they cost.

The file (2% invalid rows, policy valid_rows) names only employers the grant does not cover:
the same validation and the same writes, but no million claims for the bridges afterwards. It
is written once into .cache/bench/. The upload's rows are deleted afterwards. Nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import ssl
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
from bench_files import write_mixed_file

from services.core.states import FINAL
from services.upload_gateway.keys import create_ato

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
FILES_DIR = REPO_ROOT / ".cache" / "bench"
LOCAL_DIR = Path(os.environ.get("LOCAL_DIR", REPO_ROOT / ".local"))
ROWS = 1_000_000
TARGET = 0.7
UK = ZoneInfo("Europe/London")
FINAL_STATUSES = frozenset(state.value for state in FINAL)
ATO_NAME = "bench_cluster run"
POLL_S = 0.5
TIMEOUT_S = 3_600
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def preset(name: str) -> dict[str, str | None]:
    """The stack's endpoints; `ready_urls` (comma-separated) are its gateways' own `/readyz`,
    which nginx does not route (the Ingress routes only `/v1`, `/ato` and `/healthz`)."""
    if name == "cluster":
        settings = exports(LOCAL_DIR / "cluster" / "env.sh")
        return {
            "gateway_url": "https://127.0.0.1:8443",
            "database_url": settings.get("DATABASE_URL"),
            "ca_file": str(LOCAL_DIR / "cluster" / "ca.crt"),
            "ready_urls": ",".join(
                f"http://127.0.0.1:{port}/readyz" for port in cluster_gateway_ports()
            ),
        }
    return {
        "gateway_url": "http://127.0.0.1:8080",
        "database_url": "postgresql://achievements:achievements@127.0.0.1:55432/achievements",
        "ca_file": None,
        "ready_urls": "http://127.0.0.1:8080/readyz",
    }


def cluster_gateway_ports() -> list[str]:
    """The cluster's gateway ports, as deploy/cluster/env.sh sets them (`GATEWAY_PORTS=(…)`)."""
    text = (REPO_ROOT / "deploy" / "cluster" / "env.sh").read_text()
    found = re.search(r"^GATEWAY_PORTS=\(([^)]*)\)", text, re.MULTILINE)
    return found.group(1).split() if found else []


def exports(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of a settings file, and of the files it sources."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        if line.startswith("source "):
            values |= exports(Path(shlex.split(line)[1]))
        elif line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


# --- CPU by role ---------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cpu_s(pid: int) -> float:
    """User and system seconds of `pid`, and of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS


def cpu_by_role(run_dir: Path) -> dict[str, float]:
    """CPU seconds so far of each role's processes (`<role>[-<n>].pid`) and their descendants."""
    tree = _children()
    roles: dict[str, float] = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        role = re.sub(r"-\d+$", "", pid_file.stem)
        if "supervisor" in role:
            continue
        try:
            root = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        pending, seen = [root], set()
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            roles[role] = roles.get(role, 0.0) + _cpu_s(pid)
            pending += tree.get(pid, [])
    return roles


# --- one upload ----------------------------------------------------------------------------------


def bench_file(rows: int) -> Path:
    """The file for an upload today (its achievements' dates are relative to the day)."""
    today = datetime.now(UK).date()
    path = FILES_DIR / f"cluster-shape-{rows}-{today.isoformat()}.csv"
    if not path.exists():
        FILES_DIR.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        write_mixed_file(partial, rows, today=today, grant_eligible=False)
        partial.rename(path)
    return path


# A stack just started: its gateways answer /readyz once Kafka and PostgreSQL do.
READY_TIMEOUT_S = 180


async def wait_ready(ready_urls: list[str]) -> None:
    """Waits until every gateway of the stack can take uploads (`/readyz` 200), so that a run
    may follow the stack's start."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        for url in ready_urls:
            while True:
                try:
                    async with session.get(url) as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} not 200 within {READY_TIMEOUT_S}s")
                await asyncio.sleep(1)


async def measure(
    name: str, gateway_url: str, database_url: str, ca_file: str | None, rows: int
) -> dict[str, Any]:
    path = bench_file(rows)
    connection = await asyncpg.connect(database_url)
    try:
        key = await create_ato(connection, f"{ATO_NAME} {name}", default_policy="valid_rows")
    finally:
        await connection.close()
    headers = {"Authorization": f"Bearer {key.api_key}"}
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    run_dir = LOCAL_DIR / "run"
    cpu_before = cpu_by_role(run_dir)
    connector = aiohttp.TCPConnector(ssl=context) if context else aiohttp.TCPConnector()
    async with aiohttp.ClientSession(connector=connector) as session:
        requested = time.time()
        with path.open("rb") as body:
            async with session.post(
                f"{gateway_url}/v1/uploads",
                data=body,
                params={"file_name": path.name, "terms_accepted": "true"},
                headers={
                    **headers,
                    "Content-Type": "text/csv",
                    "Idempotency-Key": str(uuid.uuid4()),
                },
            ) as response:
                created = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"upload refused: {response.status} {created}")
        responded = time.time()
        upload_id = uuid.UUID(created["upload_id"])
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            async with session.get(f"{gateway_url}/v1/uploads/{upload_id}", headers=headers) as got:
                status = (await got.json()).get("status")
            if status in FINAL_STATUSES:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"upload not decided in {TIMEOUT_S}s")
            await asyncio.sleep(POLL_S)
        seen = time.time()
    cpu_after = cpu_by_role(run_dir)
    facts = await upload_facts(database_url, upload_id)
    stamps = {
        k: facts.pop(k)
        for k in (
            "received_at",
            "validation_started_at",
            "last_planned_at",
            "last_done_at",
            "validated_at",
        )
    }
    received, started, validated = (
        stamps[k].timestamp() for k in ("received_at", "validation_started_at", "validated_at")
    )
    # The chunks' stamps are gone when the chunks were cleared with the outcome: no split then.
    planned = stamps["last_planned_at"].timestamp() if stamps["last_planned_at"] else None
    done = stamps["last_done_at"].timestamp() if stamps["last_done_at"] else None
    if planned is not None and done is not None:
        validating = {
            "planning (file read, chunks planned)": round(planned - started, 1),
            "chunks validated and written, after the last was planned": round(done - planned, 1),
            "deciding the outcome": round(validated - done, 1),
        }
    else:
        validating = {"validating (chunks, outcome)": round(validated - started, 1)}
    total_s = seen - requested
    return {
        "name": name,
        "gateway_url": gateway_url,
        "measured_at": datetime.now(UK).isoformat(timespec="seconds"),
        **facts,
        "total_s": round(total_s, 1),
        "rows_per_s": round(facts["rows_total"] / total_s),
        "split_s": {
            "upload (body sent and stored, 202)": round(responded - requested, 1),
            "waiting for a validator": round(started - received, 1),
            **validating,
            "outcome seen by the client": round(seen - validated, 1),
        },
        "cpu_s": {
            role: round(cpu_after.get(role, 0.0) - spent, 1)
            for role, spent in sorted(cpu_before.items())
            if cpu_after.get(role, 0.0) - spent >= 0.05
        },
    }


async def upload_facts(database_url: str, upload_id: uuid.UUID) -> dict[str, Any]:
    """The outcome and its stamps; the upload's rows are deleted afterwards."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT status, rows_total, rows_valid, rows_invalid, rows_warned, chunks_total,"
            " received_at, validation_started_at, validated_at,"
            " (SELECT max(planned_at) FROM validation_chunks c WHERE c.upload_id = u.upload_id)"
            "   AS last_planned_at,"
            " (SELECT max(done_at) FROM validation_chunks c WHERE c.upload_id = u.upload_id)"
            "   AS last_done_at"
            " FROM uploads u WHERE upload_id = $1",
            upload_id,
        )
        assert row is not None
        await connection.execute("DELETE FROM achievements WHERE upload_id = $1", upload_id)
        await connection.execute("DELETE FROM outbox WHERE key = $1", str(upload_id))
    finally:
        await connection.close()
    return dict(row)


# --- the table -----------------------------------------------------------------------------------


def result_path(name: str) -> Path:
    return RESULTS_DIR / f"cluster-shape-{name}.json"


def table(results: dict[str, dict[str, Any]]) -> str:
    names = [n for n in ("single", "cluster") if n in results]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("rows", [f"{results[n]['rows_total']:,}" for n in names])
    row("outcome", [f"{results[n]['status']}, {results[n]['rows_valid']:,} valid" for n in names])
    row("POST to outcome (s)", [f"{results[n]['total_s']:.1f}" for n in names])
    row("rows/s", [f"{results[n]['rows_per_s']:,}" for n in names])
    for label in results[names[0]]["split_s"]:
        row(label + " (s)", [f"{results[n]['split_s'].get(label, 0):.1f}" for n in names])
    roles = sorted({role for n in names for role in results[n]["cpu_s"]})
    for role in roles:
        row(f"CPU s: {role}", [f"{results[n]['cpu_s'].get(role, 0):.1f}" for n in names])
    row("CPU s: all", [f"{sum(results[n]['cpu_s'].values()):.1f}" for n in names])
    if len(names) == 2:
        ratio = results["single"]["total_s"] / results["cluster"]["total_s"]
        lines.append("")
        lines.append(
            f"The cluster's speed against the single node's: {ratio:.2f}x (target >= {TARGET}x)."
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("name", choices=("cluster", "single"))
    run.add_argument("--gateway-url")
    run.add_argument("--database-url")
    run.add_argument("--ca-file")
    run.add_argument("--rows", type=int, default=ROWS)
    commands.add_parser("table")
    args = parser.parse_args(argv)
    if args.command == "run":
        chosen = preset(args.name)
        gateway_url = args.gateway_url or chosen["gateway_url"]
        database_url = args.database_url or chosen["database_url"]
        if not gateway_url or not database_url:
            parser.error(f"no settings for {args.name}: is it running?")
        asyncio.run(wait_ready([url for url in (chosen["ready_urls"] or "").split(",") if url]))
        result = asyncio.run(
            measure(
                args.name, gateway_url, database_url, args.ca_file or chosen["ca_file"], args.rows
            )
        )
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        result_path(args.name).write_text(json.dumps(result, indent=1) + "\n")
        print(table({args.name: result}))
        return 0
    results = {
        name: json.loads(result_path(name).read_text())
        for name in ("single", "cluster")
        if result_path(name).exists()
    }
    if not results:
        parser.error("no results yet: `run cluster` and `run single` first")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
