"""The fault tests of `make cluster` (`make cluster-test`): they run against the cluster that
`make cluster` started (deploy/cluster), never a copy of their own, and leave it running.

Its settings are read from the files the cluster wrote under $LOCAL_DIR/cluster (the suite's
conftest drops every project variable of the environment): the operator's Kafka user for
reading, the Kafka admin for the ISR, the runtime database role, the grant tokens. The HTTPS
clients trust the cluster's CA through SSL_CERT_FILE, which `make cluster-test` sets.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr

from services.core.settings import KafkaSettings
from tests.e2e.conftest import Pipeline
from tests.supervised import SupervisedProcesses

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPTS = REPO_ROOT / "deploy" / "cluster"
VENV = Path(sys.prefix)
GATEWAY_URL = "https://127.0.0.1:8443"
STANDIN_URL = "https://127.0.0.1:8091"
KAFKA_NODES = (1, 2, 3)
# The processes a fault must not make anyone restart.
SERVICES = (
    "gateway-1",
    "gateway-2",
    "validator-1",
    "validator-2",
    "validator-3",
    "validator-4",
    "grant-bridge-1",
    "grant-bridge-2",
)


def read_exports(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of a settings file the cluster wrote."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(value)[0] if value else ""
    return values


@dataclass
class Cluster(SupervisedProcesses):
    local_dir: Path
    settings: dict[str, str]

    log_tail_lines: ClassVar[int] = 40

    @property
    def folder(self) -> Path:
        return self.local_dir / "cluster"

    @property
    def run_dir(self) -> Path:
        return self.local_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.folder / "log"

    def secret(self, name: str) -> str:
        return (self.folder / "secrets" / name).read_text().strip()

    def kafka(self, user: str = "admin") -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.settings["KAFKA_BOOTSTRAP_SERVERS"],
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=user,
            sasl_password=SecretStr(self.secret(f"kafka-{user}")),
            ssl_ca_file=self.folder / "ca.crt",
        )

    def pipeline(self) -> Pipeline:
        return Pipeline(
            env={},
            gateway_url=GATEWAY_URL,
            standin_url=STANDIN_URL,
            database_url=self.settings["DATABASE_URL"],
            standin_database_url="",
            token=self.settings["GRANT_BRIDGE_TOKEN"],
            admin_token=self.settings["GRANT_STANDIN_ADMIN_TOKEN"],
        )

    def ctl(self, *args: str) -> str:
        """supervisorctl of the cluster (deploy/cluster/env.sh's cluster_ctl)."""
        done = subprocess.run(
            ["bash", "-c", f'source "{CLUSTER_SCRIPTS}/env.sh" && cluster_ctl "$@"', "ctl", *args],
            env={**os.environ, "LOCAL_DIR": str(self.local_dir), "VENV": str(VENV)},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return done.stdout + done.stderr

    def script(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """deploy/cluster/cluster.sh ARGS (what `make cluster-failover` and the like run)."""
        return subprocess.run(
            [str(CLUSTER_SCRIPTS / "cluster.sh"), *args],
            env={**os.environ, "LOCAL_DIR": str(self.local_dir), "VENV": str(VENV)},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def primary(self) -> int:
        done = subprocess.run(
            [str(CLUSTER_SCRIPTS / "postgres.sh"), "primary"],
            env={**os.environ, "LOCAL_DIR": str(self.local_dir), "VENV": str(VENV)},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return int(done.stdout.strip())

    def logs(self, *names: str) -> str:
        return "\n".join(self.log_tail(name) for name in names or SERVICES)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    local_dir = Path(os.environ.get("LOCAL_DIR", REPO_ROOT / ".local"))
    running = subprocess.run(
        [CLUSTER_SCRIPTS / "cluster.sh", "running"],
        env={**os.environ, "LOCAL_DIR": str(local_dir), "VENV": str(VENV)},
        check=False,
    )
    if running.returncode != 0:
        pytest.skip("make cluster is not running (make cluster-test starts it)")
    if os.environ.get("SSL_CERT_FILE") != str(local_dir / "cluster" / "ca.crt"):
        pytest.skip("SSL_CERT_FILE must name the cluster's CA (make cluster-test sets it)")
    folder = local_dir / "cluster"
    settings = {
        **read_exports(folder / "services.env"),
        **read_exports(folder / "secrets" / "ops.env"),
        **read_exports(folder / "env.sh"),
    }
    return Cluster(local_dir, settings)
