"""Every `web.AppKey` / `web.RequestKey` the gateway uses, declared in one place, and the one
way a handler gets a database connection (`database`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from services.core.db import connection
from services.core.events import Topics
from services.core.storage import Storage

if TYPE_CHECKING:
    from services.upload_gateway.auth import KeyUse, Principal
    from services.upload_gateway.limits import UploadSlots
    from services.upload_gateway.metrics import GatewayMetrics
    from services.upload_gateway.relay import OutboxRelay
    from services.upload_gateway.settings import GatewaySettings

SETTINGS: web.AppKey[GatewaySettings] = web.AppKey("settings")
POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool")
STORAGE: web.AppKey[Storage] = web.AppKey("storage")
TOPICS: web.AppKey[Topics] = web.AppKey("topics")
METRICS: web.AppKey[GatewayMetrics] = web.AppKey("metrics")
# Uploads in flight per ATO in this process.
UPLOAD_SLOTS: web.AppKey[UploadSlots] = web.AppKey("upload_slots")
# Absent when the relay is turned off (GATEWAY_RUN_OUTBOX_RELAY=false).
RELAY: web.AppKey[OutboxRelay] = web.AppKey("relay")
# Route names that need no API key (health, metrics, the scheme, the documents).
PUBLIC_ROUTES: web.AppKey[frozenset[str]] = web.AppKey("public_routes")
# When this process last put each API key's use in the audit trail.
KEY_USE: web.AppKey[KeyUse] = web.AppKey("key_use")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


def database(app: web.Application) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A pooled connection, waited for at most the configured `db_acquire_timeout_s`."""
    return connection(app[POOL], app[SETTINGS].common.postgres)
