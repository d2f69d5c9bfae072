"""Who is calling: `Authorization: Bearer <key>` resolved to the key's ATO on every request."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from services.core import audit
from services.core.audit import AuditKind
from services.core.people import Person
from services.upload_gateway.appkeys import KEY_USE, PRINCIPAL, PUBLIC_ROUTES, database
from services.upload_gateway.errors import ApiError
from services.upload_gateway.keys import owner_of_key


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "UNAUTHORIZED",
        "A valid API key is required: send it as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": 'Bearer realm="achievements"'},
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """The ATO a request acts for; every query is scoped to `ato_id`."""

    ato_id: str
    default_policy: str
    # Who acts, as the audit trail names them: the API key it signed in with, or (the pages
    # signed in through the portal) no key and the person.
    key_id: uuid.UUID | None
    person: Person | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class KeyUse:
    """When this process last recorded each key's use: the trail holds a key's use at most once
    per `interval_s` per process (a portal polling an upload's status would otherwise write a
    row per request), which still dates every key's use to the hour."""

    interval_s: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _recorded: dict[uuid.UUID, float] = field(default_factory=dict)

    def due(self, key_id: uuid.UUID) -> bool:
        now = self.clock()
        last = self._recorded.get(key_id)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._recorded) > 100_000:  # keys come and go; a full map starts again
            self._recorded.clear()
        self._recorded[key_id] = now
        return True


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > 512:
        return None
    return key


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match_info = request.match_info
    # Unknown routes and wrong methods answer 404/405 whoever asks; public routes need no key.
    if match_info.http_exception is not None or match_info.route.name in request.app[PUBLIC_ROUTES]:
        return await handler(request)
    key = bearer_key(request.headers.get("Authorization"))
    if key is None:
        raise _unauthorized()
    async with database(request.app) as connection:
        row = await owner_of_key(connection, key)
        if row is not None and request.app[KEY_USE].due(row["key_id"]):
            await audit.record(
                connection, AuditKind.KEY_USED, row["ato_id"], row["key_id"], None, utc_now()
            )
    if row is None:
        raise _unauthorized()
    request[PRINCIPAL] = Principal(row["ato_id"], row["default_policy"], row["key_id"])
    with structlog.contextvars.bound_contextvars(ato_id=row["ato_id"]):
        return await handler(request)
