"""Fixtures for the gateway's integration tests: the app on a fresh database and ATOs with keys;
for the ATO's pages, an injected clock, browsers that keep cookies, and the portal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from gateway_helpers import Client, ClientFactory, gateway_settings_for
from page_helpers import (
    AUDIENCE,
    ISSUER,
    FakeClock,
    MakeBrowser,
    Portal,
    browser_jar,
    free_port,
)

from services.upload_gateway.app import create_app
from services.upload_gateway.keys import NewKey, create_ato
from services.upload_gateway.pages.site import PAGES_CLOCK
from services.upload_gateway.portal_settings import PortalSettings
from tests.gateway_server import start_gateway


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
async def make_client(database_url: str, storage_root: Path) -> AsyncIterator[ClientFactory]:
    """Starts the gateway app (relay off unless asked) on a free port; closes it afterwards."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(
        app: web.Application | None = None, **overrides: Any
    ) -> TestClient[web.Request, web.Application]:
        if app is None:
            app = create_app(gateway_settings_for(database_url, storage_root, **overrides))
        client = await start_gateway(app)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[web.Request, web.Application]:
    return await make_client()


@pytest.fixture
async def ato(pool: asyncpg.Pool) -> NewKey:
    async with pool.acquire() as connection:
        return await create_ato(connection, "Training Co")


@pytest.fixture
async def other_ato(pool: asyncpg.Pool) -> NewKey:
    async with pool.acquire() as connection:
        return await create_ato(connection, "Another Co", "valid_rows")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def browser(database_url: str, storage_root: Path, clock: FakeClock) -> AsyncIterator[Client]:
    """The gateway with an injected clock, and a client whose cookie jar behaves as a browser's
    on a secure origin. The pages' API-key sign-in is turned on (as for an ATO without the
    portal): these tests sign in with a key; the portal's sign-in has `make_browser`."""
    app = create_app(gateway_settings_for(database_url, storage_root, pages_api_key_sign_in=True))
    app[PAGES_CLOCK] = clock
    port = free_port()
    client: Client = TestClient(
        TestServer(app, host="127.0.0.1", port=port), cookie_jar=browser_jar(port)
    )
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def portal() -> AsyncIterator[tuple[Portal, str]]:
    """The portal, and the URL of its JWKS."""
    found = Portal()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", found.serve_jwks)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield found, str(server.make_url("/.well-known/jwks.json"))
    await server.close()


@pytest.fixture
async def make_browser(
    database_url: str, storage_root: Path, clock: FakeClock, portal: tuple[Portal, str]
) -> AsyncIterator[MakeBrowser]:
    """Browsers on one gateway whose pages take the portal's hand-off (API-key sign-in off,
    as by default)."""
    _, jwks_url = portal
    settings = gateway_settings_for(
        database_url,
        storage_root,
        portal=PortalSettings(
            jwks_url=jwks_url,
            issuer=ISSUER,
            audience=AUDIENCE,
            sign_in_url="http://127.0.0.1/portal/sign-in",
            # An unknown key id reads the keys again at once (rotation, tried in the sign-in tests).
            jwks_refetch_min_interval_s=0,
            deployment_mode="local",
        ),
    )
    app = create_app(settings)
    app[PAGES_CLOCK] = clock
    port = free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    clients: list[Client] = []

    async def make() -> Client:
        client: Client = TestClient(server, cookie_jar=browser_jar(port))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
    await server.close()
