"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that it can take uploads.

An upload needs PostgreSQL (its row and the outbox) and the storage, nothing else: the relay
publishes the outbox to Kafka later, so Kafka being away is reported but never takes the
gateway out of service. A setting a dependency refused for good (a certificate that does not
verify, a login or an ACL refused: `ConfigurationError`) does: it never heals by itself, so the
check says "misconfigured", `misconfigured` names the setting, and a rolling update with the
wrong setting stops at its first pod instead of replacing every working one.

The storage check is the backend's own probe, storing as an upload would: a folder
that exists on the volume found at start and takes a probe file, or a bucket that takes (and
gives up) a probe object.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.core.logging import get_logger
from services.core.misconfiguration import ConfigurationError
from services.upload_gateway.appkeys import RELAY, SETTINGS, STORAGE, database

log = get_logger()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _database_state(request: web.Request, timeout_s: float) -> str | ConfigurationError:
    """ "ok", "unavailable", or the setting PostgreSQL refused."""
    try:
        async with asyncio.timeout(timeout_s):
            async with database(request.app) as connection:
                await connection.fetchval("SELECT 1")
    except ConfigurationError as problem:
        return problem
    except Exception:
        return "unavailable"
    return "ok"


async def _storage_ok(request: web.Request, timeout_s: float) -> bool:
    return await request.app[STORAGE].ready(timeout_s)


async def readyz(request: web.Request) -> web.Response:
    """200 when an upload can be taken (PostgreSQL and storage), else 503. `kafka` is shown
    for operators only: while it is down uploads wait in the outbox, which is relayed later."""
    timeout_s = request.app[SETTINGS].readiness_timeout_s
    database_state, storage_ok = await asyncio.gather(
        _database_state(request, timeout_s), _storage_ok(request, timeout_s)
    )
    relay = request.app.get(RELAY)
    # Without the relay this process never talks to Kafka.
    kafka_state = "disabled" if relay is None else relay.kafka_state(timeout_s)
    misconfigured: dict[str, str] = {}
    if isinstance(database_state, ConfigurationError):
        misconfigured["database"] = str(database_state)
        database_state = "misconfigured"
    if relay is not None and relay.problem is not None:
        misconfigured["kafka"] = str(relay.problem)
    checks = {
        "database": database_state,
        "storage": "ok" if storage_ok else "unavailable",
        "kafka": kafka_state,
    }
    ready = database_state == "ok" and storage_ok and not misconfigured
    body: dict[str, object] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if misconfigured:
        body["misconfigured"] = misconfigured
    return web.json_response(body, status=200 if ready else 503)
