"""The session's person and role as the pages show them: a viewer is offered no upload and no
withdrawal, a person is named in the header, and the sign-in page offers the portal (and the
API key only where that sign-in is turned on). The refusals themselves (403) are the gateway's
integration tests' (test_gateway_portal_sign_in.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from page_context import page_context

from services.core.people import Person, Role
from services.upload_gateway.auth import Principal
from services.upload_gateway.pages import texts
from services.upload_gateway.pages.sessions import Session
from services.upload_gateway.pages.site import templates

PRIYA = Person("portal-user-1001", "Priya Shah")
KEY_ID = uuid.UUID("6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f")


def person_session(role: Role) -> Session:
    return Session(
        ato_id="ATO-7EC4FB26",
        key_id=None,
        default_policy="all_or_nothing",
        csrf_token="csrf",
        expires_at=datetime(2026, 6, 15, 9, 30, tzinfo=UTC),
        person=PRIYA,
        role=role,
        ato_name="Northgate Training Ltd",
    )


def render(template: str, session: Session | None, **context: Any) -> str:
    return templates().get_template(template).render(**page_context(session=session, **context))


def test_a_viewer_may_not_submit_and_a_submitter_or_an_api_keys_session_may() -> None:
    key_session = Session("ATO-7EC4FB26", KEY_ID, "valid_rows", "csrf", datetime.now(UTC))

    assert not person_session(Role.VIEWER).may_submit
    assert person_session(Role.SUBMITTER).may_submit
    assert key_session.may_submit
    assert person_session(Role.VIEWER).principal() == Principal(
        "ATO-7EC4FB26", "all_or_nothing", None, PRIYA
    )
    assert key_session.principal() == Principal("ATO-7EC4FB26", "valid_rows", KEY_ID, None)
    assert PRIYA.actor == "person:portal-user-1001"


def test_a_viewer_is_offered_no_upload_on_the_four_choices_or_my_uploads() -> None:
    for role, offered in ((Role.SUBMITTER, True), (Role.VIEWER, False)):
        session = person_session(role)
        submit = render("submit.html", session, title=texts.TITLES["submit"])
        uploads = render(
            "my_uploads.html",
            session,
            title=texts.TITLES["my_uploads"],
            rows=[],
            number=1,
            mine=False,
            previous=None,
            next=None,
        )

        assert ('href="/ato/upload"' in submit) is offered, role
        assert ('href="/ato/upload"' in uploads) is offered, role


def test_the_header_names_the_person_signed_in() -> None:
    html = render("submit.html", person_session(Role.VIEWER), title=texts.TITLES["submit"])

    assert '<span id="signed-in-person">Priya Shah</span>' in html


def test_the_sign_in_page_offers_the_portal_and_the_key_only_where_turned_on() -> None:
    portal = "https://portal.example/sign-in"
    form: dict[str, Any] = {"title": "Sign in", "csrf": "c", "error": None, "notice": None}
    without_key = render("sign_in.html", None, api_key_sign_in=False, portal_url=portal, **form)
    with_key = render("sign_in.html", None, api_key_sign_in=True, portal_url=portal, **form)

    link = f'<a class="button" id="portal-sign-in" href="{portal}">Sign in through the portal</a>'
    assert link in without_key
    assert link in with_key
    assert 'name="api_key"' not in without_key
    assert 'name="api_key"' in with_key
    assert 'autocomplete="off"' in with_key  # the key is not offered to be saved as a password


def test_the_page_after_the_hand_off_moves_on_to_the_pages_by_itself() -> None:
    html = render(
        "portal_signed_in.html",
        None,
        title=texts.PORTAL_SIGN_IN["signed_in_title"],
        name="Priya Shah",
        next_page="/ato/submit",
    )

    assert '<meta http-equiv="refresh" content="0; url=/ato/submit">' in html
    assert '<a id="continue" href="/ato/submit">' in html
    assert "You are signed in as Priya Shah." in html
