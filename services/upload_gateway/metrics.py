"""Prometheus metrics, one registry per app: requests by route template, bytes, outbox backlog;
`/metrics` also serves the process's shared registry (services/core/metrics.py: outbox relay,
pool waits, process figures).

Labels are route templates, methods, statuses and codes only: never an id or a file name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.logging import get_logger
from services.core.metrics import (
    CONTENT_TYPE,
    STORAGE_FREE,
    STORAGE_SIZE,
    exposition,
    set_pool_gauges,
)
from services.core.outbox import measure_backlog
from services.upload_gateway.appkeys import METRICS, POOL, STORAGE, database

log = get_logger()
_BACKLOG_READ_TIMEOUT_S = 2.0


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.upload_bytes = Counter(
            "gateway_upload_bytes",
            "Bytes of uploads accepted and stored.",
            registry=self.registry,
        )
        self.uploads = Counter(
            "gateway_uploads",
            "Upload requests by outcome: created, replayed, or the refusal code.",
            ["outcome"],
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "gateway_outbox_backlog_events",
            "Outbox events not yet relayed to Kafka, counted at scrape time.",
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            "gateway_outbox_oldest_unsent_age_seconds",
            "Age of the oldest outbox event not yet relayed, counted at scrape time.",
            registry=self.registry,
        )


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    # Unknown paths share one label, so a scanner cannot create a series per path.
    return resource.canonical if resource is not None else "unmatched"


CLIENT_CLOSED_REQUEST = 499


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        # The client went away and the handler was cancelled (after a streamed report's last
        # byte, too): not a server error. nginx's code for a request the client closed.
        status = CLIENT_CLOSED_REQUEST
        raise
    finally:
        route = route_label(request)
        elapsed_s = time.perf_counter() - started
        metrics.requests.labels(route, request.method, str(status)).inc()
        metrics.request_duration.labels(route, request.method).observe(elapsed_s)
        log.info(
            "request_answered",
            route=route,
            method=request.method,
            status=status,
            duration_ms=round(elapsed_s * 1000, 1),
        )


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    try:
        # A scrape must not wait as long as a request would for a busy pool.
        async with asyncio.timeout(_BACKLOG_READ_TIMEOUT_S), database(request.app) as connection:
            backlog, oldest_s = await measure_backlog(connection)
        metrics.outbox_backlog.set(backlog)
        metrics.outbox_oldest_age.set(oldest_s)
    except Exception as error:
        # Metrics must still answer while the database is down; the gauges keep their last value.
        log.warning("outbox_backlog_unreadable", error=type(error).__name__)
    storage = request.app.get(STORAGE)
    if storage is not None:
        with contextlib.suppress(OSError):
            capacity = await storage.capacity()  # None for a bucket: no gauges then
            if capacity is not None:
                STORAGE_FREE.set(capacity.free_bytes)
                STORAGE_SIZE.set(capacity.total_bytes)
    pool = request.app.get(POOL)
    if pool is not None:
        set_pool_gauges(pool.get_size(), pool.get_idle_size(), pool.get_max_size())
    return web.Response(body=exposition(metrics.registry), headers={"Content-Type": CONTENT_TYPE})
