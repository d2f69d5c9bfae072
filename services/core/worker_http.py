"""The small HTTP server of a worker process (validator, grant bridge): `/metrics`, `/healthz`
and `/readyz` on a port of its own (`VALIDATOR_HTTP_PORT`, `GRANT_BRIDGE_HTTP_PORT`).

- `/healthz`: the process's event loop answers. Used as the liveness probe: a failing one means
  restart the process.
- `/readyz`: 200 when every check passes (PostgreSQL answers `SELECT 1`; every Kafka consumer
  loop of the process has joined its group), else 503, with each check's result as JSON; a
  check refused because of a setting (`ConfigurationError`) is also named under
  `misconfigured`, with the setting (the process stops for it too, but a probe may come first).
- `/metrics`: the process's registry (services/core/metrics.py) in the Prometheus text format;
  gauges read from the database are brought up to date first, within a short bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import asyncpg
from aiohttp import web

from services.core.consumer import consumers_ready
from services.core.logging import get_logger
from services.core.metrics import CONTENT_TYPE, exposition, set_pool_gauges
from services.core.misconfiguration import ConfigurationError

log = get_logger()

# A probe or a scrape must not wait as long as work would for a busy pool.
CHECK_TIMEOUT_S: Final = 2.0
# Probes come from the cluster (the kubelet, Prometheus) over the pod's address.
BIND_HOST: Final = "0.0.0.0"  # noqa: S104 (a container's port, reached through its pod address)

Check = Callable[[], Awaitable[bool]]
Refresh = Callable[[], Awaitable[None]]


def postgres_check(pool: asyncpg.Pool) -> Check:
    async def check() -> bool:
        async with pool.acquire(timeout=CHECK_TIMEOUT_S) as connection:
            return bool(await connection.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S) == 1)

    return check


async def kafka_consumers_check() -> bool:
    return consumers_ready()


def pool_refresh(pool: asyncpg.Pool) -> Refresh:
    async def refresh() -> None:
        set_pool_gauges(pool.get_size(), pool.get_idle_size(), pool.get_max_size())

    return refresh


async def _run_check(check: Check) -> bool | ConfigurationError:
    """The check's answer; a setting a dependency refused, as the `ConfigurationError`."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check()
    except ConfigurationError as problem:
        log.warning("readiness_check_misconfigured", setting=problem.setting)
        return problem
    except Exception as error:
        log.info("readiness_check_failed", error=type(error).__name__)
        return False


def create_app(checks: Mapping[str, Check], refreshes: list[Refresh]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        names = list(checks)
        results = await asyncio.gather(*(_run_check(checks[name]) for name in names))
        outcome = {name: result is True for name, result in zip(names, results, strict=True)}
        ready = all(outcome.values())
        body: dict[str, object] = {"status": "ready" if ready else "not_ready", "checks": outcome}
        misconfigured = {
            name: str(result)
            for name, result in zip(names, results, strict=True)
            if isinstance(result, ConfigurationError)
        }
        if misconfigured:
            body["misconfigured"] = misconfigured
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        for refresh in refreshes:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await refresh()
            except Exception as error:
                # The scrape still answers; the gauges keep their last value.
                log.warning("metrics_refresh_failed", error=type(error).__name__)
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


class WorkerHttp:
    """Started with the worker, stopped last, so probes answer through the drain."""

    def __init__(
        self,
        port: int,
        *,
        checks: Mapping[str, Check],
        refreshes: list[Refresh] | None = None,
        host: str = BIND_HOST,
    ) -> None:
        self._port = port
        self._host = host
        self._app = create_app(checks, refreshes or [])
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("worker_http_started", port=self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
