"""Bodies on routes other than the upload: small, and well-formed JSON when they are JSON.

No route but the upload reads a body today; this keeps it so that a body sent anyway (or read
by a later endpoint) is bounded: too large, too deeply nested or malformed is 400, never 500.
A body in a content coding (gzip, deflate) is refused on every route, the upload's included.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from services.upload_gateway.appkeys import SETTINGS
from services.upload_gateway.errors import ApiError
from services.upload_gateway.intake import timed

# The one route that streams its (large) body itself.
STREAMING_ROUTES = frozenset({"create_upload"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_BODY: web.RequestKey[Any] = web.RequestKey("json_body")


# A body is taken only as sent: no client of the API compresses its requests, and a gzip body
# is a decompression bomb to bound. `identity` is the coding of an uncoded body.
ACCEPTED_CONTENT_CODINGS = frozenset({"", "identity"})


def refuse_content_coding(request: web.Request) -> None:
    """415 for a body in any content coding (RFC 9110 section 15.5.16), before it is read."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ACCEPTED_CONTENT_CODINGS:
        raise ApiError(
            415,
            "UNSUPPORTED_CONTENT_ENCODING",
            "Send the body uncoded: no Content-Encoding (gzip, deflate) is accepted.",
            {"Accept-Encoding": "identity"},
        )


def bad_body(message: str) -> ApiError:
    return ApiError(400, "INVALID_BODY", message)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects, without parsing (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_json(data: bytes, max_depth: int) -> Any:
    if json_depth(data) > max_depth:
        raise bad_body(f"The JSON body is nested deeper than {max_depth} levels.")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise bad_body("The body is not well-formed JSON.") from None


async def read_small_body(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """At most `max_bytes`, read with the body timeout; one byte more is refused unread."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise bad_body(f"The body is larger than {max_bytes} bytes.")
    data = b""
    while chunk := await timed(request.content.read(max_bytes + 1 - len(data)), timeout_s):
        data += chunk
        if len(data) > max_bytes:
            raise bad_body(f"The body is larger than {max_bytes} bytes.")
    return data


@web.middleware
async def body_guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if (
        match.http_exception is None  # an unknown route or method answers 404/405 unread
        and request.method in BODY_METHODS
        and request.body_exists
    ):
        refuse_content_coding(request)
        if match.route.name not in STREAMING_ROUTES:
            settings = request.app[SETTINGS]
            data = await read_small_body(
                request, settings.max_json_body_bytes, settings.body_read_timeout_s
            )
            if data.strip() and request.content_type == "application/json":
                request[JSON_BODY] = parse_json(data, settings.max_json_depth)
    return await handler(request)
