"""The page handlers: sign-in and out, the four choices, the upload and its outcome.

The upload and everything read about it go through the API's own code: `receive_upload`
(streaming, file inspection, limits, the outbox), which the API's handler calls too, and the
domain functions of `uploads` and `issues`, acting for the session's ATO. Refusals come as
`DomainError`s; the pages word them (texts.py), with the API's status.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from services.core import audit
from services.core.audit import AuditKind
from services.core.logging import get_logger
from services.core.scheme.columns import COLUMNS
from services.core.states import ACCEPTING, FINAL, UploadState
from services.upload_gateway import handlers, issues, uploads
from services.upload_gateway.appkeys import PRINCIPAL, SETTINGS, database
from services.upload_gateway.bodies import read_small_body
from services.upload_gateway.course_list import read_course_list
from services.upload_gateway.domain_errors import DomainError, NotFound, TermsNotAccepted
from services.upload_gateway.errors import ApiError, answer_for
from services.upload_gateway.intake import POLICIES, is_multipart
from services.upload_gateway.pages import sessions, texts
from services.upload_gateway.pages.guidance import guided_csv, scheme_view
from services.upload_gateway.pages.sessions import Session
from services.upload_gateway.pages.site import (
    CSRF_FIELD,
    CSRF_HEADER,
    PAGES_CLOCK,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    match_value,
    render,
    see_other,
    url,
)
from services.upload_gateway.pages.workbook import build_workbook
from services.upload_gateway.receive import receive_upload

log = get_logger()

SIGN_IN_FORM_TTL_S = 3600
MAX_FORM_BYTES = 4096
MAX_FORM_FIELDS = 8
ISSUES_SHOWN = 500
RESULT_REFRESH_S = 3  # how often a result page still in progress reloads itself (no script)
MAX_CSRF_FIELD_BYTES = 256
WORKBOOK_FILE_NAME = "bulk-achievements-guided-template.xlsx"
GUIDED_CSV_FILE_NAME = "bulk-achievements-blank-file.csv"
SCHEME_FILE_NAME = "bulk-achievements-csv-scheme.html"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FINAL_STATUSES = frozenset(state.value for state in FINAL)
COUNTED_STATUSES = FINAL_STATUSES - {UploadState.REJECTED.value, UploadState.ERRORED.value}

PageHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def cookie_flags() -> dict[str, Any]:
    # Secure, HTTP-only, same-site only, and sent to the pages alone (never to the API).
    return {"secure": True, "httponly": True, "samesite": "Strict", "path": url()}


async def _session(request: web.Request) -> tuple[str, Session] | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    key_sessions = request.app[SETTINGS].pages_api_key_sign_in
    async with database(request.app) as connection:
        session = await sessions.resume(
            connection, token, request.app[PAGES_CLOCK](), key_sessions=key_sessions
        )
    return (token, session) if session is not None else None


def _signed_out_response(response: web.Response) -> web.Response:
    response.del_cookie(SESSION_COOKIE, path=url(), secure=True, httponly=True, samesite="Strict")
    return response


def page(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page for a signed-in ATO: no live session sends a browser to sign in."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        found = await _session(request)
        if found is None:
            # "Your session has ended" only to a browser that had one.
            ended = "?expired=1" if request.cookies.get(SESSION_COOKIE) else ""
            return _signed_out_response(see_other(url(f"/sign-in{ended}")))
        with structlog.contextvars.bound_contextvars(ato_id=found[1].ato_id):
            return await handler(request, found[1])

    return wrapper


def endpoint(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page endpoint the page's script calls: JSON 401 rather than a redirect."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        found = await _session(request)
        if found is None:
            raise ApiError(401, "SESSION_ENDED", texts.UPLOAD["session_ended"])
        with structlog.contextvars.bound_contextvars(ato_id=found[1].ato_id):
            return await handler(request, found[1])

    return wrapper


def viewer_refused(request: web.Request, session: Session) -> web.Response:
    """What a `viewer` meets on a page that changes something or holds learners' data."""
    log.info("page_viewer_refused")
    return render(
        request,
        "message.html",
        403,
        title=texts.VIEWER["title"],
        body=[texts.VIEWER["body"]],
        session=session,
        link=(url("/uploads"), texts.NAV["my_uploads"]),
    )


def submitter_page(
    handler: PageHandler,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A page only a session that may submit (`Session.may_submit`) reaches: upload, withdraw,
    the rows to fix. A `viewer` gets a 403 page in plain words."""

    async def allowed(request: web.Request, session: Session) -> web.StreamResponse:
        if not session.may_submit:
            return viewer_refused(request, session)
        return await handler(request, session)

    return page(allowed)


async def read_form(request: web.Request) -> dict[str, str]:
    """A small urlencoded form, read whole within the API's body bounds (size and timeout)."""
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    timeout_s = request.app[SETTINGS].body_read_timeout_s
    data = await read_small_body(request, MAX_FORM_BYTES, timeout_s)
    try:
        pairs = parse_qsl(data.decode("utf-8", errors="replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than any page's form has
        raise ApiError(400, "INVALID_BODY", "The form has too many fields.") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def csrf_refused(request: web.Request) -> web.Response:
    log.info("page_csrf_refused")
    return render(
        request, "message.html", 403, title=texts.TITLES["error"], body=[texts.ERRORS["csrf"]]
    )


# Sign-in and out.


def _sign_in_page(
    request: web.Request, status: int = 200, error: str | None = None
) -> web.Response:
    csrf = secrets.token_urlsafe(32)
    notice = texts.SIGN_IN["expired"] if request.query.get("expired") == "1" else None
    settings = request.app[SETTINGS]
    response = render(
        request,
        "sign_in.html",
        status,
        title=texts.TITLES["sign_in"],
        csrf=csrf,
        error=error,
        notice=notice,
        api_key_sign_in=settings.pages_api_key_sign_in,
        portal_url=settings.portal.sign_in_url,
    )
    response.set_cookie(SIGN_IN_COOKIE, csrf, max_age=SIGN_IN_FORM_TTL_S, **cookie_flags())
    return response


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if await _session(request) is not None:
        return see_other(url("/submit"))
    return _sign_in_page(request)


async def sign_in(request: web.Request) -> web.StreamResponse:
    if not request.app[SETTINGS].pages_api_key_sign_in:
        return _sign_in_page(request, 403, texts.PORTAL_SIGN_IN["key_off"])
    form = await read_form(request)
    if not sessions.same_token(request.cookies.get(SIGN_IN_COOKIE, ""), form.get(CSRF_FIELD)):
        return _sign_in_page(request, 403, texts.SIGN_IN["form_expired"])
    api_key = form.get("api_key", "").strip()
    if not api_key:
        return _sign_in_page(request, 400, texts.SIGN_IN["missing_key"])
    async with database(request.app) as connection:
        opened = await sessions.sign_in(connection, api_key, request.app[PAGES_CLOCK]())
    if opened is None:
        log.info("page_sign_in_refused")
        return _sign_in_page(request, 401, texts.SIGN_IN["bad_key"])
    token, session = opened
    log.info("page_signed_in", ato_id=session.ato_id, key_id=str(session.key_id))
    response = see_other(url("/submit"))
    response.set_cookie(SESSION_COOKIE, token, **cookie_flags())
    response.del_cookie(SIGN_IN_COOKIE, path=url(), secure=True, httponly=True, samesite="Strict")
    return response


@page
async def sign_out(request: web.Request, session: Session) -> web.StreamResponse:
    form = await read_form(request)
    if not sessions.same_token(session.csrf_token, form.get(CSRF_FIELD)):
        return csrf_refused(request)
    async with database(request.app) as connection:
        await sessions.sign_out(connection, request.cookies[SESSION_COOKIE])
    log.info("page_signed_out", ato_id=session.ato_id)
    return _signed_out_response(see_other(url("/signed-out")))


async def signed_out(request: web.Request) -> web.StreamResponse:
    return render(
        request,
        "message.html",
        title=texts.TITLES["signed_out"],
        body=[texts.SIGN_OUT["done"]],
        link=(url("/sign-in"), texts.SIGN_OUT["again"]),
    )


async def home(request: web.Request) -> web.StreamResponse:
    return see_other(url("/submit"))


# The four choices.


@page
async def submit(request: web.Request, session: Session) -> web.StreamResponse:
    return render(request, "submit.html", title=texts.TITLES["submit"], session=session)


@page
async def scheme(request: web.Request, session: Session) -> web.StreamResponse:
    download = request.query.get("download") == "1"
    response = render(
        request,
        "scheme.html",
        title=texts.TITLES["scheme"],
        session=None if download else session,
        scheme=scheme_view(),
        download=download,
    )
    if download:
        response.headers["Content-Disposition"] = f'attachment; filename="{SCHEME_FILE_NAME}"'
    return response


@page
async def template_csv(request: web.Request, session: Session) -> web.StreamResponse:
    """The guide's "blank CSV file": the guidance notes above the header row."""
    return web.Response(
        text=guided_csv(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{GUIDED_CSV_FILE_NAME}"'},
    )


@page
async def template_header_csv(request: web.Request, session: Session) -> web.StreamResponse:
    """The header row only, as the API's template, for an ATO's own system's export."""
    return await handlers.template_csv(request)


@page
async def template_xlsx(request: web.Request, session: Session) -> web.StreamResponse:
    async with database(request.app) as connection:
        catalogue = await read_course_list(connection)
    return web.Response(
        body=build_workbook(catalogue.courses),
        content_type=XLSX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{WORKBOOK_FILE_NAME}"'},
    )


# The upload and its outcome.


def _upload_page(
    request: web.Request,
    session: Session,
    error: DomainError | None = None,
    policy: str | None = None,
) -> web.Response:
    """The upload form; after a refused upload, with the refusal in the page's words and the
    status the API answers it with."""
    status, message = 200, None
    if error is not None:
        answer = answer_for(error)
        status = answer.status
        message = texts.UPLOAD_REFUSALS.get(answer.code, answer.message)
    terms_missing = isinstance(error, TermsNotAccepted)
    return render(
        request,
        "upload.html",
        status,
        title=texts.TITLES["upload"],
        session=session,
        policies=[(policy, *texts.POLICY_LABELS[policy]) for policy in POLICIES],
        chosen_policy=policy if policy in POLICIES else session.default_policy,
        csrf_header=CSRF_HEADER,
        error=message,
        error_field="terms_accepted" if terms_missing else "file",
        advice=error is not None and error.code in texts.ADVICE_CODES,
    )


@submitter_page
async def upload_form(request: web.Request, session: Session) -> web.StreamResponse:
    return _upload_page(request, session)


async def upload(request: web.Request) -> web.StreamResponse:
    """The page's script sends the CSRF token as a header (and reads JSON back); a plain form
    post, with script off, sends it as the form's first field (and is redirected)."""
    if CSRF_HEADER in request.headers:
        return await _upload_by_script(request)
    return await _upload_by_form(request)


@endpoint
async def _upload_by_script(request: web.Request, session: Session) -> web.StreamResponse:
    """The API's upload, for the session's ATO."""
    if not sessions.same_token(session.csrf_token, request.headers.get(CSRF_HEADER)):
        log.info("page_csrf_refused")
        raise ApiError(403, "CSRF_REFUSED", texts.ERRORS["csrf"])
    if not session.may_submit:
        log.info("page_viewer_refused")
        raise ApiError(403, "ROLE_REFUSED", texts.VIEWER["body"])
    request[PRINCIPAL] = session.principal()
    return await handlers.create_upload(request)


async def _leading_csrf_field(request: web.Request) -> str | None:
    """The form's first part, read alone: the CSRF token, checked before any file byte is.

    The rest of the body is left as it was, starting at the next part's boundary, for the API's
    upload handler to read as a whole multipart body (a reader skips what precedes the first
    boundary)."""
    if not is_multipart(request):
        return None
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_read_timeout_s):
            part = await MultipartReader(request.headers, request.content).next()
            if not isinstance(part, BodyPartReader) or part.name != CSRF_FIELD:
                return None
            data = b""
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > MAX_CSRF_FIELD_BYTES:
                    return None
    except (TimeoutError, ValueError, AssertionError, HttpProcessingError):
        return None
    return data.decode("utf-8", errors="replace")


@submitter_page
async def _upload_by_form(request: web.Request, session: Session) -> web.StreamResponse:
    """The upload without script: the API's own `receive_upload`, then the result page (303)."""
    token = await _leading_csrf_field(request)
    if not sessions.same_token(session.csrf_token, token):
        return csrf_refused(request)
    who = session.principal()
    try:
        received = await receive_upload(request, who)
    except DomainError as error:
        return _upload_page(request, session, error)
    return see_other(url(f"/uploads/{received.upload.upload_id}"))


def _upload_id(request: web.Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(match_value(request, "upload_id"))
    except ValueError:
        return None


async def own_upload(request: web.Request, session: Session) -> uploads.Upload | None:
    upload_id = _upload_id(request)
    if upload_id is None:
        return None
    try:
        async with database(request.app) as connection:
            return await uploads.get_upload(connection, session.ato_id, upload_id)
    except NotFound:
        return None  # another ATO's upload is as absent as a missing one


@endpoint
async def upload_status(request: web.Request, session: Session) -> web.StreamResponse:
    found = await own_upload(request, session)
    if found is None:
        raise ApiError(404, "NOT_FOUND", texts.RESULT["not_found"])
    return web.json_response({**found.to_json(), "final": found.status in FINAL_STATUSES})


@page
async def result(request: web.Request, session: Session) -> web.StreamResponse:
    found = await own_upload(request, session)
    if found is None:
        return render(
            request,
            "message.html",
            404,
            title=texts.TITLES["result"],
            body=[texts.RESULT["not_found"]],
            session=session,
        )
    shown: list[issues.Issue] = []
    size = issues.ReportSize(0, 0)
    if found.issues_total:
        async with database(request.app) as connection:
            size = await issues.report_size(connection, found.upload_id, found.issues_total)
            shown = await issues.page(connection, found.upload_id, limit=ISSUES_SHOWN, offset=0)
    summary = found.to_json()
    return render(
        request,
        "result.html",
        title=texts.TITLES["result"],
        session=session,
        upload=summary,
        final=found.status in FINAL_STATUSES,
        status_words=texts.STATUS_WORDS.get(found.status, found.status),
        issues=shown,
        report=size,
        advice=found.file_error_code in texts.ADVICE_CODES,
        column_letters={spec.header: spec.letter for spec in COLUMNS},
        accepting=found.status in ACCEPTING,
        refresh_s=RESULT_REFRESH_S,
        # Row counts mean something once the rows were checked: not for a refused file.
        counted=found.status in COUNTED_STATUSES,
        next_steps=texts.NEXT_STEPS.get(found.status, ()),
        # The rows to fix hold learners' details: offered only to whoever may upload them again.
        rows_to_fix=found.status == UploadState.PARTIALLY_ACCEPTED and session.may_submit,
    )


@page
async def errors_csv(request: web.Request, session: Session) -> web.StreamResponse:
    found = await own_upload(request, session)
    if found is None:
        return render(
            request, "message.html", 404, title=texts.TITLES["result"], body=[], session=session
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="upload-{found.upload_id}-problems.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    async with database(request.app) as connection:
        await audit.record(
            connection,
            AuditKind.ERROR_REPORT_DOWNLOADED,
            session.ato_id,
            session.key_id,
            found.upload_id,
            request.app[PAGES_CLOCK](),
            session.person,
        )
        size = await issues.report_size(connection, found.upload_id, found.issues_total)
        await issues.write_csv_report(response, connection, found.upload_id, size)
    return response
