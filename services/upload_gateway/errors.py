"""Errors as JSON `{"code", "message"}` everywhere: never an HTML page or a stack trace.

Domain code raises `ApiError`; the middleware turns it, aiohttp's own HTTP exceptions (404 for
unknown routes, 405) and anything unexpected into the same JSON shape.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import Mapping

import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from services.core.db import TRANSIENT_ERRORS
from services.core.logging import get_logger
from services.core.misconfiguration import ConfigurationError

log = get_logger()


class ApiError(Exception):
    """A refusal the client can act on. `message` is shown to ATO staff: no personal data."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def not_found(what: str = "resource") -> ApiError:
    # Another ATO's resource answers exactly like a missing one: do not confirm it exists.
    return ApiError(404, "NOT_FOUND", f"No such {what}.")


def json_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


_CODE_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "FILE_03",
    415: "UNSUPPORTED_MEDIA_TYPE",
}

_MESSAGE_BY_STATUS = {
    404: "No such resource.",
    405: "This method is not allowed here.",
}


def _from_http_exception(error: web.HTTPException) -> web.Response:
    code = _CODE_BY_STATUS.get(error.status, "HTTP_ERROR")
    message = _MESSAGE_BY_STATUS.get(error.status, error.reason)
    headers = {}
    if "Allow" in error.headers:
        headers["Allow"] = error.headers["Allow"]
    return json_error(error.status, code, message, headers)


def _where(error: BaseException) -> str:
    """The innermost frame as file:line; never locals or the message, which may hold row data."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except ApiError as error:
            response = json_error(error.status, error.code, error.message, error.headers)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = _from_http_exception(error)
        except asyncio.CancelledError:
            raise
        except (RequestPayloadError, ContentEncodingError):
            # A body cut short or badly framed (chunked sizes): the client's fault. Coded bodies
            # never get this far (415 before they are read).
            response = json_error(
                400, "BAD_REQUEST", "The request body could not be read as it was encoded."
            )
        except TRANSIENT_ERRORS as error:
            # A pool that cannot hand out a connection in time, or a database that went away.
            log.warning("dependency_unavailable", error=type(error).__name__, where=_where(error))
            response = json_error(
                503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable; retry later."
            )
        except ConfigurationError as problem:
            # The same answer as an outage to the client (the API's answer to a certificate that
            # did not verify was always this 503); the log and readiness name the setting.
            log.error("dependency_misconfigured", setting=problem.setting, where=_where(problem))
            response = json_error(
                503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable; retry later."
            )
        except Exception as error:
            log.error(
                "request_failed",
                method=request.method,
                path=request.path,
                error=type(error).__name__,
                where=_where(error),
            )
            response = json_error(
                500, "INTERNAL_ERROR", "An unexpected error occurred; it has been logged."
            )
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
            if request.body_exists and not request.content.at_eof():
                # A refused upload still streaming in: close rather than read the rest.
                response.force_close()
        return response
