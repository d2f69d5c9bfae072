"""The rows to fix through the API (scheme section 9): download them from a partially accepted
upload, correct them, upload that file, and every row ends accepted once, with no DUP_02.

The validator runs in-process on the gateway's storage, as its chunk workers would."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from gateway_helpers import HEADER, bearer
from openpyxl import load_workbook

from services.core.events import Topics
from services.core.reference_store import ReferenceCache
from services.core.settings import CommonSettings, StorageSettings
from services.core.storage import FolderStorage
from services.upload_gateway.intake import XLSX_CONTENT_TYPE
from services.upload_gateway.keys import NewKey
from services.validator.chunk_worker import ChunkWorker
from services.validator.planner import plan_upload
from services.validator.settings import ValidatorSettings

Client = TestClient[web.Request, web.Application]
RAW = {"file_name": "june.csv", "terms_accepted": "true", "policy": "valid_rows"}


def _day() -> str:
    """Three days before the upload date: no ACHDATE_02 or ACHDATE_03."""
    return (datetime.now(ZoneInfo("Europe/London")).date() - timedelta(days=3)).strftime("%d/%m/%Y")


def _upload_file() -> bytes:
    """Row 2 valid; row 3 ULN_03; row 4 NINO_02, a name with accents and a quoted note; row 5
    repeats row 2 (DUP_01); row 6 valid."""
    day = _day()
    rows = [
        f"R2,SD-WAH-101,{day},Amelia,Hartley,14/03/1990,1000000043,,,79049946,",
        f"R3,SD-WAH-101,{day},Oliver,Bennett,01/02/1985,1234567890,,,79049946,",
        f'R4,SD-WAH-101,{day},Zoë,Ó Briain,02/02/1980,,QQ123456C,,79049946,"Late, booked"',
        f"R5,SD-WAH-101,{day},Amelia,Hartley,14/03/1990,1000000043,,,79049946,",
        f"R6,SD-WAH-101,{day},Noah,Clarke,03/03/1979,5555555554,,,79049946,",
    ]
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode("utf-8")


async def _upload(client: Client, ato: NewKey, content: bytes) -> uuid.UUID:
    response = await client.post(
        "/v1/uploads",
        data=content,
        params=RAW,
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 202, await response.text()
    return uuid.UUID((await response.json())["upload_id"])


async def _validate(pool: asyncpg.Pool, storage_root: Path, upload_id: uuid.UUID) -> None:
    settings = ValidatorSettings(common=CommonSettings(storage=StorageSettings(root=storage_root)))
    topics = Topics("unused.")
    await plan_upload(pool, FolderStorage(storage_root), settings, topics, upload_id)
    await ChunkWorker(settings, pool, topics, ReferenceCache(pool)).run_until_idle()


async def _upload_row(pool: asyncpg.Pool, upload_id: uuid.UUID) -> dict[str, Any]:
    async with pool.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", upload_id)
    assert row is not None
    return dict(row.items())


async def _partially_accepted(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> uuid.UUID:
    upload_id = await _upload(client, ato, _upload_file())
    await _validate(pool, storage_root, upload_id)
    upload = await _upload_row(pool, upload_id)
    assert upload["status"] == "partially_accepted"
    assert (upload["rows_total"], upload["rows_valid"]) == (5, 2)
    return upload_id


async def test_download_fix_and_upload_again_accepts_every_row_once(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    first = await _partially_accepted(client, ato, pool, storage_root)

    response = await client.get(f"/v1/uploads/{first}/rows-to-fix.csv", headers=bearer(ato))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="upload-{first}-rows-to-fix.csv"'
    )
    assert (response.headers["X-Rows-To-Fix"], response.headers["X-Duplicates-Left-Out"]) == (
        "2",
        "1",
    )
    text = (await response.read()).decode("utf-8")
    day = _day()
    lines = text.removeprefix("\ufeff").split("\r\n")
    assert lines[1] == (
        '"# In your file these were rows 3-4, in this order. The problems are in the error'
        ' report, by those row numbers."'
    )
    assert lines[2] == (
        '"# Left out: row 5 of your file, which repeats an earlier row of the file (DUP_01) or'
        ' an achievement already accepted (DUP_02). It needs no fixing: do not send it again."'
    )
    assert lines[3:] == [
        HEADER,
        f"R3,SD-WAH-101,{day},Oliver,Bennett,01/02/1985,1234567890,,,79049946,",
        f'R4,SD-WAH-101,{day},Zoë,Ó Briain,02/02/1980,,QQ123456C,,79049946,"Late, booked"',
        "",
    ]

    fixed = text.replace("1234567890", "1234567899").replace("QQ123456C", "AB123456C")
    second = await _upload(client, ato, fixed.encode("utf-8"))
    await _validate(pool, storage_root, second)
    upload = await _upload_row(pool, second)
    assert upload["status"] == "passed"
    assert (upload["rows_total"], upload["rows_valid"]) == (2, 2)
    assert "DUP_02" not in (upload["counts_by_code"] or {})
    async with pool.acquire() as connection:
        accepted = await connection.fetch(
            "SELECT provider_reference, upload_id, row_number FROM achievements"
            " WHERE ato_id = $1 ORDER BY provider_reference",
            ato.ato_id,
        )
        trail = await connection.fetch(
            "SELECT key_id, upload_id FROM audit_events WHERE kind = 'rows_to_fix_downloaded'"
        )
    # The fixed file's header is row 4 (three guidance records above it).
    assert [(r["provider_reference"], r["upload_id"], r["row_number"]) for r in accepted] == [
        ("R2", first, 2),
        ("R3", second, 5),
        ("R4", second, 6),
        ("R6", first, 6),
    ]
    assert [(r["key_id"], r["upload_id"]) for r in trail] == [(ato.key_id, first)]


async def test_the_workbook_carries_the_problems_as_comments(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    upload_id = await _partially_accepted(client, ato, pool, storage_root)
    response = await client.get(f"/v1/uploads/{upload_id}/rows-to-fix.xlsx", headers=bearer(ato))
    assert response.status == 200
    assert response.headers["Content-Type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    workbook = load_workbook(io.BytesIO(await response.read()))
    sheet = workbook["Achievements"]
    assert [sheet.cell(row=row, column=1).value for row in (4, 5, 6)] == [
        "ProviderReference",
        "R3",
        "R4",
    ]
    uln, nino = sheet["G5"].comment, sheet["H6"].comment
    assert uln is not None
    assert uln.text.startswith("ULN_03: ")
    assert nino is not None
    assert nino.text.startswith("NINO_02: ")
    first = sheet["A5"].comment
    assert first is not None
    assert first.text == "Row 3 of your file."

    # Corrected in a spreadsheet and uploaded as it is: the guided workbook's marker is there.
    sheet["G5"].value = "1234567899"
    sheet["H6"].value = "AB123456C"
    fixed = io.BytesIO()
    workbook.save(fixed)
    response = await client.post(
        "/v1/uploads",
        data=fixed.getvalue(),
        params={**RAW, "file_name": "rows-to-fix.xlsx"},
        headers={**bearer(ato), "Content-Type": XLSX_CONTENT_TYPE},
    )
    assert response.status == 202, await response.text()
    second = uuid.UUID((await response.json())["upload_id"])
    await _validate(pool, storage_root, second)
    upload = await _upload_row(pool, second)
    assert (upload["status"], upload["encoding"], upload["rows_valid"]) == ("passed", "xlsx", 2)


async def test_only_a_partially_accepted_upload_has_rows_to_fix(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    content = _upload_file().split(b"\r\n")
    passed = await _upload(client, ato, b"\r\n".join([content[0], content[1], b""]))
    await _validate(pool, storage_root, passed)
    response = await client.get(f"/v1/uploads/{passed}/rows-to-fix.csv", headers=bearer(ato))
    assert response.status == 409
    body = await response.json()
    assert body["code"] == "NO_ROWS_TO_FIX"
    assert "this one is 'passed'" in body["message"]


async def test_another_atos_upload_is_not_found(
    client: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    upload_id = await _partially_accepted(client, ato, pool, storage_root)
    response = await client.get(
        f"/v1/uploads/{upload_id}/rows-to-fix.xlsx", headers=bearer(other_ato)
    )
    assert response.status == 404
    assert (await response.json())["code"] == "NOT_FOUND"


async def test_once_the_file_is_purged_the_answer_says_so(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    upload_id = await _partially_accepted(client, ato, pool, storage_root)
    upload = await _upload_row(pool, upload_id)
    (storage_root / upload["storage_key"]).unlink()  # the file gone, the row not yet marked
    response = await client.get(f"/v1/uploads/{upload_id}/rows-to-fix.csv", headers=bearer(ato))
    assert response.status == 410
    assert (await response.json())["code"] == "FILE_PURGED"

    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE uploads SET purged_at = now() WHERE upload_id = $1", upload_id
        )
    response = await client.get(f"/v1/uploads/{upload_id}/rows-to-fix.xlsx", headers=bearer(ato))
    assert response.status == 410
    body = await response.json()
    assert body["code"] == "FILE_PURGED"
    assert "no longer kept" in body["message"]
    async with pool.acquire() as connection:
        downloads = await connection.fetchval(
            "SELECT count(*) FROM audit_events WHERE kind = 'rows_to_fix_downloaded'"
        )
    assert downloads == 0  # nothing was handed over
