"""The list of short duration course codes, as the guide names it: each code with its title,
grant amount and whether it is open today, from the live catalogue (`course_list`)."""

from __future__ import annotations

from aiohttp import web

from services.upload_gateway.appkeys import database
from services.upload_gateway.course_list import read_course_list, uk_today
from services.upload_gateway.pages import texts
from services.upload_gateway.pages.sessions import Session
from services.upload_gateway.pages.site import PAGES_CLOCK, render
from services.upload_gateway.pages.views import page

DATE_FORMAT = "%d/%m/%Y"


def _pounds(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


@page
async def course_list_page(request: web.Request, session: Session) -> web.StreamResponse:
    async with database(request.app) as connection:
        catalogue = await read_course_list(connection)
    today = uk_today(request.app[PAGES_CLOCK]())
    rows = []
    for course in catalogue.courses:
        if course.open_on(today):
            until = course.valid_to.strftime(DATE_FORMAT) if course.valid_to else None
            state = texts.COURSES["open_until"].format(until=until) if until else None
        elif course.valid_from > today:
            state = texts.COURSES["opens_on"].format(on=course.valid_from.strftime(DATE_FORMAT))
        else:
            state = texts.COURSES["closed_on"].format(
                on=course.valid_to.strftime(DATE_FORMAT) if course.valid_to else ""
            )
        rows.append(
            {
                "code": course.code,
                "title": course.title,
                "grant": _pounds(course.grant_pence),
                "open": course.open_on(today),
                "detail": state,
            }
        )
    return render(
        request,
        "courses.html",
        title=texts.TITLES["courses"],
        session=session,
        rows=rows,
        today=today.strftime(DATE_FORMAT),
    )
