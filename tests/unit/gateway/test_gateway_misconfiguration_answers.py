"""The gateway meets a setting refused for good (a certificate that does not verify): it keeps
answering, says which setting in `/readyz` (503: it never heals by itself), answers requests as
an outage (503, as before), and its outbox relay stops retrying. Real clients, a real TLS
server; no PostgreSQL or Kafka needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from services.core.settings import (
    CommonSettings,
    DeploymentMode,
    KafkaSettings,
    PostgresSettings,
    StorageSettings,
)
from services.upload_gateway.app import create_app
from services.upload_gateway.appkeys import RELAY
from services.upload_gateway.relay import OutboxRelay
from services.upload_gateway.settings import GatewaySettings
from tests.tls_server import Certificates, needs_openssl, tls_server

pytestmark = needs_openssl

# Bounds a wait that, were the refusal taken for an outage, would last for ever.
NEVER_S = 20.0


@pytest.fixture
async def postgres_port(certificates: Certificates) -> AsyncIterator[int]:
    async with tls_server(certificates, postgres=True) as port:
        yield port


@pytest.fixture
async def kafka_port(certificates: Certificates) -> AsyncIterator[int]:
    async with tls_server(certificates) as port:
        yield port


def _settings(postgres_port: int, ca_file: Path, storage_root: Path) -> GatewaySettings:
    database_url = (
        f"postgresql://achievements:secret@localhost:{postgres_port}/achievements"
        f"?sslmode=verify-full&sslrootcert={ca_file}"
    )
    common = CommonSettings(
        postgres=PostgresSettings(
            database_url=SecretStr(database_url), deployment_mode=DeploymentMode.LOCAL
        ),
        storage=StorageSettings(root=storage_root),
        kafka=KafkaSettings(deployment_mode=DeploymentMode.LOCAL),
    )
    return GatewaySettings(run_outbox_relay=False, min_free_disk_bytes=0, common=common)


def _refused_kafka(port: int, certificates: Certificates) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=f"localhost:{port}",
        security_protocol="SSL",
        ssl_ca_file=certificates.other_ca_file,
        deployment_mode=DeploymentMode.LOCAL,
    )


async def _stopped_relay(settings: KafkaSettings) -> OutboxRelay:
    # The pool is never reached: the relay stops at its first connection to Kafka.
    relay = OutboxRelay(cast(asyncpg.Pool, None), settings)
    await asyncio.wait_for(relay.run(), NEVER_S)
    return relay


async def _get(app: web.Application, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with TestClient(TestServer(app)) as client:
        response = await client.get(path, **kwargs)
        return response.status, await response.json()


async def test_the_relay_stops_on_a_kafka_certificate_it_cannot_verify_and_says_why(
    kafka_port: int, certificates: Certificates
) -> None:
    relay = await _stopped_relay(_refused_kafka(kafka_port, certificates))

    assert relay.problem is not None
    assert relay.problem.setting == "KAFKA_SSL_CA_FILE"
    assert relay.kafka_state(timeout_s=1.0) == "misconfigured"


async def test_readiness_names_a_database_url_whose_certificate_does_not_verify(
    postgres_port: int, certificates: Certificates, tmp_path: Path
) -> None:
    app = create_app(_settings(postgres_port, certificates.other_ca_file, tmp_path))

    status, body = await _get(app, "/readyz")

    assert status == 503
    assert body["status"] == "not_ready"
    assert body["checks"] == {"database": "misconfigured", "storage": "ok", "kafka": "disabled"}
    assert list(body["misconfigured"]) == ["database"]
    assert body["misconfigured"]["database"].startswith(
        "DATABASE_URL: the server's TLS certificate did not verify"
    )


async def test_a_request_while_the_database_url_is_refused_is_answered_as_an_outage(
    postgres_port: int, certificates: Certificates, tmp_path: Path
) -> None:
    app = create_app(_settings(postgres_port, certificates.other_ca_file, tmp_path))

    status, body = await _get(app, "/v1/uploads", headers={"Authorization": "Bearer ak_some"})

    assert (status, body) == (
        503,
        {
            "code": "SERVICE_UNAVAILABLE",
            "message": "The service is temporarily unavailable; retry later.",
        },
    )


async def test_readiness_names_the_kafka_setting_the_relay_stopped_for(
    postgres_port: int, kafka_port: int, certificates: Certificates, tmp_path: Path
) -> None:
    app = create_app(_settings(postgres_port, certificates.other_ca_file, tmp_path))
    app[RELAY] = await _stopped_relay(_refused_kafka(kafka_port, certificates))

    status, body = await _get(app, "/readyz")

    assert status == 503
    assert body["checks"]["kafka"] == "misconfigured"
    assert body["misconfigured"]["kafka"].startswith("KAFKA_SSL_CA_FILE: ")
