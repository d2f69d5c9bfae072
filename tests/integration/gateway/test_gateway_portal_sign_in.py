"""Each person signs in through the portal: its hand-off token posted to `/ato/sign-in/portal`,
checked against the portal's JWKS (served over HTTP here, as the portal stand-in serves it), its
`jti` spent in PostgreSQL, and the session then naming the person and their role in the
audit trail, the uploads and their withdrawals. A viewer sees and changes nothing."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from gateway_helpers import (
    VALID_CSV,
    gateway_settings_for,
    insert_achievement,
    insert_upload,
)
from page_helpers import (
    AUDIENCE,
    ISSUER,
    PRIYA,
    START,
    TOM,
    FakeClock,
    MakeBrowser,
    Portal,
    free_port,
    hand_off,
    hidden_csrf,
    set_cookies,
    signed_in_as,
    upload_by_form,
)

from services.core.people import Role
from services.portal_standin.tokens import SigningKey, mint, new_signing_key
from services.upload_gateway.app import create_app
from services.upload_gateway.keys import NewKey
from services.upload_gateway.pages import sessions
from services.upload_gateway.portal_settings import PortalSettings


async def test_a_person_handed_off_by_the_portal_gets_a_session_naming_them(
    make_browser: MakeBrowser, portal: tuple[Portal, str], ato: NewKey, pool: asyncpg.Pool
) -> None:
    browser = await make_browser()
    token = portal[0].token(PRIYA, Role.SUBMITTER, ato.ato_id, token_id="jti-1")

    response = await hand_off(browser, token)

    assert response.status == 200
    html = await response.text()
    assert '<meta http-equiv="refresh" content="0; url=/ato/submit">' in html
    assert "You are signed in as Priya Shah." in html
    assert token not in html
    cookie = set_cookies(response)["ato_session"]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/ato"} <= flags
    rows = await pool.fetch(
        "SELECT ato_id, key_id, person_subject, person_name, role, expires_at FROM page_sessions"
    )
    assert [tuple(row.values()) for row in rows] == [
        (ato.ato_id, None, "p-0001", "Priya Shah", "submitter", START + timedelta(minutes=30))
    ]
    uses = await pool.fetch("SELECT token_id, expires_at FROM portal_token_uses")
    assert [tuple(row.values()) for row in uses] == [("jti-1", START + timedelta(seconds=90))]
    assert portal[0].reads == 1
    page = await (await browser.get("/ato/submit")).text()
    assert '<span id="signed-in-person">Priya Shah</span>' in page
    assert 'href="/ato/upload"' in page


async def test_a_token_is_taken_once(
    make_browser: MakeBrowser, portal: tuple[Portal, str], ato: NewKey, pool: asyncpg.Pool
) -> None:
    token = portal[0].token(PRIYA, Role.SUBMITTER, ato.ato_id)
    assert (await hand_off(await make_browser(), token)).status == 200

    replayed = await hand_off(await make_browser(), token)

    assert replayed.status == 401
    assert "already been used" in await replayed.text()
    assert "ato_session" not in set_cookies(replayed)
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 1


async def test_expired_wrongly_signed_and_unknown_ato_tokens_are_refused_with_a_clear_page(
    make_browser: MakeBrowser,
    portal: tuple[Portal, str],
    ato: NewKey,
    pool: asyncpg.Pool,
) -> None:
    found, _ = portal
    browser = await make_browser()
    expired = found.token(PRIYA, Role.SUBMITTER, ato.ato_id, now=START - timedelta(minutes=5))
    impostor = mint(
        SigningKey("k1", new_signing_key().private_key),
        issuer=ISSUER,
        audience=AUDIENCE,
        person=PRIYA,
        role=Role.SUBMITTER,
        ato_id=ato.ato_id,
        now=START,
    )
    unknown_ato = found.token(PRIYA, Role.SUBMITTER, "ATO-NOSUCH1", token_id="jti-unknown")

    answers = {
        name: await hand_off(browser, token)
        for name, token in (
            ("expired", expired),
            ("impostor", impostor),
            ("unknown_ato", unknown_ato),
            ("garbage", "not-a-token"),
        )
    }

    assert {name: answer.status for name, answer in answers.items()} == {
        "expired": 401,
        "impostor": 401,
        "unknown_ato": 403,
        "garbage": 401,
    }
    assert "had expired" in await answers["expired"].text()
    assert "not registered" in await answers["unknown_ato"].text()
    for answer in answers.values():
        assert "ato_session" not in set_cookies(answer)
        assert "Sign in through the portal" in await answer.text()
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0
    # A refused sign-in spends no token: the unknown ATO's may be used once it is registered.
    assert await pool.fetchval("SELECT count(*) FROM portal_token_uses") == 0


async def test_the_token_is_never_taken_from_a_url(
    make_browser: MakeBrowser, portal: tuple[Portal, str], ato: NewKey
) -> None:
    browser = await make_browser()
    token = portal[0].token(PRIYA, Role.SUBMITTER, ato.ato_id)

    in_url = await browser.get(f"/ato/sign-in/portal?token={token}", allow_redirects=False)
    in_query_of_post = await browser.post(
        f"/ato/sign-in/portal?token={token}", allow_redirects=False
    )

    assert in_url.status == 405
    assert in_query_of_post.status == 401
    assert "ato_session" not in set_cookies(in_query_of_post)


async def test_used_tokens_are_forgotten_once_they_could_no_longer_pass(
    make_browser: MakeBrowser,
    portal: tuple[Portal, str],
    ato: NewKey,
    pool: asyncpg.Pool,
    clock: FakeClock,
) -> None:
    first = portal[0].token(PRIYA, Role.SUBMITTER, ato.ato_id, token_id="old")
    assert (await hand_off(await make_browser(), first)).status == 200
    # The first could pass until START + 90 s; it is remembered 5 minutes longer.
    clock.advance(timedelta(minutes=6, seconds=31))
    second = portal[0].token(
        TOM, Role.VIEWER, ato.ato_id, token_id="new", now=START + timedelta(minutes=6, seconds=31)
    )

    assert (await hand_off(await make_browser(), second)).status == 200

    assert [r["token_id"] for r in await pool.fetch("SELECT token_id FROM portal_token_uses")] == [
        "new"
    ]


async def test_api_key_sign_in_is_off_by_default_and_the_page_offers_the_portal(
    make_browser: MakeBrowser, ato: NewKey, pool: asyncpg.Pool
) -> None:
    browser = await make_browser()

    form = await browser.get("/ato/sign-in")
    html = await form.text()

    assert 'name="api_key"' not in html
    assert '<a class="button" id="portal-sign-in" href="http://127.0.0.1/portal/sign-in">' in html
    posted = await browser.post(
        "/ato/sign-in", data={"csrf_token": "x", "api_key": ato.api_key}, allow_redirects=False
    )
    assert posted.status == 403
    assert "turned off" in await posted.text()
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0


async def test_an_upload_and_its_withdrawal_name_the_person_in_the_trail_and_my_uploads(
    make_browser: MakeBrowser, portal: tuple[Portal, str], ato: NewKey, pool: asyncpg.Pool
) -> None:
    browser = await signed_in_as(make_browser, portal, PRIYA, Role.SUBMITTER, ato)
    csrf = hidden_csrf(await (await browser.get("/ato/upload")).text())
    posted = await upload_by_form(browser, csrf)
    assert posted.status == 303
    uploaded = await pool.fetchrow(
        "SELECT upload_id, uploaded_by_subject, uploaded_by_name FROM uploads"
    )
    assert (uploaded["uploaded_by_subject"], uploaded["uploaded_by_name"]) == (
        "p-0001",
        "Priya Shah",
    )
    # Someone else's upload of the ATO (through the API): listed, but not under "mine".
    other = await insert_upload(pool, ato.ato_id, rows_valid=1, file_name="api.csv")
    await insert_achievement(pool, other, ato.ato_id)
    listed = await (await browser.get("/ato/uploads")).text()
    assert re.findall(r'<td class="uploaded-by">([^<]+)</td>', listed) == [
        "Your organisation&#39;s system",  # the newer one
        "Priya Shah",
    ]
    mine = await (await browser.get("/ato/uploads?mine=1")).text()
    assert re.findall(r'<tr data-upload-id="([^"]+)">', mine) == [str(uploaded["upload_id"])]

    confirm = await (await browser.get(f"/ato/uploads/{other}/withdraw")).text()
    withdrawn = await browser.post(
        f"/ato/uploads/{other}/withdraw",
        data={"csrf_token": hidden_csrf(confirm)},
        allow_redirects=False,
    )
    assert withdrawn.status == 303
    assert await pool.fetchval(
        "SELECT withdrawn_by_name FROM uploads WHERE upload_id = $1", other
    ) == ("Priya Shah")
    after = await (await browser.get(withdrawn.headers["Location"])).text()
    assert "Withdrawn by Priya Shah." in after
    trail = await pool.fetch(
        "SELECT kind, upload_id, key_id, person_subject, person_name FROM audit_events"
        " WHERE kind IN ('upload_received', 'upload_withdrawn') ORDER BY event_id"
    )
    assert [tuple(row.values()) for row in trail] == [
        ("upload_received", uploaded["upload_id"], None, "p-0001", "Priya Shah"),
        ("upload_withdrawn", other, None, "p-0001", "Priya Shah"),
    ]


async def test_a_viewer_sees_uploads_and_problems_but_cannot_upload_or_withdraw(
    make_browser: MakeBrowser, portal: tuple[Portal, str], ato: NewKey, pool: asyncpg.Pool
) -> None:
    browser = await signed_in_as(make_browser, portal, TOM, Role.VIEWER, ato)
    upload_id = await insert_upload(pool, ato.ato_id, rows_valid=1)
    achievement_id = await insert_achievement(pool, upload_id, ato.ato_id)

    submit = await (await browser.get("/ato/submit")).text()
    listed = await browser.get("/ato/uploads")
    result = await browser.get(f"/ato/uploads/{upload_id}")
    achievements = await (await browser.get(f"/ato/uploads/{upload_id}/achievements")).text()
    csrf = hidden_csrf(submit)
    refused = {
        "upload form": await browser.get("/ato/upload", allow_redirects=False),
        "upload by script": await browser.post(
            "/ato/upload", data=VALID_CSV, headers={"X-CSRF-Token": csrf}
        ),
        "confirm upload withdrawal": await browser.get(f"/ato/uploads/{upload_id}/withdraw"),
        "withdraw upload": await browser.post(
            f"/ato/uploads/{upload_id}/withdraw", data={"csrf_token": csrf}
        ),
        "withdraw achievement": await browser.post(
            f"/ato/uploads/{upload_id}/achievements/{achievement_id}/withdraw",
            data={"csrf_token": csrf},
        ),
    }

    assert 'href="/ato/upload"' not in submit
    assert (listed.status, result.status) == (200, 200)
    assert 'href="/ato/upload"' not in await result.text()
    assert "/withdraw" not in achievements
    assert {name: answer.status for name, answer in refused.items()} == dict.fromkeys(refused, 403)
    assert "submitter role" in await refused["upload form"].text()
    body = json.loads(await refused["upload by script"].text())
    assert body["code"] == "ROLE_REFUSED"
    assert await pool.fetchval("SELECT count(*) FROM uploads") == 1
    assert await pool.fetchval("SELECT withdrawn_at FROM uploads") is None


async def test_the_portals_rotated_key_is_read_again_from_its_jwks(
    make_browser: MakeBrowser, portal: tuple[Portal, str], ato: NewKey
) -> None:
    found, _ = portal
    before = await hand_off(await make_browser(), found.token(PRIYA, Role.VIEWER, ato.ato_id))
    assert before.status == 200
    found.key = new_signing_key("k2")  # the portal rotates its key

    rotated = await hand_off(await make_browser(), found.token(PRIYA, Role.VIEWER, ato.ato_id))

    assert rotated.status == 200
    assert found.reads == 2


async def test_a_session_opened_with_an_api_key_ends_when_that_sign_in_is_off(
    make_browser: MakeBrowser, ato: NewKey, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection:
        opened = await sessions.sign_in(connection, ato.api_key, START)
    assert opened is not None
    browser = await make_browser()
    browser.session.cookie_jar.update_cookies({"ato_session": opened[0]})

    response = await browser.get("/ato/submit", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/ato/sign-in?expired=1"


async def test_while_the_portals_keys_cannot_be_read_the_sign_in_says_to_try_later(
    database_url: str, storage_root: Path, ato: NewKey, pool: asyncpg.Pool
) -> None:
    closed_port = free_port()  # nothing listens there
    settings = gateway_settings_for(
        database_url,
        storage_root,
        portal=PortalSettings(
            jwks_url=f"http://127.0.0.1:{closed_port}/.well-known/jwks.json",
            issuer=ISSUER,
            audience=AUDIENCE,
            deployment_mode="local",
        ),
    )
    token = Portal().token(PRIYA, Role.SUBMITTER, ato.ato_id)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        response = await hand_off(client, token)
        page = await response.text()

    assert response.status == 503
    assert "cannot be checked at the moment" in page
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0
