"""The course list: every course with its title, grant and whether it is open on the UK day."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.core.scheme.reference import Course
from services.upload_gateway.course_list import course_list, uk_today

COURSES = (
    Course("SD-MSF-102", "Mobile scaffold towers", 2, 14, 14000, date(2018, 4, 1), None),
    Course("SD-OLD-001", "Retired course", 1, 4, 5000, date(2018, 4, 1), date(2026, 6, 30)),
    Course("SD-NEW-900", "Course from July", 1, 4, 7000, date(2026, 7, 1), None),
)


def test_the_list_is_by_code_with_title_grant_dates_and_whether_it_is_open() -> None:
    listed = course_list(7, COURSES).to_json(date(2026, 6, 30))

    assert listed == {
        "reference_version": 7,
        "as_of": "2026-06-30",
        "courses": [
            {
                "code": "SD-MSF-102",
                "title": "Mobile scaffold towers",
                "grant_amount_pence": 14000,
                "open": True,
                "valid_from": "2018-04-01",
                "valid_to": None,
            },
            {
                "code": "SD-NEW-900",
                "title": "Course from July",
                "grant_amount_pence": 7000,
                "open": False,
                "valid_from": "2026-07-01",
                "valid_to": None,
            },
            {
                "code": "SD-OLD-001",
                "title": "Retired course",
                "grant_amount_pence": 5000,
                "open": True,  # its last day
                "valid_from": "2018-04-01",
                "valid_to": "2026-06-30",
            },
        ],
    }


def test_a_course_closes_the_day_after_its_last_and_opens_on_its_first() -> None:
    listed = {
        c["code"]: c["open"] for c in course_list(1, COURSES).to_json(date(2026, 7, 1))["courses"]
    }

    assert listed == {"SD-MSF-102": True, "SD-NEW-900": True, "SD-OLD-001": False}


def test_open_is_decided_on_the_uk_day_not_the_utc_one() -> None:
    # 23:30 UTC on 30 June is already 1 July in London (summer time).
    assert uk_today(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == date(2026, 7, 1)
    assert uk_today(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == date(2026, 12, 31)
