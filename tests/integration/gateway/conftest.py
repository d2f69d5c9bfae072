"""Fixtures for the gateway's integration tests: the app on a fresh database and ATOs with keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from gateway_helpers import ClientFactory, gateway_settings_for

from services.upload_gateway.app import create_app
from services.upload_gateway.keys import NewKey, create_ato
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
