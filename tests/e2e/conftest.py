"""The real services as processes, each pipeline isolated: its own databases, topic prefix,
ports and storage folder, so it never meets another test or a running `make up`."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.core.settings import KafkaSettings
from services.core.states import FINAL
from services.upload_gateway.keys import create_ato
from tests.service_env import service_env

REPO_ROOT = Path(__file__).resolve().parents[2]
FINAL_STATUSES = {state.value for state in FINAL}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Pipeline:
    # The pipeline's settings, given to every service it starts (with `PASSED_ON`, nothing else
    # of this process's environment: tests.service_env).
    env: dict[str, str]
    gateway_url: str
    standin_url: str
    database_url: str
    standin_database_url: str
    token: str
    admin_token: str
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    # The portal stand-in, where the ATO's people sign in to the pages (`portal=True`).
    portal_url: str | None = None

    def add(self, name: str, module: str, log_dir: Path, **extra_env: str) -> ServiceProcess:
        env = service_env({**self.env, **extra_env})
        service = ServiceProcess(name, module, env, log_dir / f"{name}.log")
        self.services[name] = service
        return service

    async def create_ato(self, name: str = "Demo Training Ltd") -> tuple[str, str]:
        connection = await asyncpg.connect(self.database_url)
        try:
            key = await create_ato(connection, name)
        finally:
            await connection.close()
        return key.ato_id, key.api_key

    async def upload(
        self, body: bytes, api_key: str, file_name: str = "achievements.csv", **params: str
    ) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{self.gateway_url}/v1/uploads",
                data=body,
                params={"file_name": file_name, "terms_accepted": "true", **params},
                headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/csv"},
            ) as response,
        ):
            assert response.status in (200, 202), await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def wait_final(
        self, upload_id: str, api_key: str, timeout_s: float = 120
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(
                    f"{self.gateway_url}/v1/uploads/{upload_id}",
                    headers={"Authorization": f"Bearer {api_key}"},
                ) as response:
                    upload: dict[str, Any] = await response.json()
                if upload.get("status") in FINAL_STATUSES:
                    return upload
                if time.monotonic() > deadline:
                    logs = "\n".join(s.log_tail() for s in self.services.values())
                    raise AssertionError(f"upload not final in time: {upload}\n{logs}")
                await asyncio.sleep(0.2)

    async def standin_claims(self, upload_id: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.standin_url}/v1/claims",
                params={"upload_id": upload_id},
                headers={"Authorization": f"Bearer {self.token}"},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            claims: list[dict[str, Any]] = (await response.json())["claims"]
            return claims


async def wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing answered on port {port}")


@pytest.fixture
async def make_pipeline(
    database_url: str,
    make_database: Callable[[str], Any],
    kafka_settings: KafkaSettings,
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Any]]:
    """Starts gateway, two validators, a bridge and the grant stand-in (and with `portal=True`
    the portal stand-in, whose keys the gateway reads); `**env` configures them."""
    started: list[Pipeline] = []

    async def start(
        bridges: int = 1, validators: int = 2, portal: bool = False, **extra_env: str
    ) -> Pipeline:
        standin_database_url = await make_database("services.grant_standin.migrations")
        gateway_port, standin_port, portal_port = free_port(), free_port(), free_port()
        portal_url = f"http://127.0.0.1:{portal_port}"
        portal_env = {
            "PORTAL_STANDIN_PORT": str(portal_port),
            "PORTAL_STANDIN_ISSUER": portal_url,
            "PORTAL_STANDIN_HAND_OFF_URL": f"http://127.0.0.1:{gateway_port}/ato/sign-in/portal",
            "GATEWAY_PORTAL_JWKS_URL": f"{portal_url}/.well-known/jwks.json",
            "GATEWAY_PORTAL_ISSUER": portal_url,
            "GATEWAY_PORTAL_SIGN_IN_URL": f"{portal_url}/sign-in",
        }
        token = "e2e-grant-token"
        admin_token = "e2e-standin-admin-token"
        env = {
            "DEPLOYMENT_MODE": "local",
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
            "STORAGE_ROOT": str(tmp_path / "storage"),
            "GATEWAY_PORT": str(gateway_port),
            "GRANT_STANDIN_PORT": str(standin_port),
            "GRANT_STANDIN_DATABASE_URL": standin_database_url,
            "GRANT_STANDIN_TOKEN": token,
            "GRANT_STANDIN_ADMIN_TOKEN": admin_token,
            "GRANT_BRIDGE_TOKEN": token,
            "GRANT_BRIDGE_GRANT_API_URL": f"http://127.0.0.1:{standin_port}",
            "LOG_LEVEL": "INFO",
            **(portal_env if portal else {}),
            **extra_env,
        }
        pipeline = Pipeline(
            env=env,
            gateway_url=f"http://127.0.0.1:{gateway_port}",
            standin_url=f"http://127.0.0.1:{standin_port}",
            database_url=database_url,
            standin_database_url=standin_database_url,
            token=token,
            admin_token=admin_token,
            portal_url=portal_url if portal else None,
        )
        pipeline.add("grant-standin", "services.grant_standin", tmp_path).start()
        if portal:
            pipeline.add("portal-standin", "services.portal_standin", tmp_path).start()
        pipeline.add("gateway", "services.upload_gateway", tmp_path).start()
        for n in range(1, validators + 1):
            pipeline.add(
                f"validator-{n}",
                "services.validator",
                tmp_path,
                VALIDATOR_WORKER_NAME=f"validator-{n}",
            ).start()
        for n in range(1, bridges + 1):
            pipeline.add(f"bridge-{n}", "services.grant_bridge", tmp_path).start()
        started.append(pipeline)
        await wait_for_port(standin_port)
        if portal:
            await wait_for_port(portal_port)
        await wait_for_port(gateway_port)
        return pipeline

    yield start
    for pipeline in started:
        for service in pipeline.services.values():
            service.stop()
