"""The list of short-duration course codes: each code with its title, grant amount and whether it
is open, from the live reference data (the current version of the catalogue in PostgreSQL).

The guide sends ATO staff to "our list of short duration course codes"; the pages show it at
`/ato/courses`, the API serves it as `GET /v1/courses` (for the portal backend and ATOs' own
systems), and the guided workbook lists it beside its drop-down. All three read it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from services.core.reference_store import current_version
from services.core.scheme.reference import Course
from services.upload_gateway.appkeys import database

LONDON = ZoneInfo("Europe/London")  # the ATOs' day, as an upload's `upload_date`


@dataclass(frozen=True, slots=True)
class ListedCourse:
    code: str
    title: str
    grant_pence: int
    valid_from: date
    valid_to: date | None  # None: approved with no end date

    def open_on(self, day: date) -> bool:
        """Open: achievements on `day` are approved for it (both ends inclusive)."""
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def to_json(self, day: date) -> dict[str, Any]:
        return {
            "code": self.code,
            "title": self.title,
            "grant_amount_pence": self.grant_pence,
            "open": self.open_on(day),
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
        }


@dataclass(frozen=True, slots=True)
class CourseList:
    reference_version: int
    courses: tuple[ListedCourse, ...]  # by code

    def to_json(self, day: date) -> dict[str, Any]:
        return {
            "reference_version": self.reference_version,
            "as_of": day.isoformat(),
            "courses": [course.to_json(day) for course in self.courses],
        }


def course_list(reference_version: int, courses: Iterable[Course]) -> CourseList:
    listed = (
        ListedCourse(c.code, c.title, c.grant_pence, c.valid_from, c.valid_to) for c in courses
    )
    return CourseList(reference_version, tuple(sorted(listed, key=lambda c: c.code)))


def uk_today(now: datetime) -> date:
    return now.astimezone(LONDON).date()


async def read_course_list(connection: asyncpg.Connection) -> CourseList:
    """The current catalogue: the courses alone (the levy register is not read)."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        version = await current_version(connection)
        rows = await connection.fetch(
            "SELECT code, title, grant_pence, valid_from, valid_to FROM courses"
            " WHERE version = $1 ORDER BY code",
            version,
        )
    courses = tuple(
        ListedCourse(r["code"], r["title"], r["grant_pence"], r["valid_from"], r["valid_to"])
        for r in rows
    )
    return CourseList(version, courses)


async def courses(request: web.Request) -> web.Response:
    """`GET /v1/courses`: the catalogue, each course open or not on today's UK date."""
    async with database(request.app) as connection:
        found = await read_course_list(connection)
    return web.json_response(found.to_json(uk_today(datetime.now(LONDON))))
