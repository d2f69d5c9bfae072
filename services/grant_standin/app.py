"""The grant stand-in's HTTP API: the grant payment system's endpoints plus the admin faults.

Handlers stay thin: they read the request, apply the fault plan and map domain outcomes to
responses. The claim logic lives in `claims`, the fault logic in `faults`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from services.core.db import migrate
from services.core.logging import get_logger
from services.grant_standin.calls import Call, CallLog, claim_refs, statuses_by_claim
from services.grant_standin.catalogue import Catalogue, load_catalogue
from services.grant_standin.claims import (
    ClaimStore,
    ErrorCode,
    InvalidClaim,
    Outcome,
    check_idempotency_key,
    error,
    parse_batch,
    parse_json,
)
from services.grant_standin.faults import FaultInjector, FaultPlan, InvalidFaults
from services.grant_standin.settings import Settings

MIGRATIONS_PACKAGE = "services.grant_standin.migrations"

log = get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AppKeys:
    """Every `web.AppKey` of the stand-in, in one place."""

    settings = web.AppKey("settings", Settings)
    faults = web.AppKey("faults", FaultInjector)
    catalogue = web.AppKey("catalogue", Catalogue)
    pool = web.AppKey("pool", asyncpg.Pool)
    claims = web.AppKey("claims", ClaimStore)
    calls = web.AppKey("calls", CallLog)
    # The answer the store decided for a claims request, before an injected fault replaced it.
    stored_answer = web.RequestKey("stored_answer", web.Response)


CLAIM_PATHS = frozenset({"/v1/claims", "/v1/claim-batches"})


def _json(outcome: Outcome, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(outcome.body, status=outcome.status, headers=headers)


_STATUS_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    413: ErrorCode.INVALID_CLAIM,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


# --- Middlewares (outermost first) ---------------------------------------------------------------


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One `request_handled` line per request; aiohttp's own errors answered as JSON."""
    started = time.monotonic()
    route = request.match_info.route.resource
    path = route.canonical if route is not None else "unmatched"
    with structlog.contextvars.bound_contextvars(method=request.method, route=path):
        try:
            response = await handler(request)
        except web.HTTPException as http_error:
            code = _STATUS_CODES.get(http_error.status, ErrorCode.INVALID_REQUEST)
            response = web.json_response(
                {"code": code.value, "message": http_error.reason},
                status=http_error.status,
                headers={k: v for k, v in http_error.headers.items() if k == "Allow"},
            )
        except Exception as failure:
            # Only the type: driver messages can quote query arguments, i.e. learner data.
            log.error("request_failed", error_type=type(failure).__name__)
            response = _json(error(500, ErrorCode.INTERNAL_ERROR))
        log.info(
            "request_handled",
            status=response.status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return response


def _json_body(response: web.StreamResponse) -> object:
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        try:
            return json.loads(response.body)
        except ValueError:
            return None
    return None


@web.middleware
async def _count_calls(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Logs every claim a claims request carried, with its answer (see `calls`); outside
    `_down`, so that requests refused while down count too."""
    if request.method != "POST" or request.path not in CLAIM_PATHS:
        return await handler(request)
    try:
        refs = claim_refs(parse_json(await request.read()))
    except InvalidClaim:
        refs = []
    calls = request.app[AppKeys.calls]
    try:
        response = await handler(request)
    except Exception:
        # The store failed (the database went away, perhaps after its commit): `_observe`
        # answers 500. The call still happened, and a later replay of a claim committed here
        # is only explained by it, so it is logged with no answer from the store.
        delivered = request.transport is not None and not request.transport.is_closing()
        for claim_id, upload_id in refs:
            calls.record(claim_id, upload_id, Call(500, None, delivered))
        raise
    stored = request.get(AppKeys.stored_answer)
    answered = statuses_by_claim(response.status, _json_body(response))
    decided = {} if stored is None else statuses_by_claim(stored.status, _json_body(stored))
    # A caller that timed out has closed its connection by now.
    delivered = request.transport is not None and not request.transport.is_closing()
    for claim_id, upload_id in refs:
        call = Call(
            status=answered.get(claim_id, response.status),
            stored_status=None if stored is None else decided.get(claim_id, stored.status),
            delivered=delivered,
        )
        calls.record(claim_id, upload_id, call)
    return response


def _is_admin(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    routed = resource is not None and resource.canonical.startswith("/admin/")
    return routed or request.path.startswith("/admin/")


@web.middleware
async def _down(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The admin endpoints stay up, or nothing could bring the stand-in back.
    if request.app[AppKeys.faults].down and not request.path.startswith("/admin/"):
        return _json(error(503, ErrorCode.UNAVAILABLE, "injected fault: down"))
    return await handler(request)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    # The admin endpoints take their own token: a grant client's token cannot change the faults.
    settings = request.app[AppKeys.settings]
    token = settings.admin_token if _is_admin(request) else settings.token
    expected = b"Bearer " + token.get_secret_value().encode()
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, expected):
        return _json(error(401, ErrorCode.UNAUTHORIZED))
    return await handler(request)


# --- Claim endpoints -----------------------------------------------------------------------------


async def _read_json(request: web.Request) -> object:
    return parse_json(await request.read())


async def _with_faults(
    request: web.Request, store: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    """Runs `store` under this request's fault plan."""
    plan: FaultPlan = request.app[AppKeys.faults].plan()
    if plan.retry_after_s is not None:
        log.info("fault_injected", fault="retry_after")
        outcome = error(429, ErrorCode.RATE_LIMITED, "injected fault: too many requests")
        return _json(outcome, headers={"Retry-After": str(plan.retry_after_s)})
    if plan.fail_before_store:
        log.info("fault_injected", fault="fail_before_store")
        return _json(error(503, ErrorCode.UNAVAILABLE, "injected fault: failed before storing"))
    response = await store()
    request[AppKeys.stored_answer] = response
    if plan.delay_s > 0:
        # The claim is already stored: a client that times out must find out what happened.
        log.info("fault_injected", fault="slow", delay_s=plan.delay_s)
        await asyncio.sleep(plan.delay_s)
    if plan.fail_after_store:
        log.info("fault_injected", fault="fail_after_store")
        return _json(error(503, ErrorCode.UNAVAILABLE, "injected fault: failed after storing"))
    return response


async def post_claim(request: web.Request) -> web.Response:
    async def store() -> web.Response:
        try:
            key = check_idempotency_key(request.headers.get("Idempotency-Key"))
        except InvalidClaim as invalid:
            return _json(error(400, ErrorCode.INVALID_IDEMPOTENCY_KEY, str(invalid)))
        try:
            body = await _read_json(request)
        except InvalidClaim as invalid:
            return _json(error(422, ErrorCode.INVALID_CLAIM, str(invalid)))
        return _json(await request.app[AppKeys.claims].submit(key, body))

    return await _with_faults(request, store)


async def post_claim_batch(request: web.Request) -> web.Response:
    async def store() -> web.Response:
        try:
            batch_key = check_idempotency_key(request.headers.get("Idempotency-Key"))
        except InvalidClaim as invalid:
            return _json(error(400, ErrorCode.INVALID_IDEMPOTENCY_KEY, str(invalid)))
        try:
            claims = parse_batch(await _read_json(request))
        except InvalidClaim as invalid:
            return _json(error(422, ErrorCode.INVALID_CLAIM, str(invalid)))
        # Each claim carries its own idempotency (its claim_id), so a resent batch is safe
        # whatever its key; the batch key is only logged.
        with structlog.contextvars.bound_contextvars(batch_key=batch_key):
            results = await request.app[AppKeys.claims].submit_batch(claims)
            log.info("batch_processed", claims=len(results))
        return web.json_response({"results": results}, status=207)

    return await _with_faults(request, store)


async def get_claim(request: web.Request) -> web.Response:
    claim = await request.app[AppKeys.claims].get(request.match_info["claim_id"])
    if claim is None:
        return _json(error(404, ErrorCode.NOT_FOUND))
    return web.json_response(claim)


async def list_claims(request: web.Request) -> web.StreamResponse:
    upload_id = request.query.get("upload_id")
    if not upload_id:
        return _json(error(400, ErrorCode.INVALID_REQUEST, "upload_id: query parameter required"))
    # Streamed a chunk at a time: an upload may hold a million claims.
    async with aclosing(request.app[AppKeys.claims].claims_of_upload(upload_id)) as chunks:
        # Read before the headers go out, so a database that is down still gets a 500 answer.
        chunk: list[dict[str, Any]] | None = await anext(chunks, None)
        response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
        await response.prepare(request)
        await response.write(b'{"claims":[')
        separator = b""
        try:
            while chunk is not None:
                text = ",".join(json.dumps(claim, separators=(",", ":")) for claim in chunk)
                await response.write(separator + text.encode("utf-8"))
                separator = b","
                chunk = await anext(chunks, None)
        except (asyncpg.PostgresError, OSError) as failure:
            # The status line is gone; a cut connection is the only honest signal left.
            log.error("listing_failed", error_type=type(failure).__name__)
            if request.transport is not None:
                request.transport.abort()
            return response
    await response.write(b"]}")
    await response.write_eof()
    return response


# --- Admin endpoints -----------------------------------------------------------------------------


def _faults_response(injector: FaultInjector) -> web.Response:
    return web.json_response(injector.config.model_dump(mode="json"))


async def get_faults(request: web.Request) -> web.Response:
    return _faults_response(request.app[AppKeys.faults])


async def put_faults(request: web.Request) -> web.Response:
    """Changes the fields given; the others keep their current values."""
    injector = request.app[AppKeys.faults]
    try:
        changes = await _read_json(request)
        if not isinstance(changes, dict):
            raise InvalidFaults("body: must be a JSON object")
        config = injector.update(changes)
    except (InvalidClaim, InvalidFaults) as invalid:
        return _json(error(422, ErrorCode.INVALID_FAULTS, str(invalid)))
    log.info("faults_changed", **config.model_dump(mode="json"))
    return _faults_response(injector)


async def get_calls(request: web.Request) -> web.Response:
    """Per claim id of one upload, every request that carried it and its answer (`calls`)."""
    upload_id = request.query.get("upload_id")
    if not upload_id:
        return _json(error(400, ErrorCode.INVALID_REQUEST, "upload_id: query parameter required"))
    return web.json_response({"calls": request.app[AppKeys.calls].of_upload(upload_id)})


async def delete_faults(request: web.Request) -> web.Response:
    """Back to the faults the process started with."""
    config = request.app[AppKeys.faults].reset()
    log.info("faults_reset", **config.model_dump(mode="json"))
    return _faults_response(request.app[AppKeys.faults])


# --- The application -----------------------------------------------------------------------------


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _database(app: web.Application) -> AsyncIterator[None]:
    """The pool, migrated, and the claim store on it; closed when the app stops."""
    settings = app[AppKeys.settings]
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        command_timeout=settings.db_command_timeout_s,
        init=_init_connection,
    )
    try:
        async with pool.acquire(timeout=settings.db_acquire_timeout_s) as connection:
            applied = await migrate(connection, MIGRATIONS_PACKAGE)
        if applied:
            log.info("migrations_applied", migrations=applied)
        app[AppKeys.pool] = pool
        app[AppKeys.claims] = ClaimStore(
            pool, app[AppKeys.catalogue], settings.db_acquire_timeout_s
        )
        yield
    finally:
        await pool.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[_observe, _count_calls, _down, _authenticate],
        client_max_size=settings.max_request_bytes,
    )
    app[AppKeys.settings] = settings
    app[AppKeys.faults] = FaultInjector(settings.fault_config())
    app[AppKeys.catalogue] = load_catalogue(settings.reference_dir)
    app[AppKeys.calls] = CallLog()
    app.cleanup_ctx.append(_database)
    app.router.add_post("/v1/claims", post_claim)
    app.router.add_get("/v1/claims", list_claims)
    app.router.add_get("/v1/claims/{claim_id}", get_claim)
    app.router.add_post("/v1/claim-batches", post_claim_batch)
    app.router.add_get("/admin/faults", get_faults)
    app.router.add_put("/admin/faults", put_faults)
    app.router.add_delete("/admin/faults", delete_faults)
    app.router.add_get("/admin/calls", get_calls)
    return app
