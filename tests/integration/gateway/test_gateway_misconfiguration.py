"""With PostgreSQL and storage fine, a Kafka setting the brokers refuse for good (a certificate
from a CA the gateway does not trust) still takes the gateway out of service: readiness is 503
and names the setting, so a rolling update with it stops at its first pod. Uploads already
taken wait in the outbox, as during an outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import asyncpg
import pytest
from gateway_helpers import ClientFactory, gateway_settings_for

from services.core.settings import DeploymentMode, KafkaSettings
from services.upload_gateway.app import create_app
from services.upload_gateway.appkeys import RELAY
from services.upload_gateway.relay import OutboxRelay
from tests.tls_server import Certificates, needs_openssl, tls_server

pytestmark = [pytest.mark.stack, needs_openssl]

NEVER_S = 20.0


@pytest.fixture
async def refused_kafka(certificates: Certificates) -> AsyncIterator[KafkaSettings]:
    async with tls_server(certificates) as port:
        yield KafkaSettings(
            bootstrap_servers=f"localhost:{port}",
            security_protocol="SSL",
            ssl_ca_file=certificates.other_ca_file,
            deployment_mode=DeploymentMode.LOCAL,
        )


async def test_a_kafka_certificate_the_gateway_cannot_verify_makes_it_not_ready(
    make_client: ClientFactory,
    database_url: str,
    storage_root: Path,
    refused_kafka: KafkaSettings,
) -> None:
    app = create_app(gateway_settings_for(database_url, storage_root))
    relay = OutboxRelay(cast(asyncpg.Pool, None), refused_kafka)
    await asyncio.wait_for(relay.run(), NEVER_S)  # stops at its first connection: no pool used
    app[RELAY] = relay
    client = await make_client(app)

    response = await client.get("/readyz")
    body = await response.json()

    assert response.status == 503
    assert body["checks"] == {"database": "ok", "storage": "ok", "kafka": "misconfigured"}
    assert list(body["misconfigured"]) == ["kafka"]
    assert body["misconfigured"]["kafka"].startswith(
        "KAFKA_SSL_CA_FILE: the server's TLS certificate did not verify"
    )
