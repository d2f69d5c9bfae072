"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that it can work."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.upload_gateway.appkeys import RELAY, SETTINGS, database
from services.upload_gateway.relay import OutboxRelay


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database_ok(request: web.Request, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            async with database(request.app) as connection:
                await connection.fetchval("SELECT 1")
    except Exception:
        return False
    return True


async def _kafka_state(relay: OutboxRelay | None, timeout_s: float) -> str:
    if relay is None:
        # Without the relay this process never talks to Kafka, so Kafka is not its dependency.
        return "disabled"
    return "ok" if await relay.probe(timeout_s) else "unavailable"


async def readyz(request: web.Request) -> web.Response:
    timeout_s = request.app[SETTINGS].readiness_timeout_s
    database_ok, kafka_state = await asyncio.gather(
        _database_ok(request, timeout_s), _kafka_state(request.app.get(RELAY), timeout_s)
    )
    checks = {"database": "ok" if database_ok else "unavailable", "kafka": kafka_state}
    ready = database_ok and kafka_state != "unavailable"
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )
