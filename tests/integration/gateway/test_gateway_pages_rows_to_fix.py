"""The rows to fix from the result page, for a person signed in through the portal: the link
for a partially accepted upload, the download audited naming the person, a viewer refused, and
the page that says so once the stored file is purged."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from gateway_helpers import HEADER, insert_achievement, insert_upload
from page_helpers import PRIYA, TOM, MakeBrowser, Portal, signed_in_as

from services.core.people import Role
from services.upload_gateway.keys import NewKey

# Row 2 was accepted, row 3 was not (ULN_03).
STORED = (
    f"{HEADER}\r\n"
    "R2,SMSTS-R,01/03/2026,Ann,Smith,01/01/1990,1000000043,,,,\r\n"
    "R3,SMSTS-R,01/03/2026,Zoë,Ó Briain,01/01/1991,1234567890,,,,\r\n"
)


async def _partially_accepted(pool: asyncpg.Pool, storage_root: Path, ato: NewKey) -> str:
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="partially_accepted",
        encoding="utf-8",
        rows_total=2,
        rows_valid=1,
        rows_invalid=1,
    )
    stored = storage_root / f"uploads/{upload_id}.csv"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(STORED.encode("utf-8"))
    await insert_achievement(pool, upload_id, ato.ato_id, row_number=2)
    return str(upload_id)


async def test_a_submitter_downloads_the_rows_to_fix_and_the_trail_names_them(
    make_browser: MakeBrowser,
    portal: tuple[Portal, str],
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
) -> None:
    upload_id = await _partially_accepted(pool, storage_root, ato)
    browser = await signed_in_as(make_browser, portal, PRIYA, Role.SUBMITTER, ato)

    result = await (await browser.get(f"/ato/uploads/{upload_id}")).text()
    assert f'href="/ato/uploads/{upload_id}/rows-to-fix.csv"' in result
    assert f'href="/ato/uploads/{upload_id}/rows-to-fix.xlsx"' in result
    response = await browser.get(f"/ato/uploads/{upload_id}/rows-to-fix.csv")

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    lines = (await response.read()).decode("utf-8").removeprefix("\ufeff").split("\r\n")
    assert lines[-3:] == [
        HEADER,
        "R3,SMSTS-R,01/03/2026,Zoë,Ó Briain,01/01/1991,1234567890,,,,",
        "",
    ]
    trail = await pool.fetch(
        "SELECT key_id, person_subject, person_name, upload_id::text FROM audit_events"
        " WHERE kind = 'rows_to_fix_downloaded'"
    )
    assert [tuple(row.values()) for row in trail] == [(None, "p-0001", "Priya Shah", upload_id)]


async def test_a_viewer_gets_neither_the_link_nor_the_file(
    make_browser: MakeBrowser,
    portal: tuple[Portal, str],
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
) -> None:
    upload_id = await _partially_accepted(pool, storage_root, ato)
    browser = await signed_in_as(make_browser, portal, TOM, Role.VIEWER, ato)

    result = await (await browser.get(f"/ato/uploads/{upload_id}")).text()
    refused = await browser.get(f"/ato/uploads/{upload_id}/rows-to-fix.xlsx")

    assert "rows-to-fix" not in result
    assert refused.status == 403
    assert "submitter role" in await refused.text()
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE kind = 'rows_to_fix_downloaded'"
        )
        == 0
    )


async def test_once_the_file_is_purged_the_page_says_what_to_do_instead(
    make_browser: MakeBrowser,
    portal: tuple[Portal, str],
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
) -> None:
    upload_id = await _partially_accepted(pool, storage_root, ato)
    await pool.execute("UPDATE uploads SET purged_at = now() WHERE upload_id = $1::uuid", upload_id)
    browser = await signed_in_as(make_browser, portal, PRIYA, Role.SUBMITTER, ato)

    response = await browser.get(f"/ato/uploads/{upload_id}/rows-to-fix.csv")

    assert response.status == 410
    page = await response.text()
    assert "We no longer keep the file of this upload" in page
    assert "delete every other row (those were accepted)" in page
    assert f'href="/ato/uploads/{upload_id}"' in page


async def test_a_failed_upload_has_no_rows_to_fix(
    make_browser: MakeBrowser,
    portal: tuple[Portal, str],
    ato: NewKey,
    pool: asyncpg.Pool,
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id, status="failed", encoding="utf-8")
    browser = await signed_in_as(make_browser, portal, PRIYA, Role.SUBMITTER, ato)

    response = await browser.get(f"/ato/uploads/{upload_id}/rows-to-fix.csv")

    assert response.status == 409
    assert "upload your whole file again" in await response.text()
