"""Receiving one upload, for the API's handler and the pages' form alike: admission, the body
streamed to storage, the upload row, its outbox event and its audit row in one transaction.

Refusals are `DomainError`s (domain_errors.py): the API answers them as JSON, the page shows
its own words; neither reads the other's answer. A refused or replayed upload's stored file is
removed (during a storage outage it stays: a stored file with no upload row is never read).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from services.core import audit
from services.core.audit import AuditKind
from services.core.logging import get_logger
from services.core.storage import StorageUnavailable, upload_key
from services.upload_gateway import uploads
from services.upload_gateway.appkeys import (
    METRICS,
    SETTINGS,
    STORAGE,
    TOPICS,
    UPLOAD_SLOTS,
    database,
)
from services.upload_gateway.auth import Principal
from services.upload_gateway.domain_errors import DomainError, StorageOutage
from services.upload_gateway.intake import (
    BodyLimits,
    discard,
    is_multipart,
    receive_multipart,
    receive_raw,
)
from services.upload_gateway.limits import check_free_space

log = get_logger()


@dataclass(frozen=True, slots=True)
class Received:
    upload: uploads.Upload
    # False for a retry with the same Idempotency-Key and bytes: the first upload, unchanged.
    created: bool


async def receive_upload(request: web.Request, who: Principal) -> Received:
    """The upload in `request`'s body (raw CSV or multipart), for `who`'s ATO."""
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
                raise StorageOutage(settings.upload_retry_after_s) from None
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
                uploaded_by=who.person,
            )
            if created:  # in the upload's transaction: no upload without its audit row
                await audit.record(
                    connection,
                    AuditKind.UPLOAD_RECEIVED,
                    who.ato_id,
                    who.key_id,
                    upload.upload_id,
                    datetime.now(UTC),
                    who.person,
                )
    except DomainError as error:
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
    return Received(upload, created)
