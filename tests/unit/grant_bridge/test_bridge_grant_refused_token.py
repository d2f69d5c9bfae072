"""A grant API that refuses the bridge's token (401, or 403) refuses every claim: the client
raises `ConfigurationError` naming GRANT_BRIDGE_TOKEN rather than retrying it for ever. A 5xx
stays transient."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.core.misconfiguration import ConfigurationError
from services.grant_bridge.grant_client import GrantClient, Transient
from tests.unit.grant_bridge.test_bridge_own_claim import claim_data


@pytest.fixture
async def answering() -> AsyncIterator[tuple[list[int], GrantClient]]:
    """A grant API answering every request with the status in the list's first item."""
    statuses = [401]

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"code": "UNAUTHORIZED"}, status=statuses[0])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield statuses, GrantClient(session, str(server.make_url("/")))
    finally:
        await server.close()


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_token_names_the_token_setting(
    answering: tuple[list[int], GrantClient], status: int
) -> None:
    statuses, client = answering
    statuses[0] = status

    with pytest.raises(ConfigurationError) as single:
        await client.submit(claim_data())
    with pytest.raises(ConfigurationError) as batch:
        await client.submit_batch([claim_data(), claim_data(uuid.uuid4())])

    assert single.value.setting == batch.value.setting == "GRANT_BRIDGE_TOKEN"
    assert single.value.reason == f"the grant API refused the token (HTTP {status})"


async def test_a_server_error_is_still_transient(
    answering: tuple[list[int], GrantClient],
) -> None:
    statuses, client = answering
    statuses[0] = 503

    assert await client.submit(claim_data()) == Transient("HTTP_503")
