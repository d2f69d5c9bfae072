"""Every page's chrome: the organisation's name, the navigation marking the current page, the
footer's links, and "Error: " in the title of a page whose form has errors."""

from __future__ import annotations

import re
from typing import Any

from page_context import SignedIn, page_context

from services.upload_gateway.pages import texts
from services.upload_gateway.pages.site import SESSION_COOKIE, SIGN_IN_COOKIE, templates


def _render(template: str, **context: Any) -> str:
    return templates().get_template(template).render(**page_context(**context))


def _nav(html: str) -> str:
    return html.split('<nav class="site-nav"', 1)[1].split("</nav>", 1)[0]


def test_the_header_names_the_organisation_not_its_internal_id() -> None:
    html = _render("submit.html", title=texts.TITLES["submit"])

    assert "Signed in for Northgate Training Ltd</span>" in html
    assert "ATO-7EC4FB26" not in html


def test_an_organisation_without_a_name_on_record_is_named_by_its_id() -> None:
    html = _render("submit.html", title=texts.TITLES["submit"], session=SignedIn(ato_name=""))

    assert "Signed in for ATO-7EC4FB26</span>" in html


def test_the_navigation_marks_the_current_page_and_only_it() -> None:
    uploads = _nav(_render("message.html", title="t", body=[], current_path="/ato/uploads"))
    courses = _nav(_render("message.html", title="t", body=[], current_path="/ato/courses"))
    result = _nav(_render("message.html", title="t", body=[], current_path="/ato/uploads/1"))

    assert re.findall(r'<a href="([^"]+)"[^>]*aria-current="page"', uploads) == ["/ato/uploads"]
    assert re.findall(r'<a href="([^"]+)"[^>]*aria-current="page"', courses) == ["/ato/courses"]
    assert "aria-current" not in result


def test_the_footer_links_help_privacy_the_fair_processing_notice_cookies_and_accessibility() -> (
    None
):
    html = _render("message.html", title="t", body=[], session=None)

    footer = html.split('<footer class="site-footer">', 1)[1]
    assert re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', footer) == [
        ("/ato/help", "Help and contact"),
        ("https://help.example/privacy", "Privacy"),
        ("https://help.example/fair-processing", "Fair Processing Notice"),
        ("/ato/cookies", "Cookies"),
        ("/ato/accessibility", "Accessibility statement"),
    ]


def _upload_page(error: str | None) -> str:
    return _render(
        "upload.html",
        title=texts.TITLES["upload"],
        policies=[("valid_rows", *texts.POLICY_LABELS["valid_rows"])],
        chosen_policy="valid_rows",
        csrf_header="X-CSRF-Token",
        error=error,
        error_field="file",
        advice=False,
    )


def test_the_title_starts_with_error_when_the_form_has_errors() -> None:
    with_error = _upload_page("Choose a CSV file to upload.")
    without = _upload_page(None)

    assert "<title>Error: Upload a new bulk achievement – Submit Bulk Achievements</title>" in (
        with_error
    )
    assert "<title>Upload a new bulk achievement – Submit Bulk Achievements</title>" in without
    # The page's script adds the same words when it shows an error itself.
    assert 'data-error-prefix="Error: "' in without


def test_the_help_page_shows_the_configured_contact_details() -> None:
    html = _render("help.html", title=texts.TITLES["help"], session=None)

    assert '<a href="mailto:support@help.example">support@help.example</a>' in html
    assert "<dd>0300 000 0000</dd>" in html
    assert 'href="https://help.example/ato"' in html


def test_the_cookies_page_lists_every_cookie_the_pages_set() -> None:
    html = _render("cookies.html", title=texts.TITLES["cookies"], session=None)

    listed = re.findall(r"<tr><td><code>([^<]+)</code></td>", html)
    assert sorted(listed) == sorted([SESSION_COOKIE, SIGN_IN_COOKIE])
