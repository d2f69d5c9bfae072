"""The list of short duration course codes, as the guide names it: each code with its title,
grant amount and whether it is open today, from the live catalogue (`course_list`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from aiohttp import web

from services.upload_gateway.appkeys import database
from services.upload_gateway.course_list import ListedCourse, read_course_list, uk_today
from services.upload_gateway.pages import texts
from services.upload_gateway.pages.sessions import Session
from services.upload_gateway.pages.site import PAGES_CLOCK, render
from services.upload_gateway.pages.views import page

DATE_FORMAT = "%d/%m/%Y"


def _pounds(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


def _when(course: ListedCourse, today: date) -> str | None:
    """The dates beside "Open" or "Closed": until when, from when, or since when."""
    if course.open_on(today):
        if course.valid_to is None:
            return None
        return texts.COURSES["open_until"].format(until=course.valid_to.strftime(DATE_FORMAT))
    if course.valid_from > today:
        return texts.COURSES["opens_on"].format(on=course.valid_from.strftime(DATE_FORMAT))
    closed = course.valid_to.strftime(DATE_FORMAT) if course.valid_to else ""
    return texts.COURSES["closed_on"].format(on=closed)


def course_rows(courses: Iterable[ListedCourse], today: date) -> list[dict[str, Any]]:
    return [
        {
            "code": course.code,
            "title": course.title,
            "grant": _pounds(course.grant_pence),
            "open": course.open_on(today),
            "detail": _when(course, today),
        }
        for course in courses
    ]


@page
async def course_list_page(request: web.Request, session: Session) -> web.StreamResponse:
    async with database(request.app) as connection:
        catalogue = await read_course_list(connection)
    today = uk_today(request.app[PAGES_CLOCK]())
    return render(
        request,
        "courses.html",
        title=texts.TITLES["courses"],
        session=session,
        rows=course_rows(catalogue.courses, today),
        today=today.strftime(DATE_FORMAT),
    )
