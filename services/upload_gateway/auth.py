"""Who is calling: `Authorization: Bearer <key>` resolved to the key's ATO on every request."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from services.upload_gateway.appkeys import PRINCIPAL, PUBLIC_ROUTES, database
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
    if row is None:
        raise _unauthorized()
    request[PRINCIPAL] = Principal(row["ato_id"], row["default_policy"])
    with structlog.contextvars.bound_contextvars(ato_id=row["ato_id"]):
        return await handler(request)
