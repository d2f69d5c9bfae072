"""A grant stand-in per test: its own fresh database and an aiohttp test server on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from standin_helpers import ADMIN_TOKEN, MIGRATIONS, TOKEN

from services.core.settings import DeploymentMode
from services.grant_standin.app import create_app
from services.grant_standin.settings import Settings


@pytest.fixture
async def standin_database_url(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database(MIGRATIONS)


@pytest.fixture
def settings(standin_database_url: str) -> Settings:
    return Settings(
        database_url=standin_database_url,
        port=0,
        token=TOKEN,
        admin_token=ADMIN_TOKEN,
        seed=1,
        slow_delay_s=0.5,
        db_pool_max_size=5,
        deployment_mode=DeploymentMode.LOCAL,
    )


StartClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[StartClient]:
    """Starts stand-ins with these settings (changed by keyword arguments); closes them after."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**changes: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(
            TestServer(create_app(settings.model_copy(update=changes)), port=0)
        )
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: StartClient) -> TestClient[Any, Any]:
    return await make_client()


@pytest.fixture
async def db(standin_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the stand-in's database, to check what it stored."""
    connection = await asyncpg.connect(standin_database_url)
    yield connection
    await connection.close()
