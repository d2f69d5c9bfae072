"""POST /v1/uploads with the guided workbook (scheme section 9): stored as the bytes sent and
recorded; any other workbook (macros, no marker, a zip bomb) refused at once with nothing
stored or recorded."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from pathlib import Path

import aiohttp
import asyncpg
import openpyxl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from gateway_helpers import bearer, count_uploads, outbox_events, stored_files
from openpyxl.workbook.defined_name import DefinedName

from services.core.scheme.columns import COLUMNS
from services.core.scheme.workbook_records import (
    FILE_01_MACROS,
    FILE_01_NOT_GUIDED,
    FILE_01_OVER_INFLATED,
    TEMPLATE_MARKER,
)
from services.upload_client import upload_file
from services.upload_gateway.intake import XLSX_CONTENT_TYPE
from services.upload_gateway.keys import NewKey

Client = TestClient[web.Request, web.Application]
RAW = {"file_name": "june.xlsx", "terms_accepted": "true"}


def workbook(*, marker: bool = True, added: dict[str, bytes] | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Achievements"
    sheet.append([spec.header for spec in COLUMNS])
    sheet.append(["REF-0001", "SD-WAH-101"])
    if marker:
        book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    saved = io.BytesIO()
    book.save(saved)
    if not added:
        return saved.getvalue()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(saved) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        for name, content in added.items():
            target.writestr(name, content)
    return out.getvalue()


async def test_the_guided_workbook_is_stored_as_sent_and_recorded(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    data = workbook()
    response = await client.post(
        "/v1/uploads",
        data=data,
        params=RAW,
        headers={**bearer(ato), "Content-Type": XLSX_CONTENT_TYPE},
    )
    assert response.status == 202
    body = await response.json()
    assert (body["status"], body["file_name"], body["size_bytes"]) == (
        "received",
        "june.xlsx",
        len(data),
    )
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT storage_key, sha256 FROM uploads WHERE upload_id = $1",
            uuid.UUID(body["upload_id"]),
        )
    assert row is not None
    assert (storage_root / row["storage_key"]).read_bytes() == data
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    assert [e["event_type"] for e in await outbox_events(pool)] == ["upload.received"]


async def test_the_guided_workbook_sent_as_multipart_is_recorded_too(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    form = aiohttp.FormData()
    form.add_field("terms_accepted", "true")
    form.add_field("file", workbook(), filename="june.xlsx", content_type=XLSX_CONTENT_TYPE)
    response = await client.post("/v1/uploads", data=form, headers=bearer(ato))
    assert response.status == 202
    assert await count_uploads(pool) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (workbook(added={"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0 not really"}), FILE_01_MACROS),
        (workbook(marker=False), FILE_01_NOT_GUIDED),
        (workbook(added={"xl/media/image1.png": bytes(8 * 1024 * 1024)}), FILE_01_OVER_INFLATED),
    ],
    ids=["macros", "no-marker", "zip-bomb"],
)
async def test_any_other_workbook_is_refused_at_once_with_nothing_kept(
    client: Client,
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
    content: bytes,
    message: str,
) -> None:
    response = await client.post(
        "/v1/uploads",
        data=content,
        params=RAW,
        headers={**bearer(ato), "Content-Type": XLSX_CONTENT_TYPE},
    )
    assert response.status == 422
    assert await response.json() == {"code": "FILE_01", "message": message}
    assert await count_uploads(pool) == 0
    assert await outbox_events(pool) == []
    assert stored_files(storage_root) == []


async def test_the_upload_command_sends_the_guided_workbook_as_it_is(
    client: Client, ato: NewKey, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "june.xlsx"
    path.write_bytes(workbook())
    upload = await upload_file(path, api_key=ato.api_key, gateway_url=str(client.make_url("")))
    assert (upload["status"], upload["file_name"]) == ("received", "june.xlsx")
    assert await count_uploads(pool) == 1
