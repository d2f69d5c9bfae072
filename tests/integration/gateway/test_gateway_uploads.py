"""POST /v1/uploads: raw and multipart bodies, terms, policies, refusals, the outbox event."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
import structlog.testing
from aiohttp import web
from aiohttp.test_utils import TestClient
from gateway_helpers import VALID_CSV, bearer, count_uploads, outbox_events, stored_files

from services.upload_gateway.keys import NewKey

Client = TestClient[web.Request, web.Application]
RAW = {"file_name": "june.csv", "terms_accepted": "true"}


async def test_raw_csv_upload_is_recorded_with_its_event_in_the_outbox(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params=RAW,
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    body = await response.json()
    assert response.headers["Location"] == f"/v1/uploads/{body['upload_id']}"
    assert body["status"] == "received"
    assert body["file_name"] == "june.csv"
    assert body["size_bytes"] == len(VALID_CSV)
    assert body["policy"] == "all_or_nothing"  # the ATO's default
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT * FROM uploads WHERE upload_id = $1", uuid.UUID(body["upload_id"])
        )
    assert row is not None
    assert row["ato_id"] == ato.ato_id
    assert row["upload_date"] == datetime.now(ZoneInfo("Europe/London")).date()
    assert row["terms_accepted_at"] is not None
    stored = storage_root / row["storage_key"]
    assert stored.read_bytes() == VALID_CSV
    import hashlib

    assert row["sha256"] == hashlib.sha256(VALID_CSV).hexdigest()
    events = await outbox_events(pool)
    assert [e["event_type"] for e in events] == ["upload.received"]
    assert events[0]["upload_id"] == body["upload_id"]
    assert events[0]["storage_key"] == row["storage_key"]
    assert events[0]["upload_date"] == row["upload_date"].isoformat()


async def test_the_policy_parameter_overrides_the_atos_default(client: Client, ato: NewKey) -> None:
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params={**RAW, "policy": "valid_rows"},
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    assert (await response.json())["policy"] == "valid_rows"


async def test_an_unknown_policy_is_refused(client: Client, ato: NewKey) -> None:
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params={**RAW, "policy": "some_rows"},
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "INVALID_POLICY"


@pytest.mark.parametrize("fields_first", [True, False])
async def test_multipart_upload_reads_fields_before_or_after_the_file(
    client: Client, other_ato: NewKey, pool: asyncpg.Pool, fields_first: bool
) -> None:
    form = aiohttp.FormData()
    fields = [("terms_accepted", "true"), ("file_name", "july.csv"), ("policy", "all_or_nothing")]
    if fields_first:
        for name, value in fields:
            form.add_field(name, value)
    form.add_field("file", VALID_CSV, filename="C:\\Users\\me\\export.csv", content_type="text/csv")
    if not fields_first:
        for name, value in fields:
            form.add_field(name, value)
    response = await client.post("/v1/uploads", data=form, headers=bearer(other_ato))
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body["file_name"] == "july.csv"
    assert body["policy"] == "all_or_nothing"
    assert body["size_bytes"] == len(VALID_CSV)
    assert await count_uploads(pool) == 1


async def test_multipart_without_file_name_uses_the_parts_name_not_its_path(
    client: Client, ato: NewKey
) -> None:
    # Built by hand: a browser sends the name as typed, path separators and all.
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="file"; filename="..\\..\\etc/passwd.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n" + VALID_CSV + b"\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="terms_accepted"\r\n\r\n'
        b"true\r\n"
        b"--XyZ--\r\n"
    )
    response = await client.post(
        "/v1/uploads",
        data=body,
        headers={**bearer(ato), "Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status == 202, await response.text()
    uploaded = await response.json()
    assert uploaded["file_name"] == "passwd.csv"
    assert uploaded["size_bytes"] == len(VALID_CSV)


async def test_a_malformed_multipart_body_is_a_json_400(client: Client, ato: NewKey) -> None:
    response = await client.post(
        "/v1/uploads",
        data=b"no boundary here",
        headers={**bearer(ato), "Content-Type": "multipart/form-data"},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("terms", [None, "false", "no"])
async def test_terms_must_be_accepted_and_nothing_is_recorded_otherwise(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path, terms: str | None
) -> None:
    params = {"file_name": "june.csv"} | ({"terms_accepted": terms} if terms else {})
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params=params,
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 422
    assert (await response.json())["code"] == "TERMS_NOT_ACCEPTED"
    assert await count_uploads(pool) == 0
    assert stored_files(storage_root) == []


async def test_multipart_terms_refused_after_the_file_removes_the_stored_file(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", VALID_CSV, filename="june.csv", content_type="text/csv")
    form.add_field("terms_accepted", "false")
    response = await client.post("/v1/uploads", data=form, headers=bearer(ato))
    assert response.status == 422
    assert (await response.json())["code"] == "TERMS_NOT_ACCEPTED"
    assert await count_uploads(pool) == 0
    assert stored_files(storage_root) == []


async def test_multipart_without_a_file_part_is_refused(client: Client, ato: NewKey) -> None:
    form = aiohttp.FormData()
    form.add_field("terms_accepted", "true")
    form.add_field("notes", "x", filename="x.txt")  # a file part under another name is ignored
    response = await client.post("/v1/uploads", data=form, headers=bearer(ato))
    assert response.status == 400
    assert (await response.json())["code"] == "FILE_MISSING"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"PK\x03\x04" + b"\x14\x00" * 100, "FILE_01"),  # .xlsx
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "FILE_01"),  # .xls
        ("CourseCode\r\n".encode("utf-16"), "FILE_01"),  # NUL bytes
        (b"", "FILE_02"),
        (b"\xef\xbb\xbf", "FILE_02"),
        (b" \r\n\t \n", "FILE_02"),
    ],
)
async def test_workbooks_binary_and_empty_files_are_refused_with_the_scheme_code(
    client: Client,
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
    content: bytes,
    code: str,
) -> None:
    response = await client.post(
        "/v1/uploads", data=content, params=RAW, headers={**bearer(ato), "Content-Type": "text/csv"}
    )
    assert response.status == 422
    body = await response.json()
    assert body["code"] == code
    if code == "FILE_01":
        assert "CSV (Comma delimited)" in body["message"]
    assert await count_uploads(pool) == 0
    assert await outbox_events(pool) == []
    assert stored_files(storage_root) == []


async def test_a_workbook_sent_as_multipart_is_refused_too(
    client: Client, ato: NewKey, storage_root: Path
) -> None:
    form = aiohttp.FormData()
    form.add_field("terms_accepted", "true")
    form.add_field("file", b"PK\x03\x04rest-of-zip", filename="june.xlsx")
    response = await client.post("/v1/uploads", data=form, headers=bearer(ato))
    assert response.status == 422
    assert (await response.json())["code"] == "FILE_01"
    assert stored_files(storage_root) == []


async def test_an_unsupported_content_type_is_415(client: Client, ato: NewKey) -> None:
    response = await client.post(
        "/v1/uploads",
        data=b"{}",
        params=RAW,
        headers={**bearer(ato), "Content-Type": "application/json"},
    )
    assert response.status == 415
    assert (await response.json())["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_an_upload_logs_ids_and_sizes_but_no_learner_data(
    client: Client, ato: NewKey
) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await client.post(
            "/v1/uploads",
            data=VALID_CSV,
            params={"file_name": "Ann Smith 1000000043.csv", "terms_accepted": "true"},
            headers={**bearer(ato), "Content-Type": "text/csv"},
        )
    assert response.status == 202
    [received] = [entry for entry in logs if entry["event"] == "upload_received"]
    assert received["upload_id"] == (await response.json())["upload_id"]
    assert received["size_bytes"] == len(VALID_CSV)
    logged = repr(logs)
    for personal in ("Ann", "Smith", "1000000043", "1990"):
        assert personal not in logged


async def test_a_malformed_part_header_is_a_json_400(
    client: Client, ato: NewKey, storage_root: Path
) -> None:
    """Found by the schemathesis run: aiohttp raises its own error for a bad part header."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="a\x0bb"\r\n\r\nx\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="f.csv"\r\n\r\n'
        + VALID_CSV
        + b"\r\n--B--\r\n"
    )
    response = await client.post(
        "/v1/uploads",
        data=body,
        params={"terms_accepted": "true"},
        headers={**bearer(ato), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "BAD_REQUEST"
    assert stored_files(storage_root) == []
