"""The app factory: settings in, a ready `web.Application` out; resources live in cleanup_ctx."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.core.db import create_pool
from services.core.events import Topics
from services.core.storage import FolderStorage
from services.upload_gateway.appkeys import (
    METRICS,
    POOL,
    PUBLIC_ROUTES,
    RELAY,
    SETTINGS,
    STORAGE,
    TOPICS,
)
from services.upload_gateway.auth import auth_middleware
from services.upload_gateway.errors import error_middleware
from services.upload_gateway.metrics import GatewayMetrics, metrics_middleware
from services.upload_gateway.relay import OutboxRelay
from services.upload_gateway.routes import PUBLIC_ROUTE_NAMES, add_routes
from services.upload_gateway.settings import GatewaySettings

# Headroom over the file limit for a multipart envelope; the real limit is enforced while
# streaming, so aiohttp must neither buffer nor refuse the body before the handler sees it.
_BODY_HEADROOM_BYTES = 1024 * 1024


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].common.postgres
    app[POOL] = await create_pool(settings)
    yield
    await app[POOL].close()


async def _outbox_relay(app: web.Application) -> AsyncIterator[None]:
    if not app[SETTINGS].run_outbox_relay:
        yield
        return
    relay = OutboxRelay(app[POOL], app[SETTINGS].common.kafka)
    app[RELAY] = relay
    relay.start()
    yield
    await relay.close()


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(
        # Outermost first: metrics see the final status the error middleware produced.
        middlewares=[metrics_middleware, error_middleware, auth_middleware],
        client_max_size=settings.max_upload_bytes + _BODY_HEADROOM_BYTES,
    )
    app[SETTINGS] = settings
    app[STORAGE] = FolderStorage(settings.common.storage.root)
    app[TOPICS] = Topics(settings.common.kafka.topic_prefix)
    app[METRICS] = GatewayMetrics()
    app[PUBLIC_ROUTES] = PUBLIC_ROUTE_NAMES
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_outbox_relay)
    add_routes(app)
    return app
