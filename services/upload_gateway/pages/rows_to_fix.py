"""The rows to fix of a partially accepted upload, from its result page (scheme section 9).

Only a session that may submit downloads them (they are learners' details as sent); the
download is audited naming the person signed in through the portal, or the API key of a
session opened with one. The file itself is the API's (`rows_to_fix_download`).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from services.upload_gateway.appkeys import STORAGE, database
from services.upload_gateway.domain_errors import NoRowsToFix, NotFound, StoredFilePurged
from services.upload_gateway.pages import texts
from services.upload_gateway.pages.sessions import Session
from services.upload_gateway.pages.site import match_value, render, url
from services.upload_gateway.pages.views import submitter_page
from services.upload_gateway.rows_to_fix_download import Format, download


async def _rows_to_fix(request: web.Request, session: Session, kind: Format) -> web.Response:
    try:
        upload_id = uuid.UUID(match_value(request, "upload_id"))
    except ValueError:
        return _message(request, session, None, 404, texts.RESULT["not_found"])
    try:
        found = await download(
            lambda: database(request.app),
            request.app[STORAGE],
            session.principal(),
            upload_id,
            kind,
        )
    except NotFound:
        return _message(request, session, None, 404, texts.RESULT["not_found"])
    except NoRowsToFix:
        return _message(request, session, upload_id, 409, texts.ROWS_TO_FIX["not_partial"])
    except StoredFilePurged:
        return _message(request, session, upload_id, 410, texts.ROWS_TO_FIX["purged"])
    return web.Response(
        body=found.content,
        headers={
            **found.attachment_headers(),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _message(
    request: web.Request, session: Session, upload_id: uuid.UUID | None, status: int, body: str
) -> web.Response:
    context: dict[str, object] = {"title": texts.ROWS_TO_FIX["title"], "body": [body]}
    if upload_id is not None:
        context["link"] = (url(f"/uploads/{upload_id}"), texts.ROWS_TO_FIX["back"])
    return render(request, "message.html", status, session=session, **context)


@submitter_page
async def rows_to_fix_csv(request: web.Request, session: Session) -> web.StreamResponse:
    return await _rows_to_fix(request, session, Format.CSV)


@submitter_page
async def rows_to_fix_xlsx(request: web.Request, session: Session) -> web.StreamResponse:
    return await _rows_to_fix(request, session, Format.XLSX)
