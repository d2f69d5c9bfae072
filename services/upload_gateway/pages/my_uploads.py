"""My uploads: the ATO's uploads, an upload's accepted achievements, and withdrawing them.

Everything read or changed goes through the API's domain functions (`uploads`, `achievements`),
acting for the session's ATO, so another ATO's upload is as absent here as in the API. Each
withdrawal is a confirmation page (a GET, changing nothing) and a form posted with the
session's CSRF token; the audit event is recorded in the withdrawal's transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from services.core import audit
from services.core.audit import AuditKind
from services.core.states import ACCEPTING, WITHDRAWABLE, GrantState
from services.upload_gateway import achievements, uploads
from services.upload_gateway.appkeys import TOPICS, database
from services.upload_gateway.domain_errors import (
    AlreadyWithdrawn,
    AmendmentWindowClosed,
    DomainError,
    NotFound,
    UploadNotAccepted,
)
from services.upload_gateway.pages import sessions, texts
from services.upload_gateway.pages.sessions import Session
from services.upload_gateway.pages.site import (
    CSRF_FIELD,
    PAGES_CLOCK,
    match_value,
    render,
    see_other,
    url,
    utc_now,
)
from services.upload_gateway.pages.views import (
    csrf_refused,
    log,
    own_upload,
    page,
    read_form,
    submitter_page,
)

UPLOADS_PER_PAGE = 20
ACHIEVEMENTS_PER_PAGE = 50
MAX_PAGE = 100_000
LONDON = ZoneInfo("Europe/London")  # the ATOs' time, as the uploads' `upload_date`
# A refused withdrawal's page: the request was understood, the state forbids it.
REFUSED_STATUS = 409
DONE_NOTICES = {
    "achievement": texts.ACHIEVEMENTS["achievement_withdrawn"],
    "upload": texts.ACHIEVEMENTS["upload_withdrawn_done"],
}


def _page_number(request: web.Request) -> int:
    """`?page=` as a number from 1; anything else is the first page."""
    raw = request.query.get("page", "1")
    if not raw.isdigit() or len(raw) > len(str(MAX_PAGE)):
        return 1
    return min(max(int(raw), 1), MAX_PAGE)


def _when(value: datetime) -> str:
    return value.astimezone(LONDON).strftime("%d/%m/%Y %H:%M")


def _uuid(request: web.Request, name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(match_value(request, name))
    except ValueError:
        return None


def _message(
    request: web.Request,
    status: int,
    title: str,
    body: list[str],
    session: Session,
    link: tuple[str, str] | None = None,
) -> web.Response:
    extra = {"link": link} if link is not None else {}
    return render(request, "message.html", status, title=title, body=body, session=session, **extra)


def _not_found(request: web.Request, session: Session, what: str) -> web.Response:
    return _message(
        request,
        404,
        texts.TITLES["error"],
        [what],
        session,
        (url("/uploads"), texts.NAV["my_uploads"]),
    )


def _refused(
    request: web.Request, session: Session, code: str, upload_id: uuid.UUID
) -> web.Response:
    """A withdrawal refused (by the refusal's code): in plain words, with the way back."""
    title_key, body_key = texts.WITHDRAWAL_REFUSALS.get(
        code, ("not_accepted_title", "not_accepted")
    )
    body = texts.WITHDRAW[body_key].format(upload_id=upload_id)
    back = (url(f"/uploads/{upload_id}/achievements"), texts.ACHIEVEMENTS["back_to_upload"])
    return _message(request, REFUSED_STATUS, texts.WITHDRAW[title_key], [body], session, back)


# The list.


@page
async def my_uploads(request: web.Request, session: Session) -> web.StreamResponse:
    number = _page_number(request)
    # `?mine=1`: only the uploads the signed-in person made (the default is the ATO's).
    mine = session.person is not None and request.query.get("mine") == "1"
    async with database(request.app) as connection:
        found, next_cursor = await uploads.list_uploads(
            connection,
            session.ato_id,
            limit=UPLOADS_PER_PAGE,
            offset=(number - 1) * UPLOADS_PER_PAGE,
            cursor=None,
            status=None,
            uploaded_by_subject=session.person.subject
            if mine and session.person is not None
            else None,
        )
    filter_query = "&mine=1" if mine else ""
    rows = [
        {
            "upload": upload,
            "received": _when(upload.received_at),
            "status": texts.STATUS_WORDS.get(upload.status, upload.status),
        }
        for upload in found
    ]
    return render(
        request,
        "my_uploads.html",
        title=texts.TITLES["my_uploads"],
        session=session,
        rows=rows,
        number=number,
        mine=mine,
        previous=url(f"/uploads?page={number - 1}{filter_query}") if number > 1 else None,
        next=url(f"/uploads?page={number + 1}{filter_query}") if next_cursor is not None else None,
    )


# An upload's achievements.


def _withdrawable(
    achievement: achievements.Achievement, upload: uploads.Upload, session: Session
) -> bool:
    """Whether to offer the withdrawal: the API's own check decides when it is posted."""
    return (
        session.may_submit
        and upload.withdrawn_at is None
        and achievement.grant_state in WITHDRAWABLE
        and achievement.release_at > utc_now()
    )


def _window_words(item: achievements.Achievement) -> str:
    if item.grant_state == GrantState.WITHDRAWN:
        return texts.ACHIEVEMENTS["window_withdrawn"]
    if item.grant_state in WITHDRAWABLE and item.release_at > utc_now():
        return texts.ACHIEVEMENTS["window_open"].format(until=_when(item.release_at))
    return texts.ACHIEVEMENTS["window_closed"]


@page
async def upload_achievements(request: web.Request, session: Session) -> web.StreamResponse:
    found = await own_upload(request, session)
    if found is None:
        return _not_found(request, session, texts.RESULT["not_found"])
    number = _page_number(request)
    offset = (number - 1) * ACHIEVEMENTS_PER_PAGE
    async with database(request.app) as connection, connection.transaction():
        items, total = await achievements.list_achievements(
            connection, session.ato_id, found.upload_id, limit=ACHIEVEMENTS_PER_PAGE, offset=offset
        )
        await _audit(request, connection, AuditKind.ACHIEVEMENTS_LISTED, session, found.upload_id)
    base = url(f"/uploads/{found.upload_id}/achievements")
    rows = [
        {
            "item": item,
            "state": texts.GRANT_STATE_WORDS.get(item.grant_state, item.grant_state),
            "window_open": item.release_at > utc_now() and item.grant_state in WITHDRAWABLE,
            "window": _window_words(item),
            "withdraw": f"{base}/{item.achievement_id}/withdraw?page={number}"
            if _withdrawable(item, found, session)
            else None,
        }
        for item in items
    ]
    return render(
        request,
        "achievements.html",
        title=texts.TITLES["achievements"],
        session=session,
        upload=found,
        received=_when(found.received_at),
        withdrawn_at=_when(found.withdrawn_at) if found.withdrawn_at else None,
        can_withdraw_upload=session.may_submit
        and found.withdrawn_at is None
        and found.status in ACCEPTING
        and any(row["window_open"] for row in rows),
        status_words=texts.STATUS_WORDS.get(found.status, found.status),
        rows=rows,
        total=total,
        first=offset + 1,
        last=offset + len(items),
        notice=DONE_NOTICES.get(request.query.get("done", "")),
        previous=f"{base}?page={number - 1}" if number > 1 else None,
        next=f"{base}?page={number + 1}" if offset + len(items) < total else None,
    )


async def _audit(
    request: web.Request,
    connection: asyncpg.Connection,
    kind: AuditKind,
    session: Session,
    upload_id: uuid.UUID,
) -> None:
    await audit.record(
        connection,
        kind,
        session.ato_id,
        session.key_id,
        upload_id,
        request.app[PAGES_CLOCK](),
        session.person,
    )


# Withdrawing the whole upload.


@submitter_page
async def confirm_upload_withdrawal(request: web.Request, session: Session) -> web.StreamResponse:
    found = await own_upload(request, session)
    if found is None:
        return _not_found(request, session, texts.RESULT["not_found"])
    if found.withdrawn_at is not None:
        return _refused(request, session, AlreadyWithdrawn.code, found.upload_id)
    if found.status not in ACCEPTING:
        return _refused(request, session, UploadNotAccepted.code, found.upload_id)
    return render(
        request,
        "withdraw.html",
        title=texts.WITHDRAW["upload_title"],
        session=session,
        intro=texts.WITHDRAW["upload_intro"].format(
            file_name=found.file_name, rows=found.rows_valid
        ),
        action=url(f"/uploads/{found.upload_id}/withdraw"),
        confirm=texts.WITHDRAW["confirm_upload"],
        back=url(f"/uploads/{found.upload_id}/achievements"),
    )


@submitter_page
async def withdraw_upload(request: web.Request, session: Session) -> web.StreamResponse:
    form = await read_form(request)
    if not sessions.same_token(session.csrf_token, form.get(CSRF_FIELD)):
        return csrf_refused(request)
    upload_id = _uuid(request, "upload_id")
    if upload_id is None:
        return _not_found(request, session, texts.RESULT["not_found"])
    try:
        async with database(request.app) as connection, connection.transaction():
            await uploads.withdraw_upload(
                connection, request.app[TOPICS], session.ato_id, upload_id, session.person
            )
            await _audit(request, connection, AuditKind.UPLOAD_WITHDRAWN, session, upload_id)
    except NotFound:
        log.info("page_withdrawal_refused", upload_id=str(upload_id), code=NotFound.code)
        return _not_found(request, session, texts.RESULT["not_found"])
    except DomainError as error:
        log.info("page_withdrawal_refused", upload_id=str(upload_id), code=error.code)
        return _refused(request, session, error.code, upload_id)
    log.info("page_upload_withdrawn", upload_id=str(upload_id))
    return see_other(url(f"/uploads/{upload_id}/achievements?done=upload"))


# Withdrawing one achievement.


@submitter_page
async def confirm_achievement_withdrawal(
    request: web.Request, session: Session
) -> web.StreamResponse:
    found = await own_upload(request, session)
    achievement_id = _uuid(request, "achievement_id")
    if found is None or achievement_id is None:
        return _not_found(request, session, texts.WITHDRAW["not_found"])
    # The achievement is read from the listing page its link came from (`?page=`): a read of
    # the upload's achievements, audited as the listing is.
    number = _page_number(request)
    async with database(request.app) as connection, connection.transaction():
        items, _ = await achievements.list_achievements(
            connection,
            session.ato_id,
            found.upload_id,
            limit=ACHIEVEMENTS_PER_PAGE,
            offset=(number - 1) * ACHIEVEMENTS_PER_PAGE,
        )
        await _audit(request, connection, AuditKind.ACHIEVEMENTS_LISTED, session, found.upload_id)
    item = next((i for i in items if i.achievement_id == achievement_id), None)
    if item is None:
        return _not_found(request, session, texts.WITHDRAW["not_found"])
    if item.grant_state not in WITHDRAWABLE or found.withdrawn_at is not None:
        return _refused(request, session, AlreadyWithdrawn.code, found.upload_id)
    if item.release_at <= utc_now():
        return _refused(request, session, AmendmentWindowClosed.code, found.upload_id)
    return render(
        request,
        "withdraw.html",
        title=texts.WITHDRAW["achievement_title"],
        session=session,
        intro=texts.WITHDRAW["achievement_intro"].format(
            row=item.row_number,
            course=item.course_code,
            date=item.achievement_date.strftime("%d/%m/%Y"),
        ),
        action=url(f"/uploads/{found.upload_id}/achievements/{achievement_id}/withdraw"),
        confirm=texts.WITHDRAW["confirm_achievement"],
        back=url(f"/uploads/{found.upload_id}/achievements?page={number}"),
    )


@submitter_page
async def withdraw_achievement(request: web.Request, session: Session) -> web.StreamResponse:
    form = await read_form(request)
    if not sessions.same_token(session.csrf_token, form.get(CSRF_FIELD)):
        return csrf_refused(request)
    upload_id = _uuid(request, "upload_id")
    achievement_id = _uuid(request, "achievement_id")
    if upload_id is None or achievement_id is None:
        return _not_found(request, session, texts.WITHDRAW["not_found"])
    try:
        async with database(request.app) as connection, connection.transaction():
            withdrawn = await achievements.withdraw_achievement(
                connection, request.app[TOPICS], session.ato_id, achievement_id
            )
            await _audit(
                request, connection, AuditKind.ACHIEVEMENT_WITHDRAWN, session, withdrawn.upload_id
            )
    except NotFound:
        log.info("page_withdrawal_refused", achievement_id=str(achievement_id), code=NotFound.code)
        return _not_found(request, session, texts.WITHDRAW["not_found"])
    except DomainError as error:
        log.info("page_withdrawal_refused", achievement_id=str(achievement_id), code=error.code)
        return _refused(request, session, error.code, upload_id)
    log.info(
        "page_achievement_withdrawn",
        achievement_id=str(achievement_id),
        upload_id=str(withdrawn.upload_id),
    )
    return see_other(url(f"/uploads/{withdrawn.upload_id}/achievements?done=achievement"))
