"""Errors as JSON `{"code", "message"}` everywhere: never an HTML page or a stack trace.

The domain raises `DomainError`s (domain_errors.py); `ANSWERS` maps each kind, once, to the
API's answer. The HTTP edge itself (authentication, query parameters, bodies on other routes)
raises `ApiError`. The middleware turns both, aiohttp's own HTTP exceptions (404 for unknown
routes, 405) and anything unexpected into the same JSON shape.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from services.core.db import TRANSIENT_ERRORS
from services.core.logging import get_logger
from services.core.misconfiguration import ConfigurationError
from services.upload_gateway import domain_errors as refused

log = get_logger()


class ApiError(Exception):
    """A refusal at the HTTP edge the client can act on. `message` is shown to ATO staff: no
    personal data. The domain raises `DomainError`s instead (see `ANSWERS`)."""

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


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """What the API answers a domain refusal with."""

    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


_MALFORMED_BODY: Final[Mapping[refused.MalformedKind, str]] = {
    "field_too_long": "Form field '{field}' is too long.",
    "field_not_utf8": "Form field '{field}' is not UTF-8.",
    "nested": "Nested multipart bodies are not supported.",
    "unreadable": "The multipart body could not be read.",
}

# Every domain refusal's answer, by its class: one entry per class (a unit test holds every
# class of domain_errors.py to exactly one). The answers are the API's contract: the
# integration tests in tests/integration/gateway/ pin them.
ANSWERS: Final[Mapping[type[refused.DomainError], Callable[[Any], ApiAnswer]]] = {
    # Another ATO's resource answers exactly like a missing one: do not confirm it exists.
    refused.NotFound: lambda e: ApiAnswer(404, e.code, f"No such {e.what}."),
    refused.AlreadyWithdrawn: lambda e: ApiAnswer(
        409, e.code, f"This {e.what} has already been withdrawn."
    ),
    refused.UploadNotAccepted: lambda e: ApiAnswer(
        409,
        e.code,
        f"Only an accepted upload can be withdrawn; this one is '{e.upload_status}'."
        if e.what == "upload"
        else "The upload of this achievement was not accepted.",
    ),
    refused.NoRowsToFix: lambda e: ApiAnswer(
        409,
        e.code,
        "Rows to fix are made only for a partially accepted upload; this one is"
        f" '{e.upload_status}'. For a failed upload, correct the rows in the error report and"
        " upload the whole file again.",
    ),
    refused.StoredFilePurged: lambda e: ApiAnswer(
        410,
        e.code,
        "The uploaded file is no longer kept (files are deleted after the retention period), so"
        " its rows to fix cannot be made. Correct the rows listed in the error report in your"
        " own copy of the file, delete every other row (those were accepted), and upload it.",
    ),
    refused.AmendmentWindowClosed: lambda e: ApiAnswer(
        409,
        e.code,
        "The amendment window has closed: the achievement has been or is being sent for a grant.",
    ),
    refused.InvalidCursor: lambda e: ApiAnswer(
        400, e.code, "The cursor is not one this API issued."
    ),
    refused.InvalidIdempotencyKey: lambda e: ApiAnswer(
        400, e.code, f"Idempotency-Key must be 1 to {e.max_chars} characters."
    ),
    refused.IdempotencyKeyReused: lambda e: ApiAnswer(
        409, e.code, "This Idempotency-Key was used for a different file; use a new key."
    ),
    refused.TooManyUploads: lambda e: ApiAnswer(
        429,
        e.code,
        f"This ATO already has {e.per_ato} uploads in progress; wait for one to finish and retry.",
        _retry_after(e.retry_after_s),
    ),
    refused.TermsNotAccepted: lambda e: ApiAnswer(
        422, e.code, "The terms and conditions must be accepted: send terms_accepted=true."
    ),
    refused.InvalidPolicy: lambda e: ApiAnswer(
        400, e.code, "policy must be 'all_or_nothing' or 'valid_rows'."
    ),
    refused.FileTooLarge: lambda e: ApiAnswer(
        413,
        e.code,
        f"The file is larger than the limit of {e.limit_bytes} bytes"
        f" ({e.limit_bytes / (1024 * 1024):g} MB); split it into smaller files.",
    ),
    refused.TooManyParts: lambda e: ApiAnswer(
        413,
        e.code,
        f"The multipart body has more than {e.max_parts} parts; send the file and its fields only.",
    ),
    refused.FileRefused: lambda e: ApiAnswer(422, e.code, e.message),
    refused.UnsupportedMediaType: lambda e: ApiAnswer(
        415,
        e.code,
        "Send the CSV as a text/csv body or as multipart/form-data with a 'file' part.",
    ),
    refused.MalformedBody: lambda e: ApiAnswer(
        400, e.code, _MALFORMED_BODY[e.kind].format(field=e.field)
    ),
    refused.MultipleFiles: lambda e: ApiAnswer(400, e.code, "Send one file per upload."),
    refused.FileMissing: lambda e: ApiAnswer(400, e.code, "The multipart body has no 'file' part."),
    refused.BodyTimedOut: lambda e: ApiAnswer(
        408,
        e.code,
        f"No part of the body arrived for {e.timeout_s:g} seconds; the upload was stopped.",
    ),
    refused.StorageFull: lambda e: ApiAnswer(
        507,
        e.code,
        "The service has no room to store the file just now; nothing was kept. Retry later.",
    ),
    refused.StorageOutage: lambda e: ApiAnswer(
        503,
        e.code,
        "The file storage cannot be reached just now; nothing was kept. Retry later with the"
        " same Idempotency-Key.",
        _retry_after(e.retry_after_s),
    ),
}


def answer_for(error: refused.DomainError) -> ApiAnswer:
    """The API's answer to a domain refusal."""
    return ANSWERS[type(error)](error)


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
        except refused.DomainError as error:
            answer = answer_for(error)
            response = json_error(answer.status, answer.code, answer.message, answer.headers)
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
