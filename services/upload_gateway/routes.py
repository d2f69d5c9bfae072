"""The route table: one line per endpoint. The app and the OpenAPI document are built from it."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.typedefs import Handler

from services.upload_gateway import course_list, handlers, health, metrics, openapi
from services.upload_gateway.errors import json_error


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    name: str  # the route name, which is also the OpenAPI operationId
    public: bool = False  # True: no API key needed


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/healthz", health.healthz, "healthz", public=True),
    Endpoint("GET", "/readyz", health.readyz, "readyz", public=True),
    Endpoint("GET", "/metrics", metrics.metrics_handler, "metrics", public=True),
    Endpoint("GET", "/v1/openapi.json", openapi.openapi_handler, "openapi", public=True),
    Endpoint("GET", "/v1/template.csv", handlers.template_csv, "template_csv", public=True),
    Endpoint("GET", "/v1/scheme", handlers.scheme, "scheme", public=True),
    Endpoint("GET", "/v1/courses", course_list.courses, "courses", public=True),
    Endpoint("GET", "/v1/events/schema", handlers.events_schema, "events_schema", public=True),
    Endpoint("POST", "/v1/uploads", handlers.create_upload, "create_upload"),
    Endpoint("GET", "/v1/uploads", handlers.list_uploads, "list_uploads"),
    Endpoint("GET", "/v1/uploads/{upload_id}", handlers.get_upload, "get_upload"),
    Endpoint("GET", "/v1/uploads/{upload_id}/errors", handlers.upload_errors, "upload_errors"),
    Endpoint(
        "GET",
        "/v1/uploads/{upload_id}/rows-to-fix.csv",
        handlers.rows_to_fix_csv,
        "rows_to_fix_csv",
    ),
    Endpoint(
        "GET",
        "/v1/uploads/{upload_id}/rows-to-fix.xlsx",
        handlers.rows_to_fix_xlsx,
        "rows_to_fix_xlsx",
    ),
    Endpoint(
        "GET",
        "/v1/uploads/{upload_id}/achievements",
        handlers.upload_achievements,
        "upload_achievements",
    ),
    Endpoint(
        "POST", "/v1/uploads/{upload_id}/withdraw", handlers.withdraw_upload, "withdraw_upload"
    ),
    Endpoint(
        "DELETE",
        "/v1/achievements/{achievement_id}",
        handlers.withdraw_achievement,
        "withdraw_achievement",
    ),
)

PUBLIC_ROUTE_NAMES = frozenset(e.name for e in ENDPOINTS if e.public)


async def expect_continue_only(request: web.Request) -> web.StreamResponse | None:
    """aiohttp's handling of `Expect`, which runs before the middlewares: `100-continue` as
    aiohttp does it, anything else refused in the API's error shape (aiohttp's own 417 is
    plain text)."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the body proper has not started
        return None
    return json_error(417, "EXPECTATION_FAILED", "Only 'Expect: 100-continue' is understood.")


def add_routes(app: web.Application) -> None:
    for endpoint in ENDPOINTS:
        # add_route (not add_get) registers no implicit HEAD, so the table is the whole API.
        app.router.add_route(
            endpoint.method,
            endpoint.path,
            endpoint.handler,
            name=endpoint.name,
            expect_handler=expect_continue_only,
        )
