"""Load: 20 ATOs upload at once while claims flow, and the API keeps answering quickly.

    .venv/bin/python bench/bench_load.py [--atos 20] [--scale 1.0] [--probe-interval-s 0.05]

Starts the real services as processes (gateway, two validators, a bridge, the grant stand-in)
on the local stack's PostgreSQL and Kafka (`make infra`), with databases, a topic prefix and a
storage folder of their own, all removed afterwards. Each ATO uploads one file at the same
moment: sizes cycle through 100,000, 50,000, 20,000, 5,000 and 1,000 rows (times `--scale`),
every third file has 2 % invalid rows (a wrong ULN check digit, policy `valid_rows`), a few rows
per file have no or a not grant-eligible levy number, and the amendment window is a few seconds,
so the first claims are sent while the big files are still being validated.

Throughout, a prober asks `GET /healthz` and `GET /v1/uploads/{id}` (one of the uploads, in
turn) every `--probe-interval-s`, one request at a time, and records how long each took. At the
end it prints the percentiles of both, and checks what must hold under load:

- every upload ends with the counts of the offline check (`check_file`) of the same file;
- every eligible achievement is claimed once at the stand-in: one stored claim per achievement,
  one call that stored it, none sent again after its acceptance reached the bridge.

Prints the figures and exits non-zero when a check fails. Nothing asserts a timing: the
percentiles are printed, to be read against the 100 ms target, beside the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from scratch_database import admin, database_url

from services.core.db import migrate_dsn
from services.core.events import Topics
from services.core.kafka import ensure_topics
from services.core.reference_store import load_into_database
from services.core.scheme.check import check_file
from services.core.scheme.codes import Policy
from services.core.scheme.columns import Column
from services.core.scheme.reference import bundled_reference
from services.core.settings import KafkaSettings
from services.core.states import FINAL as FINAL_STATES
from services.upload_gateway.keys import create_ato

REPO_ROOT = Path(__file__).resolve().parents[1]
UK = ZoneInfo("Europe/London")
SIZES = (100_000, 50_000, 20_000, 5_000, 1_000)
FINAL = {state.value for state in FINAL_STATES}
TOKEN = "bench-grant-token"  # noqa: S105 (the stand-in's token for this run only)
ADMIN_TOKEN = "bench-standin-admin-token"  # noqa: S105 (likewise)
TARGET_MS = 100.0


# --- Files ---------------------------------------------------------------------------------------


def ulns(first_prefix: int = 500_000_000) -> Iterator[str]:
    """Distinct valid ULNs (csv-scheme.md §3.1): the prefixes for which a check digit exists."""
    for prefix in itertools.count(first_prefix):
        digits = [int(d) for d in str(prefix)]
        remainder = sum(w * d for w, d in zip(range(10, 1, -1), digits, strict=True)) % 11
        if remainder:
            yield f"{prefix}{(10 - remainder) % 10}"


def letters(number: int) -> str:
    text = ""
    while True:
        number, digit = divmod(number, 26)
        text = chr(ord("A") + digit) + text
        if number == 0:
            return text


# As spreadsheets write them: accented names, and notes that the CSV writer must quote (a comma,
# doubled quotes, a line break), on about half the rows.
FORENAMES = ("Zoë", "Siân", "José", "Anaïs", "Björn", "Mary-Jane", "Seán", "Łukasz")
SURNAMES = ("Núñez", "O'Brien", "Dvořák", "Müller", "Le Bihan", "García", "Smith", "Ørsted")
NOTES = (
    "PO 4471, cohort B",
    "",
    'Learner said "thanks" at the end',
    "",
    "Resit booked\nfor the practical",
    "",
    "Paid by card",
    "",
)


@dataclass
class File:
    path: Path
    rows: int
    eligible_rows: set[int] = field(default_factory=set)


def write_file(
    path: Path, rows: int, learners: Iterator[str], *, invalid_every: int | None
) -> File:
    """Rows of distinct learners; every `invalid_every`-th row has a wrong ULN (ULN_02);
    about one row in 200 has no levy number and one in 200 a not grant-eligible one."""
    reference = bundled_reference()
    today = datetime.now(UK).date()
    courses = sorted(
        c.code
        for c in reference.courses()
        if c.valid_to is None and c.valid_from <= today - timedelta(days=10)
    )
    eligible = sorted(e.levy_number for e in reference.employers() if e.grant_eligible)
    other = sorted(e.levy_number for e in reference.employers() if not e.grant_eligible)
    generated = File(path, rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([column.value for column in Column])
    with path.open("w", encoding="utf-8", newline="") as target:
        for index in range(rows):
            row_number = index + 2
            invalid = invalid_every is not None and index % invalid_every == invalid_every - 1
            levy = eligible[index % len(eligible)]
            if index % 200 == 7:
                levy = ""
            elif index % 200 == 107:
                levy = other[index % len(other)]
            uln = next(learners)
            if invalid:
                uln = uln[:-1] + str((int(uln[-1]) + 1) % 10)
            elif levy in eligible:
                generated.eligible_rows.add(row_number)
            record = {
                Column.PROVIDER_REFERENCE: f"{path.stem}-{row_number}",
                Column.COURSE_CODE: courses[index % len(courses)],
                Column.ACHIEVEMENT_DATE: (today - timedelta(days=1 + index % 8)).isoformat(),
                Column.LEARNER_FORENAME: f"{FORENAMES[index % len(FORENAMES)]} {letters(index)}",
                Column.LEARNER_SURNAME: SURNAMES[index % len(SURNAMES)] + letters(index // 7),
                Column.DATE_OF_BIRTH: date(
                    1970 + index % 30, 1 + index % 12, 1 + index % 28
                ).isoformat(),
                Column.ULN: uln,
                Column.NI_NUMBER: "",
                Column.CITB_INDIVIDUAL_ID: "",
                Column.EMPLOYER_LEVY_NUMBER: levy,
                Column.NOTES: NOTES[index % len(NOTES)],
            }
            writer.writerow([record[column] for column in Column])
            if index % 5_000 == 0:
                target.write(out.getvalue())
                out.seek(0)
                out.truncate()
        target.write(out.getvalue())
    return generated


# --- The services --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Services:
    scratch: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, module: str, *args: str, **extra: str) -> None:
        with (self.scratch / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO_ROOT,
                env={**self.env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; its log: {self.scratch / name}.log")

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


async def wait_for_port(port: int, timeout_s: float = 300) -> None:
    # Generous: on a machine busy with other work a service takes a minute to import.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}")


# --- Probing -------------------------------------------------------------------------------------


@dataclass
class Probe:
    healthz_ms: list[float] = field(default_factory=list)
    upload_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


async def probe(
    gateway_url: str,
    keys_and_ids: list[tuple[str, str]],
    interval_s: float,
    stop: asyncio.Event,
    figures: Probe,
) -> None:
    """One request at a time, alternating /healthz and an upload's status, as the portal reads
    them: the uploads in turn, `keys_and_ids` growing while uploads are sent."""
    turn = 0
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            targets: list[tuple[str, dict[str, str], list[float]]] = [
                (f"{gateway_url}/healthz", {}, figures.healthz_ms)
            ]
            if keys_and_ids:
                api_key, upload_id = keys_and_ids[turn % len(keys_and_ids)]
                turn += 1
                targets.append(
                    (
                        f"{gateway_url}/v1/uploads/{upload_id}",
                        {"Authorization": f"Bearer {api_key}"},
                        figures.upload_ms,
                    )
                )
            for url, headers, into in targets:
                started = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            figures.errors[str(response.status)] += 1
                except aiohttp.ClientError as error:
                    figures.errors[type(error).__name__] += 1
                into.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(interval_s)


def percentiles(values: list[float], target_ms: float = TARGET_MS) -> dict[str, float]:
    if len(values) < 2:
        return {"n": len(values)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "n": len(values),
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(max(values), 1),
        f"over_{target_ms:g}ms": sum(1 for v in values if v > target_ms),
    }


# --- The stack under load --------------------------------------------------------------------


@dataclass
class LoadStack:
    """The services of one run, as processes on the local stack's PostgreSQL and Kafka, with a
    database, a topic prefix and a storage folder of their own, all removed afterwards."""

    scratch: Path
    pipeline_dsn: str
    standin_dsn: str
    kafka: KafkaSettings
    gateway_url: str
    standin_url: str
    keys: list[Any]
    services: Services

    @classmethod
    @asynccontextmanager
    async def started(
        cls,
        atos: int,
        *,
        window_s: float,
        validators: int = 2,
        keep_logs: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> AsyncIterator[LoadStack]:
        run_id = uuid.uuid4().hex[:8]
        scratch = Path(tempfile.mkdtemp(prefix=f"bench-load-{run_id}-"))
        pipeline_db, standin_db = f"bench_load_{run_id}", f"bench_load_standin_{run_id}"
        kafka = KafkaSettings(topic_prefix=f"bench-load-{run_id}.")
        topics = Topics(kafka.topic_prefix)
        services = Services(scratch, {})
        try:
            for name in (pipeline_db, standin_db):
                await admin(f"CREATE DATABASE {name}")
            await migrate_dsn(database_url(pipeline_db))
            await migrate_dsn(database_url(standin_db), "services.grant_standin.migrations")
            connection = await asyncpg.connect(database_url(pipeline_db))
            try:
                await load_into_database(connection)
                keys = [
                    await create_ato(connection, f"Load ATO {n}", "valid_rows") for n in range(atos)
                ]
            finally:
                await connection.close()
            await ensure_topics(kafka, topics)
            gateway_port, standin_port = free_port(), free_port()
            services.env = {
                **os.environ,
                "DEPLOYMENT_MODE": "local",
                "DATABASE_URL": database_url(pipeline_db),
                "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
                "STORAGE_ROOT": str(scratch / "storage"),
                "GATEWAY_PORT": str(gateway_port),
                "GRANT_STANDIN_PORT": str(standin_port),
                "GRANT_STANDIN_DATABASE_URL": database_url(standin_db),
                "GRANT_STANDIN_TOKEN": TOKEN,
                "GRANT_STANDIN_ADMIN_TOKEN": ADMIN_TOKEN,
                "GRANT_BRIDGE_TOKEN": TOKEN,
                "GRANT_BRIDGE_GRANT_API_URL": f"http://127.0.0.1:{standin_port}",
                "GRANT_BRIDGE_AMENDMENT_WINDOW_S": str(window_s),
                "LOG_LEVEL": "INFO",
                **(extra_env or {}),
            }
            services.start("grant-standin", "services.grant_standin")
            services.start("gateway", "services.upload_gateway")
            for n in range(1, validators + 1):
                services.start(
                    f"validator-{n}", "services.validator", VALIDATOR_WORKER_NAME=f"validator-{n}"
                )
            services.start("bridge", "services.grant_bridge")
            await wait_for_port(standin_port)
            await wait_for_port(gateway_port)
            yield cls(
                scratch,
                database_url(pipeline_db),
                database_url(standin_db),
                kafka,
                f"http://127.0.0.1:{gateway_port}",
                f"http://127.0.0.1:{standin_port}",
                keys,
                services,
            )
        finally:
            services.stop()
            for name in (pipeline_db, standin_db):
                await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin_client = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
            await admin_client.start()
            try:
                await admin_client.delete_topics(topics.all())
            finally:
                await admin_client.close()
            if keep_logs:
                print(f"logs kept in {scratch}")
            else:
                shutil.rmtree(scratch, ignore_errors=True)


async def send_upload(
    session: aiohttp.ClientSession, gateway_url: str, api_key: str, path: Path
) -> str:
    with path.open("rb") as body:
        async with session.post(
            f"{gateway_url}/v1/uploads",
            data=body,
            params={"file_name": path.name, "terms_accepted": "true"},
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/csv"},
        ) as response:
            answer = await response.json()
            if response.status != 202:
                raise RuntimeError(f"upload refused: {response.status} {answer}")
            return str(answer["upload_id"])


async def outcome(
    session: aiohttp.ClientSession, gateway_url: str, api_key: str, upload_id: str
) -> dict[str, Any]:
    """The upload as `GET /v1/uploads/{id}` shows it once final, read every 10 ms as a client
    waiting on a small upload would."""
    headers = {"Authorization": f"Bearer {api_key}"}
    while True:
        async with session.get(
            f"{gateway_url}/v1/uploads/{upload_id}", headers=headers
        ) as response:
            upload: dict[str, Any] = await response.json()
        if upload.get("status") in FINAL:
            return upload
        await asyncio.sleep(0.01)


# --- The run: one file per ATO at once ----------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    async with LoadStack.started(
        args.atos, window_s=args.window_s, keep_logs=args.keep_logs
    ) as stack:
        learners = ulns()
        files = []
        for n in range(args.atos):
            rows = max(10, int(SIZES[n % len(SIZES)] * args.scale))
            files.append(
                write_file(
                    stack.scratch / f"ato-{n:02d}.csv",
                    rows,
                    learners,
                    invalid_every=50 if n % 3 == 2 else None,
                )
            )
        today = datetime.now(UK).date()
        expected = [check_file(f.path, today=today, policy=Policy.VALID_ROWS) for f in files]
        print(
            f"{len(files)} files, {sum(f.rows for f in files)} rows,"
            f" {sum(len(f.eligible_rows) for f in files)} eligible achievements"
        )
        keys = stack.keys
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            upload_ids = await asyncio.gather(
                *(
                    send_upload(session, stack.gateway_url, key.api_key, generated.path)
                    for key, generated in zip(keys, files, strict=True)
                )
            )
            uploaded_s = time.monotonic() - started
            figures = Probe()
            stop = asyncio.Event()
            prober = asyncio.create_task(
                probe(
                    stack.gateway_url,
                    [(k.api_key, u) for k, u in zip(keys, upload_ids, strict=True)],
                    args.probe_interval_s,
                    stop,
                    figures,
                )
            )
            try:
                statuses = await wait_final(
                    session, stack.gateway_url, keys, upload_ids, stack.services
                )
                validated_s = time.monotonic() - started
                eligible = claims_due(files, upload_ids, statuses)
                await wait_claims(stack.pipeline_dsn, eligible, stack.services)
                settled_s = time.monotonic() - started
            finally:
                stop.set()
                await prober

            problems = await check(
                session, stack.pipeline_dsn, stack.standin_url, files, upload_ids, expected
            )

        report = {
            "atos": args.atos,
            "rows": sum(f.rows for f in files),
            "claims": eligible,
            "uploaded_s": round(uploaded_s, 1),
            "validated_s": round(validated_s, 1),
            "claims_settled_s": round(settled_s, 1),
            "healthz": percentiles(figures.healthz_ms),
            "get_upload": percentiles(figures.upload_ms),
            "probe_errors": dict(figures.errors),
            "problems": problems,
        }
        print(json.dumps(report, indent=2))
        return 1 if problems or figures.errors else 0


# --- The run: many ATOs, several files each, spread over minutes ------------------------------


@dataclass
class ProbeUploads:
    """The probe ATO's small uploads: from the POST to the first status read that shows the
    outcome, the client polling every 10 ms."""

    seconds: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


async def probe_uploads(
    session: aiohttp.ClientSession,
    stack: LoadStack,
    api_key: str,
    files: list[File],
    expected: list[Any],
    every_s: float,
    figures: ProbeUploads,
) -> None:
    started = time.monotonic()
    for n, (generated, report) in enumerate(zip(files, expected, strict=True)):
        await asyncio.sleep(max(0.0, started + n * every_s - time.monotonic()))
        sent = time.perf_counter()
        upload_id = await send_upload(session, stack.gateway_url, api_key, generated.path)
        upload = await outcome(session, stack.gateway_url, api_key, upload_id)
        figures.seconds.append(time.perf_counter() - sent)
        if (upload["status"], upload["rows_valid"]) != (report.status, report.rows_valid):
            figures.wrong.append(f"{generated.path.name}: {upload['status']} != offline")


async def run_spread(args: argparse.Namespace) -> int:
    """Issue part 5: `--atos` ATOs each send `--files-per-ato` files of 1,000 to 20,000 rows
    (times `--scale`) at random moments over `--over-s`, while claims flow and the portal reads
    statuses; a probe ATO sends a 20-row file every `--probe-every-s` throughout."""
    chance = random.Random(20261207)  # a schedule that repeats from run to run
    async with LoadStack.started(
        args.atos + 1, window_s=args.window_s, keep_logs=args.keep_logs
    ) as stack:
        keys, probe_key = stack.keys[:-1], stack.keys[-1]
        learners = ulns()
        plan: list[tuple[float, Any, File]] = []
        for n, key in enumerate(keys):
            for k in range(args.files_per_ato):
                rows = max(10, int(chance.randint(1_000, 20_000) * args.scale))
                generated = write_file(
                    stack.scratch / f"ato-{n:03d}-{k}.csv",
                    rows,
                    learners,
                    invalid_every=50 if (n + k) % 3 == 2 else None,
                )
                plan.append((chance.uniform(0, args.over_s), key, generated))
        plan.sort(key=lambda planned: planned[0])
        probes = [
            write_file(stack.scratch / f"probe-{n:03d}.csv", 20, learners, invalid_every=None)
            for n in range(int(args.over_s // args.probe_every_s) + 1)
        ]
        today = datetime.now(UK).date()
        files = [generated for _, _, generated in plan]
        expected = [check_file(f.path, today=today, policy=Policy.VALID_ROWS) for f in files]
        probe_expected = [check_file(f.path, today=today, policy=Policy.VALID_ROWS) for f in probes]
        print(
            f"{len(files)} files over {args.over_s:g} s, {sum(f.rows for f in files)} rows,"
            f" {sum(len(f.eligible_rows) for f in files)} eligible achievements;"
            f" {len(probes)} probe uploads"
        )
        sent: list[tuple[str, str]] = []
        figures, probed = Probe(), ProbeUploads()
        stop = asyncio.Event()
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

            async def send_at(at_s: float, key: Any, generated: File) -> str:
                await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
                upload_id = await send_upload(
                    session, stack.gateway_url, key.api_key, generated.path
                )
                sent.append((key.api_key, upload_id))
                return upload_id

            prober = asyncio.create_task(
                probe(stack.gateway_url, sent, args.probe_interval_s, stop, figures)
            )
            try:
                upload_ids, _ = await asyncio.gather(
                    asyncio.gather(*(send_at(at, key, f) for at, key, f in plan)),
                    probe_uploads(
                        session,
                        stack,
                        probe_key.api_key,
                        probes,
                        probe_expected,
                        args.probe_every_s,
                        probed,
                    ),
                )
                statuses = await wait_final(
                    session,
                    stack.gateway_url,
                    [key for _, key, _ in plan],
                    list(upload_ids),
                    stack.services,
                )
                validated_s = time.monotonic() - started
                eligible = claims_due(files, list(upload_ids), statuses) + sum(
                    len(f.eligible_rows) for f in probes
                )
                # The upload window's figures now: the claims' drain can take far longer, and a
                # run stopped during it would otherwise print nothing.
                print(
                    f"every upload final after {validated_s:.1f}s; {eligible:,} claims to drain;"
                    f" so far: healthz {percentiles(figures.healthz_ms, 50.0)},"
                    f" get_upload {percentiles(figures.upload_ms, 100.0)}, probe uploads"
                    f" {percentiles([s * 1000 for s in probed.seconds], 2000.0)}",
                    flush=True,
                )
                await wait_claims(stack.pipeline_dsn, eligible, stack.services)
                settled_s = time.monotonic() - started
            finally:
                stop.set()
                await prober
            problems = await check(
                session, stack.pipeline_dsn, stack.standin_url, files, list(upload_ids), expected
            )
        problems += probed.wrong
        probe_ms = [seconds * 1000 for seconds in probed.seconds]
        report = {
            "atos": args.atos,
            "files": len(files),
            "rows": sum(f.rows for f in files),
            "claims": eligible,
            "validated_s": round(validated_s, 1),
            "claims_settled_s": round(settled_s, 1),
            "claims_drained_after_last_outcome_s": round(settled_s - validated_s, 1),
            "healthz (target p99 < 50 ms)": percentiles(figures.healthz_ms, 50.0),
            "get_upload (target p99 < 100 ms)": percentiles(figures.upload_ms, 100.0),
            "probe_upload (target max <= 2 s)": percentiles(probe_ms, 2000.0),
            "probe_errors": dict(figures.errors),
            "problems": problems,
        }
        print(json.dumps(report, indent=2))
        return 1 if problems or figures.errors else 0


async def wait_final(
    session: aiohttp.ClientSession,
    gateway_url: str,
    keys: list[Any],
    upload_ids: list[str],
    services: Services,
) -> dict[str, str]:
    statuses: dict[str, str] = {}
    while len(statuses) < len(upload_ids):
        for key, upload_id in zip(keys, upload_ids, strict=True):
            if upload_id in statuses:
                continue
            async with session.get(
                f"{gateway_url}/v1/uploads/{upload_id}",
                headers={"Authorization": f"Bearer {key.api_key}"},
            ) as response:
                status = (await response.json()).get("status")
            if status in FINAL:
                statuses[upload_id] = status
        services.check_alive()
        await asyncio.sleep(0.5)
    return statuses


def claims_due(files: list[File], upload_ids: list[str], statuses: dict[str, str]) -> int:
    """The claims the bridge owes: one per eligible row of each file whose upload ended."""
    return sum(
        len(f.eligible_rows) for f, u in zip(files, upload_ids, strict=True) if statuses[u] in FINAL
    )


async def wait_claims(dsn: str, eligible: int, services: Services) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            row = await connection.fetchrow(
                "SELECT count(*) AS claims, count(*) FILTER (WHERE state = 'pending') AS pending"
                " FROM grant_claims"
            )
            if row["claims"] == eligible and row["pending"] == 0:
                return
            services.check_alive()
            await asyncio.sleep(0.5)
    finally:
        await connection.close()


async def check(
    session: aiohttp.ClientSession,
    dsn: str,
    standin: str,
    files: list[File],
    upload_ids: list[str],
    expected: list[Any],
) -> list[str]:
    problems = []
    connection = await asyncpg.connect(dsn)
    try:
        for generated, upload_id, report in zip(files, upload_ids, expected, strict=True):
            upload = await connection.fetchrow(
                "SELECT status, rows_total, rows_valid, rows_invalid, rows_warned"
                " FROM uploads WHERE upload_id = $1",
                upload_id,
            )
            for name in ("status", "rows_total", "rows_valid", "rows_invalid", "rows_warned"):
                if str(upload[name]) != str(getattr(report, name)):
                    problems.append(f"{generated.path.name}: {name} {upload[name]} != offline")
    finally:
        await connection.close()
    for generated, upload_id in zip(files, upload_ids, strict=True):
        async with session.get(
            f"{standin}/v1/claims",
            params={"upload_id": upload_id},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            claims = (await response.json())["claims"]
        held = Counter(c["row_number"] for c in claims)
        if [row for row, n in held.items() if n > 1]:
            problems.append(f"{generated.path.name}: claimed more than once")
        if set(held) != generated.eligible_rows:
            problems.append(f"{generated.path.name}: claims differ from the eligible rows")
        async with session.get(
            f"{standin}/admin/calls",
            params={"upload_id": upload_id},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as response:
            calls = (await response.json())["calls"]
        for claim_id, claim_calls in calls.items():
            if sum(1 for c in claim_calls if c["stored_status"] == 201) != 1:
                problems.append(f"{generated.path.name}: claim {claim_id} not stored once")
            if sum(1 for c in claim_calls if c["delivered"] and c["status"] in (200, 201)) > 1:
                problems.append(f"{generated.path.name}: claim {claim_id} sent again")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--atos", type=int, default=20)
    parser.add_argument("--scale", type=float, default=1.0, help="times the file sizes")
    parser.add_argument("--window-s", type=float, default=5.0, help="the amendment window")
    parser.add_argument("--probe-interval-s", type=float, default=0.05)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument(
        "--files-per-ato",
        type=int,
        default=1,
        help="above 1: each ATO sends this many files of 1,000-20,000 rows over --over-s",
    )
    parser.add_argument("--over-s", type=float, default=300.0)
    parser.add_argument("--probe-every-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    # SIGTERM (a `timeout`) ends the run like Ctrl-C: the services, databases and topics
    # are still removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return asyncio.run(run_spread(args) if args.files_per_ato > 1 else run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
