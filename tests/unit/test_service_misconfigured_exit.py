"""A worker whose Kafka certificate cannot be verified stops at start with one line naming the
setting and exit status 2, as invalid settings do, instead of waiting for ever for brokers it
takes to be away. Each service runs as a process, with an environment built here, against a
real TLS server whose certificate comes from a CA the service does not trust."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.service_env import service_env
from tests.tls_server import Certificates, needs_openssl, tls_server

# Starting Python and the service's imports: seconds, not milliseconds.
pytestmark = [pytest.mark.slow, needs_openssl]

REPO_ROOT = Path(__file__).resolve().parents[2]
# A process still running after this took the refusal for an outage: a failure, not a wait.
PROCESS_LIMIT_S = 60


async def _run(module: str, settings: dict[str, str]) -> tuple[int | None, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=REPO_ROOT,
        env=service_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), PROCESS_LIMIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, stderr.decode().splitlines()


@pytest.mark.parametrize(
    ("module", "process"),
    [("services.validator", "validator"), ("services.grant_bridge", "bridge")],
)
async def test_a_worker_refused_by_the_brokers_certificate_exits_2_naming_the_setting(
    module: str, process: str, certificates: Certificates, tmp_path: Path
) -> None:
    async with tls_server(certificates) as port:
        status, stderr = await _run(
            module,
            {
                "DEPLOYMENT_MODE": "local",
                "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}",
                "KAFKA_SECURITY_PROTOCOL": "SSL",
                "KAFKA_SSL_CA_FILE": str(certificates.other_ca_file),
                "STORAGE_ROOT": str(tmp_path / "storage"),
                "LOG_FORMAT": "json",
            },
        )

    assert status == 2
    assert stderr[-1].startswith(
        f"{process}: configuration refused by a dependency: KAFKA_SSL_CA_FILE: the server's TLS"
        " certificate did not verify"
    )
