"""The app factory: settings in, a ready `web.Application` out; resources live in cleanup_ctx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from services.core.db import create_pool
from services.core.events import Topics
from services.core.storage import Storage, open_storage
from services.upload_gateway import pages
from services.upload_gateway.appkeys import (
    KEY_USE,
    METRICS,
    POOL,
    PUBLIC_ROUTES,
    RELAY,
    SETTINGS,
    STORAGE,
    TOPICS,
    UPLOAD_SLOTS,
)
from services.upload_gateway.auth import KeyUse, auth_middleware
from services.upload_gateway.bodies import body_guard_middleware
from services.upload_gateway.errors import error_middleware
from services.upload_gateway.limits import UploadSlots
from services.upload_gateway.metrics import GatewayMetrics, metrics_middleware
from services.upload_gateway.relay import OutboxRelay
from services.upload_gateway.routes import PUBLIC_ROUTE_NAMES, add_routes
from services.upload_gateway.settings import GatewaySettings


def runner_options(settings: GatewaySettings) -> dict[str, Any]:
    """What `web.AppRunner` is given besides the app: the connection-level timeouts."""
    return {
        "handle_signals": False,
        "shutdown_timeout": settings.shutdown_timeout_s,
        "keepalive_timeout": settings.keepalive_timeout_s,
        "access_log": None,  # the metrics middleware logs every request as JSON
        # Bodies are taken as sent: a coded body is refused with 415 before it is read (see
        # `bodies.refuse_content_coding`). Decoded by aiohttp, a body that does not decode
        # broke the connection itself: the error came back while aiohttp drained the rest of a
        # refused body after the answer, and the connection was reset under the client.
        "auto_decompress": False,
    }


async def _database(app: web.Application) -> AsyncIterator[None]:
    # Connections are opened on first use: the gateway starts (and answers /healthz, and
    # /readyz with 503) while PostgreSQL is still down, and every request retries it.
    settings = app[SETTINGS].common.postgres
    app[POOL] = await create_pool(settings, connect=False)
    yield
    await app[POOL].close()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    # The folder is created and its volume remembered; an outage is only logged (readiness
    # reports it). `python -m services.upload_gateway` has checked the settings before this.
    storage = app[STORAGE]
    await storage.start()
    yield
    await storage.close()


async def _outbox_relay(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].run_outbox_relay:
        yield
        return
    relay = OutboxRelay(app[POOL], app[SETTINGS].common.kafka)
    app[RELAY] = relay
    relay.start()
    yield
    await relay.close()


def create_app(settings: GatewaySettings, storage: Storage | None = None) -> web.Application:
    app = web.Application(
        # Outermost first: metrics see the final status the error middleware produced.
        # The body guard runs after authentication: no body is read for an unknown caller.
        middlewares=[metrics_middleware, error_middleware, auth_middleware, body_guard_middleware],
        # Only for a body read whole (request.read/json/post); the upload streams its body
        # through its own limits, so this is the JSON limit.
        client_max_size=settings.max_json_body_bytes,
    )
    app[SETTINGS] = settings
    app[STORAGE] = storage or open_storage(settings.common.storage)
    app[TOPICS] = Topics(settings.common.kafka.topic_prefix)
    app[METRICS] = GatewayMetrics()
    app[UPLOAD_SLOTS] = UploadSlots(
        settings.max_concurrent_uploads_per_ato, settings.upload_retry_after_s
    )
    app[PUBLIC_ROUTES] = PUBLIC_ROUTE_NAMES
    app[KEY_USE] = KeyUse()
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_outbox_relay)
    add_routes(app)
    pages.setup(app)  # the ATO's own pages: a router of their own, not in the API's
    return app
