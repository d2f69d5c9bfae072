"""A grant stand-in per test (its own database, served in process on a free port)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from bridge_helpers import STANDIN_MIGRATIONS, Standin, serve_standin


@pytest.fixture
async def standin_database_url(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database(STANDIN_MIGRATIONS)


@pytest.fixture
async def standin(standin_database_url: str) -> AsyncIterator[Standin]:
    async with serve_standin(standin_database_url, db_pool_max_size=10) as served:
        yield served
