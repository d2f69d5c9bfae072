"""The pages' own little site inside the gateway: its router, its keys, its responses.

The pages are not part of the API. They have a router of their own, resolved by the pages
middleware for paths under `PREFIX`, so the API's route table (and the OpenAPI document, the
API-key check and the JSON body guard built from it) stays the API's alone: to the API's
router these paths are unknown, which its middlewares pass through unread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from services.upload_gateway.appkeys import SETTINGS
from services.upload_gateway.pages import texts

PREFIX = "/ato"
SESSION_COOKIE = "ato_session"
SIGN_IN_COOKIE = "ato_sign_in"  # the sign-in form's CSRF token, before any session exists
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self';"
    " img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}

Clock = Callable[[], datetime]

PAGES_ROUTER: web.AppKey[web.UrlDispatcher] = web.AppKey("pages_router")
PAGES_CLOCK: web.AppKey[Clock] = web.AppKey("pages_clock")
PAGES_TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("pages_templates")
PAGES_STATIC: web.AppKey[dict[str, tuple[bytes, str]]] = web.AppKey("pages_static")
PAGE_MATCH: web.RequestKey[web.UrlMappingMatchInfo] = web.RequestKey("page_match")


def utc_now() -> datetime:
    return datetime.now(UTC)


def url(path: str = "") -> str:
    return f"{PREFIX}{path}"


def templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("services.upload_gateway.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(texts=texts, url=url, csrf_field=CSRF_FIELD)
    return environment


def static_files() -> dict[str, tuple[bytes, str]]:
    """The pages' CSS and JavaScript, read once: a fixed list, never a path from the URL."""
    folder = resources.files("services.upload_gateway.pages").joinpath("static")
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """A page: its own context plus what every page's chrome reads (the path, for
    `aria-current` in the navigation; the help, contact and privacy links, for the footer)."""
    page = request.app[PAGES_TEMPLATES].get_template(template)
    context.setdefault("current_path", request.path)
    context.setdefault("support", request.app[SETTINGS].pages_support)
    return web.Response(
        text=page.render(**context), status=status, content_type="text/html", charset="utf-8"
    )


def see_other(location: str) -> web.Response:
    """A redirect returned (not raised), so the API's error middleware never sees it."""
    return web.Response(status=303, headers={"Location": location})


def match_value(request: web.Request, name: str) -> str:
    return request[PAGE_MATCH][name]


@web.middleware
async def pages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return await handler(request)
    match = await request.app[PAGES_ROUTER].resolve(request)
    if match.http_exception is not None:
        status = match.http_exception.status
        response: web.StreamResponse = render(
            request, "message.html", status=status, title=texts.ERRORS["not_found"], body=[]
        )
        if status == 405:
            response.headers["Allow"] = match.http_exception.headers.get("Allow", "")
    elif isinstance(match, web.UrlMappingMatchInfo):
        request[PAGE_MATCH] = match
        response = await match.handler(request)
    else:  # aiohttp's router resolves every path to a `UrlMappingMatchInfo`
        raise TypeError(f"the pages' router resolved {type(match).__name__}, not a route")
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


async def static(request: web.Request) -> web.Response:
    found = request.app[PAGES_STATIC].get(match_value(request, "name"))
    if found is None:
        return render(request, "message.html", 404, title=texts.ERRORS["not_found"], body=[])
    body, content_type = found
    return web.Response(
        body=body, content_type=content_type, headers={"Cache-Control": "max-age=300"}
    )
