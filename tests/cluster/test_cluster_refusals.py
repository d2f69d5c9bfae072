"""Settings the cluster's real brokers and PostgreSQL refuse for good: a service says which
setting is wrong and stops (a worker: one line, exit status 2) or reports not ready (the
gateway, which must answer its probes); it never retries for ever.

Each service here is started beside the cluster with the settings the cluster gives its own
(deploy/cluster writes them), one of them wrong:

- a wrong SASL password: the brokers refuse the SCRAM login;
- a Kafka user with no Read on the uploads topic nor its group (the gateway's, which may only
  write): the brokers refuse the validator's fetch;
- a wrong password for the runtime database role: PostgreSQL refuses the login (over TLS,
  `verify-full`, through the multi-host URL).

A worker still running after `SERVICE_EXIT_LIMIT_S` took its refusal for an outage: a failure.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.cluster.conftest import Cluster, read_exports
from tests.e2e.conftest import free_port
from tests.service_env import REPO_ROOT, run_service, service_env

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]

SASL_SETTINGS = "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
# The gateway's principal: Describe and Write on the topics its relay publishes, nothing more.
WRITE_ONLY_PRINCIPAL = "achievements-gateway"
NOT_READY_WITHIN_S = 60
EXIT_LINE = ": configuration refused by a dependency: "


def settings_of(cluster: Cluster, role: str, **changed: str) -> dict[str, str]:
    """The settings the cluster gives a process of `role` (deploy/cluster/cluster.sh), with
    `changed` on top. LOG_LEVEL is left to its default (the file reads it from the shell)."""
    folder = cluster.folder
    settings = {
        **read_exports(folder / "services.env"),
        **read_exports(folder / "secrets" / f"{role}.env"),
    }
    settings.pop("LOG_LEVEL", None)
    return {**settings, **changed}


def with_password(url: str, password: str) -> str:
    return re.sub(r"^(postgresql://[^:/@]+):[^@]*@", rf"\1:{password}@", url)


def assert_stopped_naming(done: subprocess.CompletedProcess[str], *texts: str) -> None:
    """Exit status 2 and the one plain line naming the setting (asyncio's own warnings about
    the clients left may follow it)."""
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if EXIT_LINE in line]
    assert len(lines) == 1, done.stderr[-2000:]
    for text in texts:
        assert text in lines[0], lines[0]


def test_a_wrong_sasl_password_stops_a_validator_naming_the_setting(cluster: Cluster) -> None:
    settings = settings_of(cluster, "validator", KAFKA_SASL_PASSWORD="not-the-password")
    done = run_service("services.validator", settings)
    assert_stopped_naming(done, SASL_SETTINGS, "refused the SASL login")


def test_a_user_without_read_on_the_uploads_topic_stops_a_validator(cluster: Cluster) -> None:
    settings = settings_of(
        cluster,
        "validator",
        KAFKA_SASL_USERNAME=WRITE_ONLY_PRINCIPAL,
        KAFKA_SASL_PASSWORD=cluster.secret(f"kafka-{WRITE_ONLY_PRINCIPAL}"),
    )
    done = run_service("services.validator", settings)
    assert_stopped_naming(done, SASL_SETTINGS, "has no ACL")


def test_a_wrong_database_password_stops_a_grant_bridge_naming_the_setting(
    cluster: Cluster,
) -> None:
    settings = settings_of(cluster, "grant-bridge")
    settings["DATABASE_URL"] = with_password(settings["DATABASE_URL"], "not-the-password")
    done = run_service("services.grant_bridge", settings)
    assert_stopped_naming(done, "DATABASE_URL")


async def test_a_wrong_sasl_password_makes_a_gateway_report_not_ready(cluster: Cluster) -> None:
    port = free_port()
    settings = settings_of(
        cluster, "gateway", KAFKA_SASL_PASSWORD="not-the-password", GATEWAY_PORT=str(port)
    )
    gateway = subprocess.Popen(  # noqa: ASYNC220 (started once, not awaited)
        [sys.executable, "-m", "services.upload_gateway"],
        cwd=REPO_ROOT,
        env=service_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        answer = await _not_ready_for_kafka(port, gateway)
    finally:
        gateway.terminate()
        _, errors = gateway.communicate(timeout=60)
    assert answer["status"] == "not_ready", answer
    assert SASL_SETTINGS in answer["misconfigured"]["kafka"], answer
    assert "refused the SASL login" in answer["misconfigured"]["kafka"], answer
    # The password's value is in no answer and no log line.
    assert "not-the-password" not in str(answer) + errors


async def _not_ready_for_kafka(port: int, gateway: subprocess.Popen[str]) -> dict[str, Any]:
    """/readyz's answer once it names Kafka's setting (polled until NOT_READY_WITHIN_S)."""
    deadline = time.monotonic() + NOT_READY_WITHIN_S
    last: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert gateway.poll() is None, "the gateway stopped instead of reporting"
            try:
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    last = await response.json()
                    if response.status == 503 and "kafka" in last.get("misconfigured", {}):
                        return last
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.5)
    raise AssertionError(f"/readyz never named the Kafka setting: {last}")
