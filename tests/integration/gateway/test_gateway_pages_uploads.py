"""My uploads in the ATO's pages: the list, an upload's achievements, withdrawals behind a
confirmation and the CSRF token, the closed amendment window, and the upload without script."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from gateway_helpers import VALID_CSV, Client, insert_achievement, insert_upload, outbox_events
from page_helpers import hidden_csrf, session_csrf, sign_in, upload_by_form

from services.upload_gateway.keys import NewKey
from services.upload_gateway.pages.my_uploads import UPLOADS_PER_PAGE

PAST = timedelta(days=-1)


def upload_ids_listed(html: str) -> list[str]:
    return re.findall(r'<tr data-upload-id="([^"]+)">', html)


async def audit_kinds(pool: asyncpg.Pool, upload_id: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT kind FROM audit_events WHERE upload_id = $1 ORDER BY occurred_at, kind", upload_id
    )
    return [row["kind"] for row in rows]


async def grant_state(pool: asyncpg.Pool, achievement_id: uuid.UUID) -> str:
    state: str = await pool.fetchval(
        "SELECT grant_state FROM achievements WHERE achievement_id = $1", achievement_id
    )
    return state


async def test_my_uploads_lists_the_atos_own_uploads_newest_first_in_pages(
    browser: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    ids = [
        str(await insert_upload(pool, ato.ato_id, received_at=start + timedelta(hours=hour)))
        for hour in range(UPLOADS_PER_PAGE + 3)
    ]
    foreign = str(await insert_upload(pool, other_ato.ato_id, received_at=start))
    newest_first = ids[::-1]

    first = await browser.get("/ato/uploads")
    second = await browser.get("/ato/uploads?page=2")

    assert first.status == 200
    first_html, second_html = await first.text(), await second.text()
    assert upload_ids_listed(first_html) == newest_first[:UPLOADS_PER_PAGE]
    assert upload_ids_listed(second_html) == newest_first[UPLOADS_PER_PAGE:]
    assert 'href="/ato/uploads?page=2" rel="next"' in first_html
    assert 'rel="prev"' not in first_html
    assert 'href="/ato/uploads?page=1" rel="prev"' in second_html
    assert 'rel="next"' not in second_html
    assert foreign not in first_html + second_html
    assert "<title>My uploads – Submit Bulk Achievements</title>" in first_html
    assert 'href="/ato/uploads" id="nav-my-uploads"' in first_html


async def test_my_uploads_shows_status_and_counts_and_a_bad_page_number_is_the_first(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="partially_accepted",
        rows_total=9,
        rows_valid=7,
        rows_invalid=2,
        file_name="june.csv",
    )

    html = await (await browser.get("/ato/uploads?page=-3")).text()

    assert upload_ids_listed(html) == [str(upload_id)]
    row = html.split(f'data-upload-id="{upload_id}">', 1)[1].split("</tr>", 1)[0]
    assert "june.csv" in row
    assert ">Partly accepted</strong>" in row
    cells = re.findall(r'<td class="numeric">(\d+)</td>', row)
    assert cells == ["9", "7", "2"]
    assert f'href="/ato/uploads/{upload_id}"' in row


async def test_an_empty_list_says_so(browser: Client, ato: NewKey) -> None:
    await sign_in(browser, ato)

    html = await (await browser.get("/ato/uploads")).text()

    assert 'id="no-uploads"' in html


async def test_the_result_page_links_to_my_uploads_and_to_the_achievements(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id, status="passed")

    html = await (await browser.get(f"/ato/uploads/{upload_id}")).text()

    assert 'href="/ato/uploads"' in html
    assert f'href="/ato/uploads/{upload_id}/achievements"' in html
    assert 'http-equiv="refresh"' not in html  # the outcome is there: nothing to wait for


async def test_the_achievements_page_shows_grant_states_without_learner_data_and_is_audited(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id, rows_valid=2)
    held = await insert_achievement(pool, upload_id, ato.ato_id, row_number=2)
    claimed = await insert_achievement(
        pool, upload_id, ato.ato_id, row_number=3, grant_state="claimed", release_in=PAST
    )

    response = await browser.get(f"/ato/uploads/{upload_id}/achievements")

    assert response.status == 200
    html = await response.text()
    assert re.findall(r'data-achievement-id="([^"]+)"', html) == [str(held), str(claimed)]
    assert "held until the window closes, then claimed" in html
    assert "grant claimed" in html
    assert f'href="/ato/uploads/{upload_id}/achievements/{held}/withdraw?page=1"' in html
    assert f"/achievements/{claimed}/withdraw" not in html
    assert 'id="withdraw-upload"' in html
    for learner_data in ("Smith", "1000000043", "1990"):
        assert learner_data not in html
    assert await audit_kinds(pool, upload_id) == ["achievements_listed"]


async def test_the_achievements_of_another_atos_upload_are_not_found(
    browser: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    foreign = await insert_upload(pool, other_ato.ato_id)
    await insert_achievement(pool, foreign, other_ato.ato_id)

    listing = await browser.get(f"/ato/uploads/{foreign}/achievements")
    confirm = await browser.get(f"/ato/uploads/{foreign}/withdraw")

    assert (listing.status, confirm.status) == (404, 404)
    assert 'id="achievements"' not in await listing.text()
    assert await audit_kinds(pool, foreign) == []


async def test_the_achievements_are_paged(browser: Client, ato: NewKey, pool: asyncpg.Pool) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id)
    for row in range(2, 2 + 51):
        await insert_achievement(pool, upload_id, ato.ato_id, row_number=row)

    first = await (await browser.get(f"/ato/uploads/{upload_id}/achievements")).text()
    second = await (await browser.get(f"/ato/uploads/{upload_id}/achievements?page=2")).text()

    assert len(re.findall(r"data-achievement-id=", first)) == 50
    assert len(re.findall(r"data-achievement-id=", second)) == 1
    assert "Achievements 1 to 50 of 51" in first
    assert "Achievements 51 to 51 of 51" in second
    assert f'href="/ato/uploads/{upload_id}/achievements?page=2" rel="next"' in first


async def test_an_achievement_is_withdrawn_after_its_confirmation_with_the_csrf_token(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id)
    achievement_id = await insert_achievement(pool, upload_id, ato.ato_id, row_number=4)
    path = f"/ato/uploads/{upload_id}/achievements/{achievement_id}/withdraw"

    confirm = await browser.get(f"{path}?page=1")
    assert confirm.status == 200
    confirm_html = await confirm.text()
    assert "Withdraw this achievement?" in confirm_html
    assert "row 4" in confirm_html
    assert await grant_state(pool, achievement_id) == "held"  # the confirmation changes nothing

    forged = await browser.post(path, data={"csrf_token": "forged"}, allow_redirects=False)
    missing = await browser.post(path, data={}, allow_redirects=False)
    assert (forged.status, missing.status) == (403, 403)
    assert await grant_state(pool, achievement_id) == "held"
    assert await outbox_events(pool) == []

    response = await browser.post(
        path, data={"csrf_token": hidden_csrf(confirm_html)}, allow_redirects=False
    )

    assert response.status == 303
    assert response.headers["Location"] == f"/ato/uploads/{upload_id}/achievements?done=achievement"
    assert await grant_state(pool, achievement_id) == "withdrawn"
    events = await outbox_events(pool)
    assert [(e["event_type"], e["achievement_id"]) for e in events] == [
        ("claim.withdrawn", str(achievement_id))
    ]
    # The confirmation read the achievement (as a listing does); the withdrawal is recorded.
    assert sorted(await audit_kinds(pool, upload_id)) == [
        "achievement_withdrawn",
        "achievements_listed",
    ]
    after = await (await browser.get(response.headers["Location"])).text()
    assert "The achievement was withdrawn" in after
    assert f"/achievements/{achievement_id}/withdraw" not in after
    assert "Not applicable: withdrawn" in after

    again = await browser.post(path, data={"csrf_token": hidden_csrf(confirm_html)})
    assert again.status == 409
    assert "Already withdrawn" in await again.text()


async def test_a_whole_upload_is_withdrawn_after_its_confirmation_with_the_csrf_token(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id, rows_valid=2, file_name="june.csv")
    first = await insert_achievement(pool, upload_id, ato.ato_id, row_number=2)
    second = await insert_achievement(pool, upload_id, ato.ato_id, row_number=3)
    path = f"/ato/uploads/{upload_id}/withdraw"

    confirm = await browser.get(path)
    assert confirm.status == 200
    confirm_html = await confirm.text()
    assert "Withdraw this whole upload?" in confirm_html
    assert "june.csv" in confirm_html
    assert "june.csv" not in confirm_html.split("<title>", 1)[1].split("</title>", 1)[0]

    forged = await browser.post(path, data={"csrf_token": "forged"}, allow_redirects=False)
    assert forged.status == 403
    assert await pool.fetchval("SELECT withdrawn_at FROM uploads") is None

    response = await browser.post(
        path, data={"csrf_token": hidden_csrf(confirm_html)}, allow_redirects=False
    )

    assert response.status == 303
    assert response.headers["Location"] == f"/ato/uploads/{upload_id}/achievements?done=upload"
    assert await pool.fetchval("SELECT withdrawn_at FROM uploads") is not None
    assert {await grant_state(pool, first), await grant_state(pool, second)} == {"withdrawn"}
    events = [e["event_type"] for e in await outbox_events(pool)]
    assert sorted(events) == ["claim.withdrawn", "claim.withdrawn", "upload.withdrawn"]
    assert await audit_kinds(pool, upload_id) == ["upload_withdrawn"]
    after = await (await browser.get(response.headers["Location"])).text()
    assert "The upload was withdrawn" in after
    assert 'id="upload-withdrawn"' in after
    assert 'id="withdraw-upload"' not in after
    listed = await (await browser.get("/ato/uploads")).text()
    assert ">withdrawn</span>" in listed


async def test_once_the_window_has_closed_the_pages_say_so_and_nothing_is_withdrawn(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id)
    achievement_id = await insert_achievement(pool, upload_id, ato.ato_id, release_in=PAST)
    path = f"/ato/uploads/{upload_id}/achievements/{achievement_id}/withdraw"
    csrf = await session_csrf(browser)

    listing = await (await browser.get(f"/ato/uploads/{upload_id}/achievements")).text()
    confirm = await browser.get(f"{path}?page=1")
    posted = await browser.post(path, data={"csrf_token": csrf})
    whole = await browser.post(f"/ato/uploads/{upload_id}/withdraw", data={"csrf_token": csrf})

    assert '<td class="window">Closed</td>' in listing
    assert path not in listing
    assert 'id="withdraw-upload"' not in listing
    for response in (confirm, posted, whole):
        assert response.status == 409
        html = await response.text()
        assert "<h1>The amendment window has closed</h1>" in html
        assert str(upload_id) in html  # the reference to quote to support
    assert await grant_state(pool, achievement_id) == "held"
    assert await pool.fetchval("SELECT withdrawn_at FROM uploads") is None
    assert await outbox_events(pool) == []
    assert "achievement_withdrawn" not in await audit_kinds(pool, upload_id)


async def test_another_atos_achievement_cannot_be_withdrawn_through_the_pages(
    browser: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    foreign_upload = await insert_upload(pool, other_ato.ato_id)
    foreign = await insert_achievement(pool, foreign_upload, other_ato.ato_id)
    own_upload = await insert_upload(pool, ato.ato_id)
    csrf = await session_csrf(browser)

    # Even under the path of one of its own uploads.
    response = await browser.post(
        f"/ato/uploads/{own_upload}/achievements/{foreign}/withdraw", data={"csrf_token": csrf}
    )

    assert response.status == 404
    assert await grant_state(pool, foreign) == "held"


async def test_without_script_the_form_uploads_and_redirects_to_a_result_page_that_refreshes(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    form_page = await (await browser.get("/ato/upload")).text()
    csrf = hidden_csrf(form_page)
    assert 'name="terms_accepted"' in form_page  # inside <noscript>: shown with script off

    response = await upload_by_form(browser, csrf)

    assert response.status == 303
    row = await pool.fetchrow("SELECT upload_id, ato_id, policy FROM uploads")
    assert (row["ato_id"], row["policy"]) == (ato.ato_id, "valid_rows")
    assert response.headers["Location"] == f"/ato/uploads/{row['upload_id']}"
    assert await audit_kinds(pool, row["upload_id"]) == ["upload_received"]
    result = await (await browser.get(response.headers["Location"])).text()
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', result)
    assert "still being checked" in result


async def test_without_script_the_form_needs_the_csrf_token_first_and_the_terms(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)

    forged = await browser.post(
        "/ato/upload",
        data={"csrf_token": "forged", "file": io.BytesIO(VALID_CSV), "terms_accepted": "true"},
    )
    late = await browser.post(
        "/ato/upload",
        data={"file": io.BytesIO(VALID_CSV), "terms_accepted": "true", "csrf_token": csrf},
    )
    no_terms = await browser.post(
        "/ato/upload", data={"csrf_token": csrf, "file": io.BytesIO(VALID_CSV)}
    )

    assert (forged.status, late.status) == (403, 403)
    assert no_terms.status == 422
    html = await no_terms.text()
    assert 'class="error-summary"' in html
    assert 'href="#terms_accepted"' in html
    assert "Accept the terms and conditions to upload the file." in html
    assert 'aria-invalid="true"' in html
    assert await pool.fetchval("SELECT count(*) FROM uploads") == 0


async def test_without_script_a_workbook_is_refused_with_the_export_advice(
    browser: Client, ato: NewKey
) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)
    workbook = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 200

    response = await browser.post(
        "/ato/upload",
        data={"csrf_token": csrf, "file": io.BytesIO(workbook), "terms_accepted": "true"},
    )

    assert response.status == 422
    html = await response.text()
    assert 'href="#file"' in html
    assert re.search(r'<div id="export-advice"\s*>', html)  # shown, not hidden
