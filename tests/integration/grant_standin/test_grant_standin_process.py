"""`python -m services.grant_standin` serves from its environment and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from standin_helpers import ADMIN_AUTH, ADMIN_TOKEN, claim_body, key_headers

from tests.service_env import service_env

REPO_ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Standin:
    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    async def stop(self, timeout_s: float = 15.0) -> tuple[int, list[dict[str, Any]]]:
        """SIGTERM, then the exit status and the JSON log lines."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(self.process.communicate(), timeout_s)
        lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
        assert self.process.returncode is not None
        return self.process.returncode, lines


@pytest.fixture
async def start_standin(standin_database_url: str) -> AsyncIterator[Any]:
    started: list[Standin] = []

    async def start(**env: str) -> Standin:
        port = _free_port()
        environment = service_env(
            {
                "DEPLOYMENT_MODE": "local",
                "GRANT_STANDIN_DATABASE_URL": standin_database_url,
                "GRANT_STANDIN_PORT": str(port),
                "GRANT_STANDIN_TOKEN": "test-grant-token",
                "GRANT_STANDIN_ADMIN_TOKEN": ADMIN_TOKEN,
                **{f"GRANT_STANDIN_{name.upper()}": value for name, value in env.items()},
            }
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.grant_standin",
            cwd=REPO_ROOT,
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        standin = Standin(process, f"http://127.0.0.1:{port}")
        started.append(standin)
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{standin.url}/admin/faults", headers=ADMIN_AUTH) as r:
                        if r.status == 200:
                            return standin
                except aiohttp.ClientConnectionError:
                    pass
                assert process.returncode is None, "the stand-in exited during start-up"
                assert time.monotonic() < deadline, "the stand-in did not start"
                await asyncio.sleep(0.1)

    yield start
    for standin in started:
        if standin.process.returncode is None:
            standin.process.kill()
            await standin.process.communicate()


async def test_the_process_serves_claims_and_stops_on_sigterm(start_standin: Any) -> None:
    standin = await start_standin()
    body = claim_body(learner={"surname": "Processlogged"})
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{standin.url}/v1/claims", json=body, headers=key_headers(body["claim_id"])
        ) as response,
    ):
        assert response.status == 201

    returncode, logs = await standin.stop()

    assert returncode == 0
    events = [entry["event"] for entry in logs]
    assert events[0] == "server_started"
    assert {"claim_accepted", "request_handled"} <= set(events)
    assert events[-1] == "server_stopped"
    assert all(entry["service"] == "grant-standin" for entry in logs)
    assert "Processlogged" not in json.dumps(logs)


async def test_sigterm_during_a_slow_answer_stops_promptly_with_the_claim_stored(
    start_standin: Any, db: asyncpg.Connection
) -> None:
    standin = await start_standin(slow="1", slow_delay_s="30", shutdown_timeout_s="1")
    body = claim_body()
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(
            session.post(
                f"{standin.url}/v1/claims", json=body, headers=key_headers(body["claim_id"])
            )
        )
        for _ in range(200):
            if await db.fetchval("SELECT count(*) FROM claims") == 1:
                break
            await asyncio.sleep(0.05)
        started = time.monotonic()
        returncode, _ = await standin.stop()
        assert time.monotonic() - started < 10
        with pytest.raises(aiohttp.ClientError):
            await request
    assert returncode == 0
    assert await db.fetchval("SELECT claim_id FROM claims") == body["claim_id"]
