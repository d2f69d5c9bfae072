"""The ATO's pages: sign-in for a session, CSRF on every form, expiry, and the four choices,
served beside the API without being part of it."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta

import asyncpg
import openpyxl
from gateway_helpers import VALID_CSV, Client, bearer, insert_upload
from page_helpers import START, FakeClock, hidden_csrf, session_csrf, set_cookies, sign_in

from services.core.scheme.codes import MESSAGES, Code
from services.core.scheme.columns import COLUMNS
from services.core.scheme.scheme_document import template_csv
from services.upload_gateway.appkeys import SETTINGS
from services.upload_gateway.keys import NewKey, revoke_key
from services.upload_gateway.pages.guidance import guided_csv
from services.upload_gateway.pages.workbook import BLUE, YELLOW

XLSX_SIGNATURE = b"PK\x03\x04"


async def test_signing_in_exchanges_the_key_for_a_hashed_session_in_a_strict_cookie(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    response = await sign_in(browser, ato)

    assert response.status == 303
    assert response.headers["Location"] == "/ato/submit"
    cookie = set_cookies(response)["ato_session"]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/ato"} <= flags
    token = cookie.split(";")[0].split("=", 1)[1]
    assert ato.api_key not in cookie
    assert ato.api_key not in response.headers["Location"]
    rows = await pool.fetch("SELECT token_hash, ato_id, key_id, expires_at FROM page_sessions")
    assert [(r["token_hash"], r["ato_id"], r["key_id"]) for r in rows] == [
        (hashlib.sha256(token.encode()).digest(), ato.ato_id, ato.key_id)
    ]
    assert rows[0]["expires_at"] == START + timedelta(minutes=30)
    page = await browser.get("/ato/submit")
    assert page.status == 200
    # The pages name the organisation, not its internal id.
    text = await page.text()
    assert "Training Co" in text
    assert ato.ato_id not in text


async def test_a_wrong_key_is_refused_with_an_error_summary_and_no_session(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    form = await browser.get("/ato/sign-in")
    csrf = hidden_csrf(await form.text())

    response = await browser.post(
        "/ato/sign-in", data={"csrf_token": csrf, "api_key": "ak_not-a-key"}, allow_redirects=False
    )

    assert response.status == 401
    html = await response.text()
    assert 'class="error-summary"' in html
    assert "<title>Error: Sign in – Submit Bulk Achievements</title>" in html
    assert 'href="#api_key"' in html
    assert 'aria-invalid="true"' in html
    assert "ato_session" not in set_cookies(response)
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0


async def test_sign_in_without_the_forms_csrf_token_opens_no_session(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await browser.get("/ato/sign-in")  # the form's cookie, but not its hidden field

    response = await browser.post(
        "/ato/sign-in",
        data={"csrf_token": "forged", "api_key": ato.api_key},
        allow_redirects=False,
    )

    assert response.status == 403
    assert "ato_session" not in set_cookies(response)
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0


async def test_pages_need_a_session_and_send_a_browser_to_sign_in(browser: Client) -> None:
    for path in ("/ato/submit", "/ato/scheme", "/ato/upload", "/ato/template.xlsx"):
        response = await browser.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"] == "/ato/sign-in"  # no "session ended": none began


async def test_signing_out_needs_the_csrf_token_and_ends_the_session_on_the_server(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)

    forged = await browser.post("/ato/sign-out", data={"csrf_token": "x"}, allow_redirects=False)
    assert forged.status == 403
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 1

    response = await browser.post("/ato/sign-out", data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/ato/signed-out"
    assert 'ato_session=""' in set_cookies(response)["ato_session"]
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0
    after = await browser.get("/ato/submit", allow_redirects=False)
    assert after.status == 303


async def test_a_session_expires_after_idling_and_in_any_case_after_eight_hours(
    browser: Client, ato: NewKey, clock: FakeClock
) -> None:
    await sign_in(browser, ato)

    for _ in range(16):  # used every 29 minutes (7 h 44 min in all): kept alive
        clock.advance(timedelta(minutes=29))
        assert (await browser.get("/ato/submit", allow_redirects=False)).status == 200
    clock.advance(timedelta(minutes=29))  # 8 h 13 min after sign-in: past the absolute end
    ended = await browser.get("/ato/submit", allow_redirects=False)
    assert ended.status == 303
    assert ended.headers["Location"] == "/ato/sign-in?expired=1"
    notice = await browser.get("/ato/sign-in?expired=1")
    assert "Your session has ended" in await notice.text()


async def test_a_session_ends_after_thirty_idle_minutes(
    browser: Client, ato: NewKey, clock: FakeClock
) -> None:
    await sign_in(browser, ato)

    clock.advance(timedelta(minutes=30))

    assert (await browser.get("/ato/submit", allow_redirects=False)).status == 303


async def test_revoking_the_key_ends_its_sessions(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    async with pool.acquire() as connection:
        await revoke_key(connection, ato.key_id)

    assert (await browser.get("/ato/submit", allow_redirects=False)).status == 303


async def test_pages_are_not_in_the_api_or_its_document_and_the_api_ignores_the_cookie(
    browser: Client, ato: NewKey
) -> None:
    await sign_in(browser, ato)

    document = await (await browser.get("/v1/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/ato")]
    assert not [
        route
        for route in browser.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/ato")
    ]
    api = await browser.get("/v1/uploads")  # a session is not an API credential
    assert api.status == 401


async def test_every_page_answer_carries_the_security_headers(browser: Client, ato: NewKey) -> None:
    await sign_in(browser, ato)

    for path in ("/ato/sign-in", "/ato/submit", "/ato/scheme", "/ato/upload", "/ato/nowhere"):
        response = await browser.get(path)
        assert "script-src 'self'" in response.headers["Content-Security-Policy"], path
        assert response.headers["Cache-Control"] == "no-store", path
        assert response.headers["X-Frame-Options"] == "DENY", path
    missing = await browser.get("/ato/nowhere")
    assert missing.status == 404
    assert missing.content_type == "text/html"


async def test_the_submit_page_offers_the_guides_four_choices(browser: Client, ato: NewKey) -> None:
    await sign_in(browser, ato)

    html = await (await browser.get("/ato/submit")).text()

    for text, href in (
        ("Download technical CSV scheme and guidance notes", "/ato/scheme"),
        ("Download blank CSV file", "/ato/template.csv"),
        ("Download the header row only", "/ato/template-header.csv"),
        ("See the list of short duration course codes", "/ato/courses"),
        ("Download guided template", "/ato/template.xlsx"),
        ("Upload a new bulk achievement", "/ato/upload"),
    ):
        assert text in html
        assert f'href="{href}"' in html
    assert "<title>Submit Bulk Achievements" in html
    assert 'class="skip-link"' in html
    assert 'id="main-content"' in html


async def test_the_scheme_page_lists_columns_in_template_order_and_every_code(
    browser: Client, ato: NewKey
) -> None:
    await sign_in(browser, ato)

    html = await (await browser.get("/ato/scheme")).text()

    positions = [html.index(f"{spec.letter}: {spec.header}") for spec in COLUMNS]
    assert positions == sorted(positions)
    for code in Code:
        assert f"<code>{code.value}</code>" in html, code
    for code in (Code.COURSE_03, Code.ID_01, Code.LEVY_03):
        assert MESSAGES[code].replace("'", "&#39;") in html
    assert html.count('class="column kind-required"') == sum(
        1 for spec in COLUMNS if spec.required == "yes"
    )
    assert html.count('class="column kind-identifier"') == 3
    download = await browser.get("/ato/scheme?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment;")


async def test_the_blank_csv_has_the_notes_above_the_header_and_the_header_only_is_the_apis(
    browser: Client, ato: NewKey
) -> None:
    await sign_in(browser, ato)

    blank = await browser.get("/ato/template.csv")
    header_only = await browser.get("/ato/template-header.csv")

    assert blank.status == 200
    assert await blank.text() == guided_csv()
    assert blank.headers["Content-Disposition"] == (
        'attachment; filename="bulk-achievements-blank-file.csv"'
    )
    assert header_only.status == 200
    assert await header_only.text() == template_csv()
    assert header_only.headers["Content-Disposition"].startswith("attachment;")


async def test_the_course_list_page_shows_the_live_catalogue_with_titles_grants_and_open(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    version = await pool.fetchval("SELECT version FROM reference_versions WHERE id = 1")
    codes = [
        row["code"]
        for row in await pool.fetch(
            "SELECT code FROM courses WHERE version = $1 ORDER BY code", version
        )
    ]

    html = await (await browser.get("/ato/courses")).text()

    assert re.findall(r'data-course-code="([^"]+)"', html) == codes
    row = html.split('data-course-code="SD-WAH-101">', 1)[1].split("</tr>", 1)[0]
    assert "<td>Working at height</td>" in row
    assert '<td class="numeric">£60.00</td>' in row
    assert ">Open</strong>" in row
    scheme = await (await browser.get("/ato/scheme")).text()
    assert 'href="/ato/courses"' in scheme


async def test_the_guided_workbook_has_notes_colours_a_catalogue_drop_down_and_text_columns(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)

    response = await browser.get("/ato/template.xlsx")

    assert response.status == 200
    body = await response.read()
    assert body.startswith(XLSX_SIGNATURE)
    workbook = openpyxl.load_workbook(io.BytesIO(body))
    assert workbook.sheetnames[0] == "Achievements"
    assert workbook.active is not None
    assert workbook.active.title == "Achievements"
    assert workbook.defined_names["AchievementsTemplateVersion"].attr_text == '"1.2"'
    instructions = " ".join(
        str(cell.value) for row in workbook["How to use"].iter_rows() for cell in row if cell.value
    )
    assert "CSV UTF-8" in instructions
    sheet = workbook["Achievements"]
    assert str(sheet["A1"].value).startswith("# ")
    assert str(sheet["A2"].value).startswith("# ")
    assert [cell.value for cell in sheet[3]] == [spec.header for spec in COLUMNS]
    assert sheet.max_row == 3  # the notes and the header, nothing else
    for position, spec in enumerate(COLUMNS):
        assert spec.header in str(sheet[2][position].value)
        header = sheet[f"{spec.letter}3"]
        colour = header.fill.start_color.rgb if header.fill.fill_type == "solid" else None
        expected = {"yes": BLUE}.get(spec.required, YELLOW if "one of" in spec.required else None)
        assert colour == expected, spec.header
        assert sheet.column_dimensions[spec.letter].number_format == "@", spec.header
    assert "levy registration number" in str(sheet["J2"].value)
    assert "grant payment system" in str(sheet["K2"].value)
    (validation,) = sheet.data_validations.dataValidation
    assert validation.type == "list"
    assert str(validation.sqref).startswith("B4:B")
    sheet_name, cells = validation.formula1.split("!")
    courses = workbook[sheet_name.strip("'")]
    first, last = (int(ref.lstrip("$A")) for ref in cells.split(":"))
    listed = [
        (courses.cell(row=row, column=1).value, courses.cell(row=row, column=2).value)
        for row in range(first, last + 1)
    ]
    version = await pool.fetchval("SELECT version FROM reference_versions WHERE id = 1")
    catalogue = [
        (row["code"], row["title"])
        for row in await pool.fetch(
            "SELECT code, title FROM courses WHERE version = $1 ORDER BY code", version
        )
    ]
    assert catalogue
    assert listed == catalogue


async def test_an_upload_from_the_page_needs_the_csrf_header_and_is_the_apis_upload(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)

    def form() -> dict[str, object]:
        return {"terms_accepted": "true", "policy": "valid_rows", "file": io.BytesIO(VALID_CSV)}

    forged = await browser.post("/ato/upload", data=form(), headers={"X-CSRF-Token": "forged"})
    assert forged.status == 403
    assert (await forged.json())["code"] == "CSRF_REFUSED"
    # Without the header it is a form posted without script, which needs the token too.
    unsigned = await browser.post("/ato/upload", data=form())
    assert unsigned.status == 403
    assert await pool.fetchval("SELECT count(*) FROM uploads") == 0

    response = await browser.post("/ato/upload", data=form(), headers={"X-CSRF-Token": csrf})

    assert response.status == 202
    upload = await response.json()
    row = await pool.fetchrow("SELECT ato_id, policy FROM uploads")
    assert (row["ato_id"], row["policy"]) == (ato.ato_id, "valid_rows")
    status = await browser.get(f"/ato/uploads/{upload['upload_id']}/status")
    assert (await status.json())["status"] == "received"
    assert (await status.json())["final"] is False
    page = await browser.get(f"/ato/uploads/{upload['upload_id']}")
    assert "still being checked" in await page.text()


async def test_an_upload_needs_the_terms_accepted(browser: Client, ato: NewKey) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)

    response = await browser.post(
        "/ato/upload", data={"file": io.BytesIO(VALID_CSV)}, headers={"X-CSRF-Token": csrf}
    )

    assert response.status == 422
    assert (await response.json())["code"] == "TERMS_NOT_ACCEPTED"


async def test_a_workbook_sent_as_the_file_is_refused_with_the_export_advice(
    browser: Client, ato: NewKey
) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)
    workbook = XLSX_SIGNATURE + b"\x14\x00\x06\x00" + b"\x00" * 200

    response = await browser.post(
        "/ato/upload",
        data={"terms_accepted": "true", "file": io.BytesIO(workbook)},
        headers={"X-CSRF-Token": csrf},
    )

    assert response.status == 422
    refusal = await response.json()
    assert refusal["code"] == "FILE_01"
    upload_page = await (await browser.get("/ato/upload")).text()
    assert 'data-advice-codes="FILE_01,FILE_06"' in upload_page
    assert "CSV UTF-8 (Comma delimited)" in upload_page


async def test_a_passed_upload_shows_status_rows_file_name_and_the_data_is_valid(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(
        pool, ato.ato_id, status="passed", rows_total=8, rows_valid=8, file_name="june.csv"
    )

    html = await (await browser.get(f"/ato/uploads/{upload_id}")).text()

    assert re.search(
        r'id="upload-status"><strong class="tag status-tag status-passed">Passed</strong>', html
    )
    assert '<dd id="upload-rows">8</dd>' in html
    assert '<dd id="upload-file-name">june.csv</dd>' in html
    assert "The data is valid" in html
    assert 'id="problems"' not in html


async def test_a_failed_upload_shows_the_problems_table_and_its_csv(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="failed",
        rows_total=2,
        rows_valid=1,
        rows_invalid=1,
        counts_by_code={"ULN_03": 1},
    )
    await pool.execute(
        "INSERT INTO row_issues (upload_id, row_number, position, column_name, code, severity,"
        " message, masked_value) VALUES ($1, 3, 6, 'ULN', 'ULN_03', 'error', $2, '******0044')",
        upload_id,
        MESSAGES[Code.ULN_03],
    )

    html = await (await browser.get(f"/ato/uploads/{upload_id}")).text()

    assert 'id="problems"' in html
    assert '<dd id="upload-rows-invalid">1</dd>' in html
    assert '<dd id="upload-rows-valid">0</dd>' in html  # failed: nothing accepted
    assert '<strong class="tag severity-tag severity-error">Error</strong>' in html
    assert "upload the whole file again" in html
    assert 'id="rows-to-fix"' not in html
    assert "<td>3</td>" in html
    assert "G ULN" in html
    assert "<code>ULN_03</code>" in html
    assert "<code>******0044</code>" in html
    csv_link = f"/ato/uploads/{upload_id}/errors.csv"
    assert f'href="{csv_link}"' in html
    report = await browser.get(csv_link)
    assert report.headers["Content-Disposition"] == (
        f'attachment; filename="upload-{upload_id}-problems.csv"'
    )
    lines = (await report.text()).splitlines()
    assert lines[0] == "row,column,code,severity,message,value"
    assert lines[1].startswith("3,ULN,ULN_03,error,")
    assert lines[1].endswith(",******0044")


async def test_a_capped_report_says_how_many_problems_it_leaves_out_on_the_page_and_in_the_csv(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="failed",
        rows_total=30,
        rows_valid=0,
        rows_invalid=30,
        counts_by_code={"ULN_03": 30},
    )
    await pool.execute(
        "INSERT INTO row_issues (upload_id, row_number, position, column_name, code, severity,"
        " message, masked_value) VALUES ($1, 3, 6, 'ULN', 'ULN_03', 'error', $2, '******0044')",
        upload_id,
        MESSAGES[Code.ULN_03],
    )

    html = await (await browser.get(f"/ato/uploads/{upload_id}")).text()

    assert (
        "There are 30 problems in all. The list keeps the first 1, by row; 29 more are not"
        " listed." in html
    )
    report = await browser.get(f"/ato/uploads/{upload_id}/errors.csv")
    lines = (await report.text()).splitlines()
    assert len(lines) == 3
    assert lines[2].startswith(',,,,"29 more problems are not listed in this report')


async def test_a_file_refused_as_utf16_shows_how_to_export_it(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="rejected",
        file_error_code="FILE_06",
        file_error_message=MESSAGES[Code.FILE_06],
    )

    html = await (await browser.get(f"/ato/uploads/{upload_id}")).text()

    assert "How to save your file as CSV" in html
    assert "Do not pick &#39;Unicode Text&#39;" in html


async def test_another_atos_upload_is_not_found(
    browser: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    theirs = await insert_upload(pool, other_ato.ato_id)
    await sign_in(browser, ato)

    page = await browser.get(f"/ato/uploads/{theirs}")
    status = await browser.get(f"/ato/uploads/{theirs}/status")
    report = await browser.get(f"/ato/uploads/{theirs}/errors.csv")
    malformed = await browser.get("/ato/uploads/not-an-id")

    assert (page.status, status.status, report.status, malformed.status) == (404, 404, 404, 404)


async def test_the_api_still_answers_its_key_beside_the_pages(browser: Client, ato: NewKey) -> None:
    response = await browser.get("/v1/uploads", headers=bearer(ato))

    assert response.status == 200


async def test_every_form_on_every_page_carries_a_csrf_token(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    signed_out_form = await (await browser.get("/ato/sign-in")).text()
    await sign_in(browser, ato)
    upload_id = await insert_upload(pool, ato.ato_id)
    pages = [signed_out_form]
    for path in ("/ato/submit", "/ato/scheme", "/ato/upload", f"/ato/uploads/{upload_id}"):
        pages.append(await (await browser.get(path)).text())

    forms = [form for html in pages for form in re.findall(r"<form.*?</form>", html, re.S)]

    assert len(forms) == 6  # sign-in, four sign-out buttons, the upload
    for form in forms:
        assert 'name="csrf_token"' in form or "data-csrf=" in form, form


async def test_an_oversized_sign_in_form_is_refused_unread(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    form = await browser.get("/ato/sign-in")
    csrf = hidden_csrf(await form.text())

    response = await browser.post(
        "/ato/sign-in",
        data={"csrf_token": csrf, "api_key": ato.api_key, "padding": "x" * 10_000},
        allow_redirects=False,
    )
    many_fields = await browser.post(
        "/ato/sign-in",
        data={"csrf_token": csrf, "api_key": ato.api_key, **{f"f{n}": "x" for n in range(20)}},
        allow_redirects=False,
    )

    assert response.status == 400
    assert many_fields.status == 400
    assert await pool.fetchval("SELECT count(*) FROM page_sessions") == 0


async def test_an_upload_from_the_page_streams_past_the_apis_small_body_limit(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    csrf = await session_csrf(browser)
    header, row = VALID_CSV.split(b"\r\n", 1)
    body = header + b"\r\n" + row * 4000  # about 240 KB, well over the 64 KB body limit
    assert len(body) > browser.app[SETTINGS].max_json_body_bytes

    response = await browser.post(
        "/ato/upload",
        data={"terms_accepted": "true", "file": io.BytesIO(body)},
        headers={"X-CSRF-Token": csrf},
    )

    assert response.status == 202
    assert await pool.fetchval("SELECT size_bytes FROM uploads") == len(body)


async def test_the_chrome_names_the_organisation_marks_the_page_and_links_the_footer(
    browser: Client, ato: NewKey
) -> None:
    await sign_in(browser, ato)

    html = await (await browser.get("/ato/uploads")).text()

    assert "Signed in for Training Co</span>" in html
    assert ato.ato_id not in html
    assert re.findall(r'<a href="([^"]+)"[^>]*aria-current="page"', html) == ["/ato/uploads"]
    footer = html.split('<footer class="site-footer">', 1)[1]
    for href in ("/ato/help", "/ato/cookies", "/ato/accessibility"):
        assert f'href="{href}"' in footer
    assert "Fair Processing Notice</a>" in footer


async def test_help_cookies_and_accessibility_need_no_sign_in(browser: Client) -> None:
    for path, heading in (
        ("/ato/help", "Help and contact"),
        ("/ato/cookies", "Cookies"),
        ("/ato/accessibility", "Accessibility statement"),
    ):
        response = await browser.get(path, allow_redirects=False)
        assert response.status == 200, path
        assert f"<h1>{heading}</h1>" in await response.text()
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")


async def test_a_partly_accepted_upload_counts_its_rows_and_points_to_the_rows_to_fix(
    browser: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await sign_in(browser, ato)
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="partially_accepted",
        policy="valid_rows",
        rows_total=3,
        rows_valid=2,
        rows_invalid=1,
        rows_warned=1,
        counts_by_code={"ULN_03": 1, "LEVY_03": 1},
    )
    await pool.execute(
        "INSERT INTO row_issues (upload_id, row_number, position, column_name, code, severity,"
        " message, masked_value) VALUES ($1, 3, 6, 'ULN', 'ULN_03', 'error', $2, '******0044'),"
        " ($1, 4, 9, 'EmployerLevyNumber', 'LEVY_03', 'warning', $3, NULL)",
        upload_id,
        MESSAGES[Code.ULN_03],
        MESSAGES[Code.LEVY_03],
    )

    html = await (await browser.get(f"/ato/uploads/{upload_id}")).text()

    assert "Partly accepted</strong>" in html
    assert '<dd id="upload-rows-valid">2</dd>' in html
    assert '<dd id="upload-rows-invalid">1</dd>' in html
    assert '<dd id="upload-rows-warned">1</dd>' in html
    assert '<tr class="severity-error">' in html
    assert '<tr class="severity-warning">' in html
    assert f'href="/ato/uploads/{upload_id}/rows-to-fix.csv"' in html
    assert "refused as duplicates (DUP_02)" in html
    assert "upload the whole file again" not in html
