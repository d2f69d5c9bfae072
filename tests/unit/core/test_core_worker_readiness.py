"""A worker's `/readyz` names the setting a dependency refused, and is 503 for it."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from services.core.misconfiguration import ConfigurationError
from services.core.worker_http import create_app


async def _refused() -> bool:
    raise ConfigurationError("DATABASE_URL", "PostgreSQL refused the login (InvalidPasswordError)")


async def _ok() -> bool:
    return True


async def test_a_refused_setting_is_not_ready_and_named() -> None:
    app = create_app({"postgres": _refused, "kafka": _ok}, [])
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz")
        body = await response.json()

    assert response.status == 503
    assert body == {
        "status": "not_ready",
        "checks": {"postgres": False, "kafka": True},
        "misconfigured": {
            "postgres": "DATABASE_URL: PostgreSQL refused the login (InvalidPasswordError)"
        },
    }


async def test_passing_checks_are_ready_without_a_misconfigured_entry() -> None:
    app = create_app({"postgres": _ok, "kafka": _ok}, [])
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/readyz")
        body = await response.json()

    assert response.status == 200
    assert body == {"status": "ready", "checks": {"postgres": True, "kafka": True}}
