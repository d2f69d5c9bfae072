"""Every command that needs PostgreSQL or Kafka gives up reaching it within the connect timeout:
against a closed port and against a server that accepts and never answers, it prints one JSON
failure (`DATABASE_UNREACHABLE` or `KAFKA_UNREACHABLE`) and exits 4, logs on stderr only (JSON
lines). The ATO's commands report a gateway that refuses as `GATEWAY_UNREACHABLE`, exit 4.

Each command runs as a process, as an operator or a Job runs it, with an environment built
here: nothing of the calling shell reaches it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# About forty processes, each mostly starting Python: seconds, not milliseconds. The module's
# fixture runs them all inside the first test, hence a limit above pytest's default 300 s for
# a machine busy with other work.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
# A hang is a failure, not a wait: far above the connect timeout the commands are given.
PROCESS_LIMIT_S = 60
CONNECT_TIMEOUT_S = "0.5"
UPLOAD_ID = "6f1c1b1e-5d5c-4c4e-9a55-2f8f6d1c0a01"

DATABASE_COMMANDS = [
    ["admin", "migrate"],
    ["admin", "migrated"],
    ["reference", "load"],
    ["ato", "create", "Example Training Ltd"],
    ["ato", "key", "create", "ATO-1"],
    ["ato", "key", "revoke", UPLOAD_ID],
    ["reconcile", "--since", "2026-11-01"],
    ["purge", "--dry-run"],
    ["purge", "--every", "3600"],
    ["learner", "find", "--ato", "ATO-1"],
    ["learner", "erase", "--ato", "ATO-1"],
    ["operator", "create", "Ops Lead"],
    # The operator is identified in PostgreSQL before Kafka is reached.
    ["dlq", "replay", "0:1"],
    ["reconcile", UPLOAD_ID, "--repair"],
]
KAFKA_COMMANDS = [
    ["admin", "topics"],
    ["watch", "--topic", "dead-letter", "--from-beginning"],
    ["dlq", "list"],
    ["dlq", "show", "0:1"],
]
GATEWAY_COMMANDS = [
    ["upload", "{file}", "--wait"],
    ["status", UPLOAD_ID],
    ["errors", UPLOAD_ID, "--csv"],
    ["withdraw", UPLOAD_ID],
]


def closed_port() -> int:
    """A port nothing listens on: bound, then given back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class SilentServer:
    """Accepts every connection and never sends a byte: a server that hangs, or a firewall
    that lets the handshake through."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed: the test is over
                return
            self._held.append(connection)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()
        self._thread.join(timeout=5)


def environment(port: int, storage: Path) -> dict[str, str]:
    """Everything the process sees: PostgreSQL, Kafka and the gateway all at `port`."""
    return {
        "PATH": "/usr/bin:/bin",
        "DEPLOYMENT_MODE": "local",
        "DATABASE_URL": f"postgresql://achievements:achievements@127.0.0.1:{port}/achievements",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "ACHIEVEMENTS_GATEWAY_URL": f"http://127.0.0.1:{port}",
        "ACHIEVEMENTS_API_KEY": "ak_test",
        "ACHIEVEMENTS_LEARNER_ULN": "1000000043",
        "ACHIEVEMENTS_OPERATOR_TOKEN": "op_" + "0" * 32 + "_unchecked",
        "ACHIEVEMENTS_CONNECT_TIMEOUT_S": CONNECT_TIMEOUT_S,
        "STORAGE_ROOT": str(storage),
    }


Outcome = tuple[int, dict[str, Any], list[str]]


def achievements(argv: list[str], env: dict[str, str]) -> Outcome:
    """Exit status, the one JSON object on stdout, the stderr lines."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *argv, "--json"],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROCESS_LIMIT_S,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (argv, done.stdout, done.stderr)
    return done.returncode, json.loads(lines[0]), done.stderr.splitlines()


@dataclass
class Runs:
    closed_port: int
    silent_port: int
    outcomes: dict[tuple[str, str], Outcome]

    def of(self, target: str, argv: list[str]) -> Outcome:
        return self.outcomes[(target, " ".join(argv))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Every command against both, four processes at a time (each mostly starts Python)."""
    storage = tmp_path_factory.mktemp("storage")
    file = storage / "june.csv"
    file.write_text("ProviderReference\n", encoding="utf-8")
    with SilentServer() as silent:
        ports = {"closed": closed_port(), "silent": silent.port}
        jobs = [
            (target, argv)
            for argv in DATABASE_COMMANDS + KAFKA_COMMANDS
            for target in ("closed", "silent")
        ] + [("closed", argv) for argv in GATEWAY_COMMANDS]
        with ThreadPoolExecutor(max_workers=4) as pool:
            started = {
                (target, " ".join(argv)): pool.submit(
                    achievements,
                    [arg.format(file=file) for arg in argv],
                    environment(ports[target], storage),
                )
                for target, argv in jobs
            }
            outcomes = {key: future.result() for key, future in started.items()}
        yield Runs(ports["closed"], ports["silent"], outcomes)


def assert_logs_are_json_lines(stderr: list[str]) -> None:
    for line in stderr:
        assert isinstance(json.loads(line), dict), line


# Each command that needs PostgreSQL or Kafka, with the failure code and the server's name it
# must answer with when that server cannot be reached.
UNREACHABLE_SERVERS = [
    *(
        pytest.param(argv, "DATABASE_UNREACHABLE", "PostgreSQL", id=" ".join(argv))
        for argv in DATABASE_COMMANDS
    ),
    *(
        pytest.param(argv, "KAFKA_UNREACHABLE", "Kafka", id=" ".join(argv))
        for argv in KAFKA_COMMANDS
    ),
]


@pytest.mark.parametrize(("argv", "code", "server"), UNREACHABLE_SERVERS)
def test_a_closed_port_is_reported_at_once(
    argv: list[str], code: str, server: str, runs: Runs
) -> None:
    status, failure, stderr = runs.of("closed", argv)
    assert status == 4
    assert failure["code"] == code
    assert failure["exit_code"] == 4
    assert failure["message"].startswith(
        f"{server} at 127.0.0.1:{runs.closed_port} could not be reached: "
    )
    assert "achievements:achievements" not in failure["message"]  # the database URL's password
    assert_logs_are_json_lines(stderr)


@pytest.mark.parametrize(("argv", "code", "server"), UNREACHABLE_SERVERS)
def test_a_server_that_never_answers_is_given_up_on(
    argv: list[str], code: str, server: str, runs: Runs
) -> None:
    status, failure, stderr = runs.of("silent", argv)
    assert (status, failure) == (
        4,
        {
            "code": code,
            "message": f"{server} at 127.0.0.1:{runs.silent_port} could not be reached: no"
            " answer within 0.5 s (--connect-timeout)",
            "exit_code": 4,
        },
    )
    assert_logs_are_json_lines(stderr)


@pytest.mark.parametrize("argv", GATEWAY_COMMANDS, ids=" ".join)
def test_a_closed_gateway_port_is_reported(argv: list[str], runs: Runs) -> None:
    status, failure, stderr = runs.of("closed", argv)
    assert status == 4
    assert (failure["code"], failure["exit_code"]) == ("GATEWAY_UNREACHABLE", 4)
    assert_logs_are_json_lines(stderr)


def test_the_option_overrides_the_variable(tmp_path: Path) -> None:
    with SilentServer() as silent:
        env = {**environment(silent.port, tmp_path), "ACHIEVEMENTS_CONNECT_TIMEOUT_S": "600"}
        status, failure, _ = achievements(["--connect-timeout", "0.25", "admin", "migrate"], env)
    assert (status, failure["code"]) == (4, "DATABASE_UNREACHABLE")
    assert "no answer within 0.25 s" in failure["message"]


def test_an_invalid_connect_timeout_is_a_settings_failure(tmp_path: Path) -> None:
    env = {**environment(closed_port(), tmp_path), "ACHIEVEMENTS_CONNECT_TIMEOUT_S": "soon"}
    status, failure, _ = achievements(["admin", "migrate"], env)
    assert (status, failure["code"]) == (2, "INVALID_SETTINGS")
    assert "connect_timeout_s" in failure["message"]
    assert "soon" not in failure["message"]
