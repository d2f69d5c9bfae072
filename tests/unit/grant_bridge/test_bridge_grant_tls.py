"""An https grant API whose certificate this process cannot verify is a setting to correct, not
an outage to wait out: the client raises `ConfigurationError` naming the grant URL, where a lost
connection stays `Transient`. A real aiohttp client against a real TLS server."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import aiohttp
import pytest

from services.core.misconfiguration import ConfigurationError
from services.grant_bridge.grant_client import GrantClient, Transient
from tests.tls_server import Certificates, needs_openssl, tls_server
from tests.unit.grant_bridge.test_bridge_own_claim import claim_data


def _session(ca_file: Path) -> aiohttp.ClientSession:
    # What SSL_CERT_FILE gives the bridge's default context: these CAs, and only these.
    trusted = ssl.create_default_context(cafile=str(ca_file))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted))


@needs_openssl
async def test_a_grant_api_certificate_from_another_ca_names_the_grant_url(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates) as port, _session(certificates.other_ca_file) as session:
        client = GrantClient(session, f"https://localhost:{port}")
        with pytest.raises(ConfigurationError) as raised:
            await client.submit(claim_data())

    assert raised.value.setting == "GRANT_BRIDGE_GRANT_API_URL"
    assert "certificate did not verify" in raised.value.reason


@needs_openssl
async def test_a_batch_to_a_grant_api_with_an_unverified_certificate_is_not_retried(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates) as port, _session(certificates.other_ca_file) as session:
        client = GrantClient(session, f"https://localhost:{port}")
        with pytest.raises(ConfigurationError):
            await client.submit_batch([claim_data(), claim_data(uuid.uuid4())])


@needs_openssl
async def test_a_trusted_grant_api_that_drops_the_connection_is_transient(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates) as port, _session(certificates.ca_file) as session:
        client = GrantClient(session, f"https://localhost:{port}")
        result = await client.submit(claim_data())

    assert result == Transient("CONNECTION_ERROR")
