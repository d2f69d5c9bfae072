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
from services.core.storage import StorageUnavailable, upload_key
from services.upload_gateway import achievements, issues, uploads
from services.upload_gateway.appkeys import (
    METRICS,
    SETTINGS,
    STORAGE,
    TOPICS,
    UPLOAD_SLOTS,
    database,
)
from services.upload_gateway.auth import Principal, principal
from services.upload_gateway.errors import ApiError, not_found
from services.upload_gateway.intake import (
    BodyLimits,
    discard,
    is_multipart,
    receive_multipart,
    receive_raw,
    storage_unavailable,
)
from services.upload_gateway.limits import check_free_space

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
        raise not_found(what) from None  # a malformed id is simply not a resource here


def upload_location(upload_id: uuid.UUID) -> str:
    return f"/v1/uploads/{upload_id}"


async def create_upload(request: web.Request) -> web.Response:
    who = principal(request)
    settings = request.app[SETTINGS]
    storage = request.app[STORAGE]
    metrics = request.app[METRICS]
    idempotency_key = uploads.check_idempotency_key(request.headers.get("Idempotency-Key"))
    terms_accepted_at = datetime.now(UTC)  # the request that carries the acceptance
    upload_id = uuid.uuid4()
    storage_key = upload_key(upload_id)
    receive = receive_multipart if is_multipart(request) else receive_raw
    limits = BodyLimits(
        file_bytes=settings.limits.max_upload_bytes,
        chunk_bytes=settings.read_chunk_bytes,
        max_parts=settings.max_multipart_parts,
        read_timeout_s=settings.body_read_timeout_s,
    )
    try:
        with request.app[UPLOAD_SLOTS].hold(who.ato_id):
            try:
                await check_free_space(storage, settings.min_free_disk_bytes)
                form, stored = await receive(request, storage, storage_key, limits)
            except StorageUnavailable:
                # Nothing is recorded; a retry with the same Idempotency-Key starts afresh.
                raise storage_unavailable(settings.upload_retry_after_s) from None
        async with database(request.app) as connection, connection.transaction():
            upload, created = await uploads.record_upload(
                connection,
                request.app[TOPICS],
                upload_id=upload_id,
                ato_id=who.ato_id,
                file_name=form.file_name,
                policy=form.policy or who.default_policy,
                stored=stored,
                idempotency_key=idempotency_key,
                terms_accepted_at=terms_accepted_at,
            )
            if created:  # in the upload's transaction: no upload without its audit row
                await _audit(connection, AuditKind.UPLOAD_RECEIVED, who, upload.upload_id)
    except ApiError as error:
        await discard(storage, storage_key)
        metrics.uploads.labels(error.code).inc()
        log.info("upload_refused", code=error.code)
        raise
    except BaseException:
        await discard(storage, storage_key)
        raise
    if created:
        metrics.uploads.labels("created").inc()
        metrics.upload_bytes.inc(upload.size_bytes)
        log.info("upload_received", upload_id=str(upload.upload_id), size_bytes=upload.size_bytes)
    else:
        # A retry: the first request's file is the one kept.
        await discard(storage, storage_key)
        metrics.uploads.labels("replayed").inc()
        log.info("upload_replayed", upload_id=str(upload.upload_id))
    return web.json_response(
        upload.to_json(),
        status=202 if created else 200,
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
