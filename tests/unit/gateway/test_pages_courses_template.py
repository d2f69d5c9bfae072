"""The course list page: each course with its title, grant and whether it is open, in words."""

from __future__ import annotations

from datetime import date

from page_context import page_context

from services.upload_gateway.course_list import ListedCourse
from services.upload_gateway.pages import texts
from services.upload_gateway.pages.courses import course_rows
from services.upload_gateway.pages.site import templates


def test_each_course_reads_open_or_closed_with_its_dates() -> None:
    rows = [
        {"code": "SD-MSF-102", "title": "Towers", "grant": "£140.00", "open": True, "detail": None},
        {
            "code": "SD-OLD-001",
            "title": "Retired",
            "grant": "£50.00",
            "open": False,
            "detail": "after 30/06/2026",
        },
    ]

    html = (
        templates()
        .get_template("courses.html")
        .render(**page_context(title=texts.TITLES["courses"], rows=rows, today="01/07/2026"))
    )

    towers = html.split('data-course-code="SD-MSF-102">', 1)[1].split("</tr>", 1)[0]
    retired = html.split('data-course-code="SD-OLD-001">', 1)[1].split("</tr>", 1)[0]
    assert '<strong class="tag status-tag course-open">Open</strong></td>' in towers
    assert '<td class="numeric">£140.00</td>' in towers
    assert (
        '<strong class="tag status-tag course-closed">Closed</strong> after 30/06/2026' in retired
    )
    assert "an achievement dated today (01/07/2026)" in html


def test_the_rows_say_until_when_from_when_or_since_when_and_the_grant_in_pounds() -> None:
    courses = (
        ListedCourse("SD-A", "No end", 6000, date(2018, 4, 1), None),
        ListedCourse("SD-B", "Ends", 123456, date(2018, 4, 1), date(2027, 3, 31)),
        ListedCourse("SD-C", "Later", 7000, date(2026, 7, 2), None),
        ListedCourse("SD-D", "Ended", 5000, date(2018, 4, 1), date(2026, 6, 30)),
    )

    rows = course_rows(courses, date(2026, 7, 1))

    assert [(r["code"], r["grant"], r["open"], r["detail"]) for r in rows] == [
        ("SD-A", "£60.00", True, None),
        ("SD-B", "£1,234.56", True, "until 31/03/2027"),
        ("SD-C", "£70.00", False, "opens on 02/07/2026"),
        ("SD-D", "£50.00", False, "after 30/06/2026"),
    ]
