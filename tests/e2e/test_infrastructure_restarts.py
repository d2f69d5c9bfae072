"""The broker and the database crash under load, and the stack comes back by itself.

Each test builds a throwaway copy of the local stack (deploy/local: PostgreSQL and a KRaft
broker, the services, all under supervisord and `with-backoff`) on its own ports and in its own
folder, so the rest of the suite never sees the outage. While three uploads go through
validation and claims flow to the grant stand-in, the broker or the PostgreSQL postmaster alone
is SIGKILLed, as a crash leaves it, and only the supervisor restarts it. Then:

- every upload ends with the counts of the offline check of the same file;
- every eligible achievement is claimed once: one claim per achievement at the stand-in, each
  stored by one call, none sent again after its acceptance reached the bridge;
- the gateway's readiness follows what an upload needs: unchanged while the broker is away
  (it accepts uploads into the outbox), false while PostgreSQL is, true again after;
- no service exited: the validators, the bridge and the gateway waited and reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from services.core.scheme.check import CheckReport
from tests.e2e.conftest import Pipeline, free_port
from tests.e2e.outcomes_under_fault import (
    calls_of_claims_held_once,
    eligible_achievements,
    neither_created_once_nor_replayed,
    offline_reports,
)
from tests.e2e.test_exactly_once_claims import (
    GeneratedFile,
    generate_file,
    resent_after_acceptance,
    ulns,
)
from tests.e2e.test_validator_rebalance_and_pause import check_outcome
from tests.supervised import SupervisedProcesses, alive, eventually, wait_until

pytestmark = [pytest.mark.tier2, pytest.mark.slow, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy" / "local"
VENV = Path(sys.prefix)  # the virtual environment the tests run in
UK = ZoneInfo("Europe/London")
SERVICES = ("gateway", "validator-1", "validator-2", "bridge", "grant-standin")
WORKERS = ("gateway", "validator-1", "validator-2", "bridge")
ROWS = 900
BATCH_SIZE = 25  # claims per request to the grant API
MAX_IN_FLIGHT = 4  # batches the bridge has out at once, their answers not yet recorded
TOKEN = "restart-grant-token"
ADMIN_TOKEN = "restart-standin-admin-token"
# Variables of the calling environment that would point the stack elsewhere.
STACK_VARIABLE_PREFIXES = (
    "DATABASE_URL",
    "GRANT_",
    "GATEWAY_",
    "VALIDATOR_",
    "KAFKA_",
    "PG_",
    "STORAGE_",
    "LOCAL_DIR",
    "RUN_DIR",
    "LOG_DIR",
    "BACKOFF_",
)


def kafka_cache() -> Path:
    caches = sorted((REPO_ROOT / ".local" / "cache").glob("kafka-*/.complete"))
    if not caches:
        pytest.skip("the Kafka jars are not cached (deploy/local/kafka.sh fetch)")
    return caches[-1].parent


@dataclass
class Stack(SupervisedProcesses):
    """A copy of the local stack in `root`: its own ports, data, logs and supervisord."""

    root: Path
    env: dict[str, str]
    pg_port: int
    kafka_port: int
    gateway_port: int
    standin_port: int

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def database_url(self) -> str:
        return f"postgresql://achievements:achievements@127.0.0.1:{self.pg_port}/achievements"

    @property
    def standin_database_url(self) -> str:
        return f"postgresql://achievements:achievements@127.0.0.1:{self.pg_port}/grant_standin"

    def run(self, *command: str | Path, timeout_s: float = 180) -> str:
        done = subprocess.run(
            [str(part) for part in command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def ctl(self, *args: str) -> str:
        return self.run(
            VENV / "bin" / "supervisorctl", "-c", DEPLOY / "supervisord.conf", *args, timeout_s=120
        )

    def logs(self) -> str:
        return "\n".join(self.log_tail(name) for name in ("postgres", "kafka", *SERVICES))

    def pipeline(self) -> Pipeline:
        return Pipeline(
            env=self.env,
            gateway_url=f"http://127.0.0.1:{self.gateway_port}",
            standin_url=f"http://127.0.0.1:{self.standin_port}",
            database_url=self.database_url,
            standin_database_url=self.standin_database_url,
            token=TOKEN,
            admin_token=ADMIN_TOKEN,
        )


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def cluster_processes(data: Path) -> list[int]:
    """The processes running in the data folder: the postmaster and its backends."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "cwd") == str(data):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def stop_stack(stack: Stack) -> None:
    """Everything the stack started, supervisord last; then whatever is left is killed."""
    pids = [stack.pid(name) for name in ("postgres", "kafka", *SERVICES)]
    supervisord = None
    if (stack.run_dir / "supervisord.pid").exists():
        supervisord = int((stack.run_dir / "supervisord.pid").read_text().strip())
    if (stack.run_dir / "supervisor.sock").exists():
        for group in ("services:*", "kafka", "postgres"):
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                stack.ctl("stop", group)
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            stack.ctl("shutdown")
    leftovers = [pid for pid in [*pids, supervisord] if pid is not None]
    leftovers += cluster_processes((stack.root / "pg" / "data").resolve())
    deadline = time.monotonic() + 30
    for pid in leftovers:
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    remove_shared_memory(stack.root / "pg" / "data" / "postmaster.pid")


def remove_shared_memory(postmaster_pid: Path) -> None:
    """A postmaster that crashed and was not restarted leaves its System V shared memory
    segment behind (line 7 of postmaster.pid: its key and id); removed once nothing uses it."""
    try:
        segment = postmaster_pid.read_text().splitlines()[6].split()[1]
    except (FileNotFoundError, IndexError):
        return
    subprocess.run(["ipcrm", "-m", segment], capture_output=True, check=False)


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The throwaway stack, infrastructure and services running; all of it removed after."""
    # A short path: PostgreSQL's and supervisord's unix sockets live under it.
    root = Path(tempfile.mkdtemp(prefix="ach-", dir="/tmp"))
    root.chmod(0o755)  # the server runs as `postgres`, which must reach its data folder
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(STACK_VARIABLE_PREFIXES)
    }
    pg_port, kafka_port, controller_port = free_port(), free_port(), free_port()
    gateway_port, standin_port = free_port(), free_port()
    env |= {
        "DEPLOYMENT_MODE": "local",
        "LOCAL_DIR": str(root),
        "RUN_DIR": str(root / "run"),
        "LOG_DIR": str(root / "log"),
        "REPO_ROOT": str(REPO_ROOT),
        "VENV": str(VENV),
        "PG_PORT": str(pg_port),
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "KAFKA_CACHE_DIR": str(kafka_cache()),
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        # Restarts 1 s after a crash, then 2 s, 4 s: the test need not wait 30 s.
        "BACKOFF_MAX_S": "4",
    }
    stack = Stack(root, env, pg_port, kafka_port, gateway_port, standin_port)
    stack.env |= {
        "DATABASE_URL": stack.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
    }
    try:
        for folder in (stack.run_dir, stack.log_dir, root / "storage"):
            folder.mkdir(parents=True)
        stack.run(DEPLOY / "postgres.sh", "prepare")
        stack.run(DEPLOY / "kafka.sh", "prepare")
        stack.run(VENV / "bin" / "supervisord", "-c", DEPLOY / "supervisord.conf")
        wait_until(lambda: (stack.run_dir / "supervisor.sock").exists(), "supervisord", 20, stack)
        stack.ctl("start", "postgres", "kafka")
        wait_until(lambda: port_open(pg_port), "PostgreSQL", 60, stack)
        wait_until(lambda: port_open(kafka_port), "Kafka", 120, stack)
        stack.run(DEPLOY / "postgres.sh", "databases")
        achievements = VENV / "bin" / "achievements"
        stack.run(achievements, "admin", "migrate")
        stack.run(achievements, "admin", "topics")
        stack.run(achievements, "reference", "load")
        services_env = {
            "DEPLOYMENT_MODE": "local",
            "DATABASE_URL": stack.database_url,
            "GRANT_STANDIN_DATABASE_URL": stack.standin_database_url,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
            "STORAGE_ROOT": str(root / "storage"),
            "GATEWAY_PORT": str(gateway_port),
            "GRANT_STANDIN_PORT": str(standin_port),
            "GRANT_STANDIN_TOKEN": TOKEN,
            "GRANT_STANDIN_ADMIN_TOKEN": ADMIN_TOKEN,
            "GRANT_BRIDGE_TOKEN": TOKEN,
            "GRANT_BRIDGE_GRANT_API_URL": f"http://127.0.0.1:{standin_port}",
            "GRANT_BRIDGE_AMENDMENT_WINDOW_S": "2",
            "GRANT_BRIDGE_POLL_INTERVAL_S": "0.2",
            "GRANT_BRIDGE_BATCH_SIZE": str(BATCH_SIZE),
            "GRANT_BRIDGE_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "GRANT_BRIDGE_BACKOFF_CAP_S": "2",
            "GRANT_BRIDGE_BREAKER_COOLDOWN_S": "1",
            "GRANT_BRIDGE_CLIENT_TIMEOUT_S": "2",
            "GRANT_BRIDGE_LEASE_S": "10",
            "VALIDATOR_CHUNK_ROWS": "150",
            "DB_ACQUIRE_TIMEOUT_S": "2",
            "LOG_LEVEL": "INFO",
        }
        (stack.run_dir / "services.env").write_text(
            "".join(f"export {name}='{value}'\n" for name, value in services_env.items())
        )
        stack.ctl("start", "services:*")
        wait_until(lambda: port_open(standin_port), "the grant stand-in", 60, stack)
        wait_until(lambda: port_open(gateway_port), "the gateway", 60, stack)
        yield stack
    finally:
        stop_stack(stack)
        # The logs outlive the stack, in pytest's temporary folder (the last runs are kept).
        if stack.log_dir.exists():
            shutil.copytree(
                stack.log_dir, tmp_path_factory.mktemp("stack-logs"), dirs_exist_ok=True
            )
        shutil.rmtree(root, ignore_errors=True)


# --- Watching the pipeline -----------------------------------------------------------------------


async def gateway_ready(pipeline: Pipeline) -> bool | None:
    """The gateway's readiness; None when it does not answer at all."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"{pipeline.gateway_url}/readyz") as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return None


async def fetchval(stack: Stack, sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(stack.database_url)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def claims_accepted(stack: Stack) -> int:
    try:
        count: int = await fetchval(
            stack, "SELECT count(*) FROM grant_claims WHERE state = 'accepted'"
        )
    except (OSError, asyncpg.PostgresError):
        return 0
    return count


async def status_of(stack: Stack, upload_id: str) -> str | None:
    try:
        status: str = await fetchval(
            stack, "SELECT status FROM uploads WHERE upload_id = $1", upload_id
        )
    except (OSError, asyncpg.PostgresError):
        return None
    return status


@dataclass
class Uploads:
    pipeline: Pipeline
    api_key: str
    files: list[GeneratedFile]
    expected: list[CheckReport]
    ids: list[str]


async def three_uploads_under_way(stack: Stack, tmp_path: Path) -> Uploads:
    """One upload validated and its claims flowing, a second validating; the third is for the
    test to send."""
    pipeline = stack.pipeline()
    _, api_key = await pipeline.create_ato()
    today = datetime.now(UK).date()
    learners = ulns(300_000_000)
    files = [
        generate_file(f"cohort-{n}.csv", ROWS, learners, empty_levy=10, not_eligible_levy=10)
        for n in (1, 2, 3)
    ]
    expected = offline_reports(files, tmp_path, today)
    uploads = Uploads(pipeline, api_key, files, expected, [])

    first = await pipeline.upload(files[0].body, api_key, file_name=files[0].name)
    uploads.ids.append(first["upload_id"])
    await eventually(lambda: has_claims(stack), "claims flowing", stack, 120)
    second = await pipeline.upload(files[1].body, api_key, file_name=files[1].name)
    uploads.ids.append(second["upload_id"])
    await eventually(
        lambda: is_validating(stack, second["upload_id"]), "the second upload validating", stack, 60
    )
    return uploads


async def has_claims(stack: Stack) -> bool:
    return await claims_accepted(stack) > 0


async def is_validating(stack: Stack, upload_id: str) -> bool:
    return await status_of(stack, upload_id) == "validating"


async def send_third(uploads: Uploads) -> None:
    third = uploads.files[2]
    accepted = await uploads.pipeline.upload(third.body, uploads.api_key, file_name=third.name)
    uploads.ids.append(accepted["upload_id"])


async def all_claims_settled(stack: Stack, eligible: int) -> bool:
    try:
        row = await fetchval(
            stack,
            "SELECT ROW((SELECT count(*) FROM grant_claims),"
            " (SELECT count(*) FROM grant_claims WHERE state = 'pending'))",
        )
    except (OSError, asyncpg.PostgresError):
        return False
    return bool(row[0] == eligible and row[1] == 0)


async def check_everything(stack: Stack, uploads: Uploads, resent_at_most: int) -> dict[str, Any]:
    """Every upload's counts, and every eligible achievement claimed once; returns figures.

    `resent_at_most`: claims that may be sent again after their acceptance reached the bridge.
    The contract allows it (the same claim id and key; the grant system answers a replay), and
    it is what the bridge does with answers it could not record: their lease runs out."""
    pipeline = uploads.pipeline
    for upload_id in uploads.ids:
        await pipeline.wait_final(upload_id, uploads.api_key, timeout_s=300)
    for upload_id, expected in zip(uploads.ids, uploads.expected, strict=True):
        await check_outcome(pipeline, upload_id, expected)

    eligible = eligible_achievements(uploads.ids, uploads.files)
    await eventually(lambda: all_claims_settled(stack, len(eligible)), "claims settled", stack, 240)
    calls = await calls_of_claims_held_once(pipeline, uploads.ids, eligible)
    assert len(calls) == len(eligible)
    assert neither_created_once_nor_replayed(calls) == []
    resent = [claim_id for claim_id, c in calls.items() if resent_after_acceptance(c)]
    assert len(resent) <= resent_at_most, f"sent again after their acceptance: {resent[:5]}"
    return {
        "claims": len(eligible),
        "calls_per_claim": dict(sorted(Counter(len(c) for c in calls.values()).items())),
        "resent_after_acceptance": len(resent),
    }


def service_pids(stack: Stack) -> dict[str, int | None]:
    return {name: stack.pid(name) for name in WORKERS}


def check_nothing_exited(stack: Stack, before: dict[str, int | None], outage: str) -> None:
    exited = [name for name, pid in service_pids(stack).items() if pid != before[name]]
    logs = "\n".join(stack.log_tail(name, 60) for name in exited)
    assert exited == [], f"exited while {outage} was away: {exited}\n{logs}"


# --- The tests -----------------------------------------------------------------------------------


async def test_a_broker_killed_under_load_is_restarted_and_nothing_is_lost_or_doubled(
    stack: Stack, tmp_path: Path
) -> None:
    uploads = await three_uploads_under_way(stack, tmp_path)
    before = service_pids(stack)

    killed = stack.sigkill("kafka")
    await asyncio.to_thread(wait_until, lambda: not alive(killed), "the broker to die", 10, stack)
    # Kafka is not a dependency of an upload: the gateway stays ready and takes the third file
    # into its outbox while the broker is away.
    assert await gateway_ready(uploads.pipeline) is True
    await send_third(uploads)
    assert await gateway_ready(uploads.pipeline) is True

    await asyncio.to_thread(
        wait_until,
        lambda: stack.pid("kafka") not in (None, killed) and port_open(stack.kafka_port),
        "the supervisor to restart the broker",
        120,
        stack,
    )
    # PostgreSQL stayed up: every answer was recorded, no claim went twice.
    figures = await check_everything(stack, uploads, resent_at_most=0)

    check_nothing_exited(stack, before, "the broker")
    print(f"broker restart: {figures}")


async def test_a_postmaster_killed_alone_under_load_is_restarted_and_nothing_is_lost_or_doubled(
    stack: Stack, tmp_path: Path
) -> None:
    """A busy backend outlives its postmaster (it notices the death only when it next waits)
    and holds the shared memory: the restart must end it, or the new postmaster refuses."""
    uploads = await three_uploads_under_way(stack, tmp_path)
    await send_third(uploads)
    before = service_pids(stack)
    data = (stack.root / "pg" / "data").resolve()
    busy = await asyncpg.connect(stack.database_url)
    spinning = asyncio.create_task(busy.fetchval(SPIN))
    try:
        await eventually(lambda: spin_running(stack), "the busy backend", stack, 30)
        backends = len(cluster_processes(data))

        killed = stack.sigkill("postgres")  # the postmaster alone: its backends live on
        await eventually(
            lambda: is_not_ready(uploads.pipeline), "the gateway to be not ready", stack, 30
        )
        await asyncio.to_thread(
            wait_until,
            lambda: stack.pid("postgres") not in (None, killed) and port_open(stack.pg_port),
            "the supervisor to restart PostgreSQL",
            120,
            stack,
        )
    finally:
        spinning.cancel()
        await asyncio.gather(spinning, return_exceptions=True)
        busy.terminate()
    await eventually(lambda: is_ready(uploads.pipeline), "the gateway to be ready", stack, 120)
    # The answers of the requests out when the database went away cannot be recorded: those
    # batches, at most the in-flight limit of them (the bridge leases nothing more until it is
    # back), go again, as replays.
    figures = await check_everything(stack, uploads, resent_at_most=BATCH_SIZE * MAX_IN_FLIGHT)

    check_nothing_exited(stack, before, "the database")
    log = (stack.log_dir / "postgres.log").read_text(errors="replace")
    assert "killing the leftover backends" in log, stack.log_tail("postgres", 60)
    assert "pre-existing shared memory block is still in use" not in log
    print(f"postmaster restart: backends_at_kill={backends} {figures}")


# A statement that computes for many minutes without waiting on anything (so its backend
# never looks at the postmaster), in little memory: two small sets joined in a loop.
SPIN = "SELECT count(*) FROM generate_series(1, 200000) AS a, generate_series(1, 200000) AS b"


async def spin_running(stack: Stack) -> bool:
    running: int = await fetchval(
        stack,
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1",
        SPIN,
    )
    return running > 0


async def is_not_ready(pipeline: Pipeline) -> bool:
    return await gateway_ready(pipeline) is False


async def is_ready(pipeline: Pipeline) -> bool:
    return await gateway_ready(pipeline) is True
