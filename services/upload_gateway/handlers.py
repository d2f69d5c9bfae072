"""Thin HTTP handlers: parse the request, call the domain, shape the answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from services.core import audit
from services.core.audit import AuditKind
from services.core.events import events_json_schema
from services.core.logging import get_logger
from services.core.scheme.scheme_document import scheme_document
from services.core.scheme.scheme_document import template_csv as template_text
from services.upload_gateway import achievements, issues, rows_to_fix_download, uploads
from services.upload_gateway.appkeys import STORAGE, TOPICS, database
from services.upload_gateway.auth import Principal, principal
from services.upload_gateway.domain_errors import NotFound
from services.upload_gateway.errors import ApiError
from services.upload_gateway.receive import receive_upload
from services.upload_gateway.rows_to_fix_download import Format

log = get_logger()

MAX_OFFSET = 1_000_000_000
UPLOADS_PAGE = (50, 200)  # (default, maximum) page sizes
ACHIEVEMENTS_PAGE = (100, 1000)
ISSUES_PAGE = (1000, 10_000)
TEMPLATE_FILE_NAME = "bulk-achievements-template.csv"


def int_param(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise ApiError(
            400, "INVALID_PARAMETER", f"{name} must be an integer from {minimum} to {maximum}."
        )
    return value


def path_uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(what) from None  # a malformed id is simply not a resource here


def upload_location(upload_id: uuid.UUID) -> str:
    return f"/v1/uploads/{upload_id}"


async def create_upload(request: web.Request) -> web.Response:
    received = await receive_upload(request, principal(request))
    upload = received.upload
    return web.json_response(
        upload.to_json(),
        status=202 if received.created else 200,
        headers={"Location": upload_location(upload.upload_id)},
    )


async def list_uploads(request: web.Request) -> web.Response:
    who = principal(request)
    limit = int_param(request, "limit", UPLOADS_PAGE[0], 1, UPLOADS_PAGE[1])
    offset = int_param(request, "offset", 0, 0, MAX_OFFSET)
    status = request.query.get("status")
    if status is not None and status not in uploads.STATUSES:
        raise ApiError(
            400, "INVALID_PARAMETER", f"status must be one of {', '.join(uploads.STATUSES)}."
        )
    async with database(request.app) as connection:
        page, next_cursor = await uploads.list_uploads(
            connection,
            who.ato_id,
            limit=limit,
            offset=offset,
            cursor=request.query.get("cursor"),
            status=status,
        )
    return web.json_response(
        {"items": [u.to_json() for u in page], "limit": limit, "next_cursor": next_cursor}
    )


async def get_upload(request: web.Request) -> web.Response:
    who = principal(request)
    upload_id = path_uuid(request, "upload_id", "upload")
    async with database(request.app) as connection:
        upload = await uploads.get_upload(connection, who.ato_id, upload_id)
    return web.json_response(upload.to_json())


def _wants_csv(request: web.Request) -> bool:
    requested = request.query.get("format")
    if requested is not None:
        if requested not in ("json", "csv"):
            raise ApiError(400, "INVALID_PARAMETER", "format must be 'json' or 'csv'.")
        return requested == "csv"
    return "text/csv" in request.headers.get("Accept", "")


async def _audit(
    connection: asyncpg.Connection, kind: AuditKind, who: Principal, upload_id: uuid.UUID
) -> None:
    await audit.record(connection, kind, who.ato_id, who.key_id, upload_id, datetime.now(UTC))


async def upload_errors(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    upload_id = path_uuid(request, "upload_id", "upload")
    as_csv = _wants_csv(request)
    limit = int_param(request, "limit", ISSUES_PAGE[0], 1, ISSUES_PAGE[1])
    offset = int_param(request, "offset", 0, 0, MAX_OFFSET)
    async with database(request.app) as connection:
        upload = await uploads.get_upload(connection, who.ato_id, upload_id)
        await _audit(connection, AuditKind.ERROR_REPORT_DOWNLOADED, who, upload_id)
        size = await issues.report_size(connection, upload_id, upload.issues_total)
        if as_csv:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/csv; charset=utf-8",
                    "Content-Disposition": (
                        f'attachment; filename="upload-{upload_id}-errors.csv"'
                    ),
                    "X-Issues-Total": str(size.total),
                    "X-Issues-Truncated": "true" if size.truncated else "false",
                    "X-Issues-Not-Stored": str(size.left_out),
                }
            )
            await response.prepare(request)
            await issues.write_csv_report(response, connection, upload_id, size)
            return response
        items = await issues.page(connection, upload_id, limit=limit, offset=offset)
    next_offset = offset + len(items) if offset + len(items) < size.stored else None
    return web.json_response(
        {
            "upload_id": str(upload_id),
            "issues_total": size.total,
            "issues_stored": size.stored,
            "issues_not_stored": size.left_out,
            "truncated": size.truncated,
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
            "issues": [issue.to_json() for issue in items],
        }
    )


async def rows_to_fix_csv(request: web.Request) -> web.Response:
    return await _rows_to_fix(request, Format.CSV)


async def rows_to_fix_xlsx(request: web.Request) -> web.Response:
    return await _rows_to_fix(request, Format.XLSX)


async def _rows_to_fix(request: web.Request, kind: Format) -> web.Response:
    """The rows of a partially accepted upload that were not accepted, as sent (scheme section
    9); the duplicates left out are named in the file's guidance record and counted in a
    header."""
    upload_id = path_uuid(request, "upload_id", "upload")
    found = await rows_to_fix_download.download(
        lambda: database(request.app), request.app[STORAGE], principal(request), upload_id, kind
    )
    return web.Response(
        body=found.content,
        headers={
            **found.attachment_headers(),
            "X-Rows-To-Fix": str(found.rows),
            "X-Duplicates-Left-Out": str(found.duplicates),
        },
    )


async def upload_achievements(request: web.Request) -> web.Response:
    who = principal(request)
    upload_id = path_uuid(request, "upload_id", "upload")
    limit = int_param(request, "limit", ACHIEVEMENTS_PAGE[0], 1, ACHIEVEMENTS_PAGE[1])
    offset = int_param(request, "offset", 0, 0, MAX_OFFSET)
    async with database(request.app) as connection:
        items, total = await achievements.list_achievements(
            connection, who.ato_id, upload_id, limit=limit, offset=offset
        )
        await _audit(connection, AuditKind.ACHIEVEMENTS_LISTED, who, upload_id)
    next_offset = offset + len(items) if offset + len(items) < total else None
    return web.json_response(
        {
            "upload_id": str(upload_id),
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": next_offset,
            "items": [item.to_json() for item in items],
        }
    )


async def withdraw_upload(request: web.Request) -> web.Response:
    who = principal(request)
    upload_id = path_uuid(request, "upload_id", "upload")
    async with database(request.app) as connection, connection.transaction():
        upload = await uploads.withdraw_upload(
            connection, request.app[TOPICS], who.ato_id, upload_id
        )
        await _audit(connection, AuditKind.UPLOAD_WITHDRAWN, who, upload_id)
    log.info("upload_withdrawn", upload_id=str(upload_id))
    return web.json_response(upload.to_json())


async def withdraw_achievement(request: web.Request) -> web.Response:
    who = principal(request)
    achievement_id = path_uuid(request, "achievement_id", "achievement")
    async with database(request.app) as connection, connection.transaction():
        achievement = await achievements.withdraw_achievement(
            connection, request.app[TOPICS], who.ato_id, achievement_id
        )
        await _audit(connection, AuditKind.ACHIEVEMENT_WITHDRAWN, who, achievement.upload_id)
    log.info(
        "achievement_withdrawn",
        achievement_id=str(achievement_id),
        upload_id=str(achievement.upload_id),
    )
    return web.json_response(achievement.to_json())


async def template_csv(request: web.Request) -> web.Response:
    return web.Response(
        text=template_text(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{TEMPLATE_FILE_NAME}"'},
    )


async def scheme(request: web.Request) -> web.Response:
    return web.json_response(scheme_document())


async def events_schema(request: web.Request) -> web.Response:
    return web.json_response(events_json_schema())
