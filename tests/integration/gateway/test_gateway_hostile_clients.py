"""Clients that push the gateway's limits: many or huge multipart parts, one ATO's burst of
uploads, a full disk, a stalled body or an idle connection, and bodies on routes that take none."""

from __future__ import annotations

import asyncio
import errno
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from gateway_helpers import (
    VALID_CSV,
    Client,
    ClientFactory,
    bearer,
    count_uploads,
    gateway_settings_for,
    stored_files,
)

from services.core.storage import folder as folder_storage
from services.upload_gateway.app import create_app, runner_options
from services.upload_gateway.appkeys import UPLOAD_SLOTS
from services.upload_gateway.keys import NewKey

RAW = {"file_name": "june.csv", "terms_accepted": "true"}
CSV = {"Content-Type": "text/csv"}
MULTIPART = {"Content-Type": "multipart/form-data; boundary=B"}
TERMS_PART = b'--B\r\nContent-Disposition: form-data; name="terms_accepted"\r\n\r\ntrue\r\n'
FILE_PART = (
    b'--B\r\nContent-Disposition: form-data; name="file"; filename="june.csv"\r\n'
    b"Content-Type: text/csv\r\n\r\n" + VALID_CSV + b"\r\n"
)
END = b"--B--\r\n"


def ignored_part(size: int, name: str = "junk") -> bytes:
    header = f'--B\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
    return header + b"x" * size + b"\r\n"


async def assert_nothing_kept(pool: asyncpg.Pool, storage_root: Path) -> None:
    assert stored_files(storage_root) == []
    assert await count_uploads(pool) == 0


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


async def raw_exchange(
    host: str, port: int, request: bytes, timeout_s: float = 5.0
) -> tuple[bytes, bytes]:
    """Sends `request` as is on a fresh connection (and then nothing); the answer's head and
    body, which must come within `timeout_s`."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            return await read_response(reader)
    finally:
        writer.close()


# 1. Multipart parts and the whole body are capped, whatever the framing.


async def test_more_multipart_parts_than_the_cap_are_refused(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    client = await make_client(max_multipart_parts=16)
    body = TERMS_PART + FILE_PART + b"".join(ignored_part(1, f"p{i}") for i in range(200)) + END
    response = await client.post("/v1/uploads", data=body, headers={**bearer(ato), **MULTIPART})
    assert response.status == 413
    payload = await response.json()
    assert payload["code"] == "FILE_03"
    assert "16 parts" in payload["message"]
    await assert_nothing_kept(pool, storage_root)


async def test_the_part_cap_counts_parts_and_allows_a_normal_form(
    make_client: ClientFactory, ato: NewKey
) -> None:
    client = await make_client(max_multipart_parts=3)
    body = TERMS_PART + FILE_PART + ignored_part(10) + END
    response = await client.post("/v1/uploads", data=body, headers={**bearer(ato), **MULTIPART})
    assert response.status == 202


async def test_a_huge_ignored_part_in_a_chunked_body_is_cut_off_and_the_file_removed(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    # The file arrives first and is stored; the 8 MB part after it is never asked for.
    client = await make_client(max_upload_bytes=64 * 1024)
    total_bytes = 8 * 1024 * 1024
    sent_bytes = 0

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal sent_bytes
        yield TERMS_PART + FILE_PART + b'--B\r\nContent-Disposition: form-data; name="junk"\r\n\r\n'
        while sent_bytes < total_bytes:
            sent_bytes += 64 * 1024
            yield b"x" * 64 * 1024
        yield b"\r\n" + END

    response = await client.post("/v1/uploads", data=body(), headers={**bearer(ato), **MULTIPART})
    assert response.status == 413
    assert (await response.json())["code"] == "FILE_03"
    assert sent_bytes < total_bytes  # stopped soon after the 1 MB envelope allowance
    await assert_nothing_kept(pool, storage_root)


# 2. Concurrent uploads per ATO.


async def test_an_atos_upload_over_its_concurrency_limit_gets_429_and_others_are_unaffected(
    make_client: ClientFactory, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    client = await make_client(max_concurrent_uploads_per_ato=2, upload_retry_after_s=7)
    slots = client.app[UPLOAD_SLOTS]
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield VALID_CSV
        await go_on.wait()

    async def slow_upload() -> int:
        response = await client.post(
            "/v1/uploads", data=slow_body(), params=RAW, headers={**bearer(ato), **CSV}
        )
        return response.status

    slow = [asyncio.create_task(slow_upload()) for _ in range(2)]
    async with asyncio.timeout(10):
        while slots.in_flight(ato.ato_id) < 2:
            await asyncio.sleep(0.01)
    refused = await client.post(
        "/v1/uploads", data=VALID_CSV, params=RAW, headers={**bearer(ato), **CSV}
    )
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "7"
    assert (await refused.json())["code"] == "TOO_MANY_UPLOADS"
    other = await client.post(
        "/v1/uploads", data=VALID_CSV, params=RAW, headers={**bearer(other_ato), **CSV}
    )
    assert other.status == 202
    go_on.set()
    assert await asyncio.gather(*slow) == [202, 202]
    assert slots.in_flight(ato.ato_id) == 0
    again = await client.post(
        "/v1/uploads", data=VALID_CSV, params=RAW, headers={**bearer(ato), **CSV}
    )
    assert again.status == 202
    assert await count_uploads(pool) == 4


# 3. Disk space.


async def test_too_little_free_disk_is_507_before_anything_is_written(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    client = await make_client(min_free_disk_bytes=10**18)
    response = await client.post(
        "/v1/uploads", data=VALID_CSV, params=RAW, headers={**bearer(ato), **CSV}
    )
    assert response.status == 507
    assert (await response.json())["code"] == "INSUFFICIENT_STORAGE"
    await assert_nothing_kept(pool, storage_root)


@pytest.mark.parametrize("multipart", [False, True])
async def test_a_disk_that_fills_while_writing_is_507_and_the_partial_file_removed(
    make_client: ClientFactory,
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    multipart: bool,
) -> None:
    def disk_full(out: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder_storage, "_flush_to_disk", disk_full)
    client = await make_client()
    if multipart:
        response = await client.post(
            "/v1/uploads", data=TERMS_PART + FILE_PART + END, headers={**bearer(ato), **MULTIPART}
        )
    else:
        response = await client.post(
            "/v1/uploads", data=VALID_CSV, params=RAW, headers={**bearer(ato), **CSV}
        )
    assert response.status == 507
    assert (await response.json())["code"] == "INSUFFICIENT_STORAGE"
    await assert_nothing_kept(pool, storage_root)


# 4. Read and keep-alive timeouts.


@pytest.mark.parametrize("multipart", [False, True])
async def test_a_client_that_stops_sending_mid_body_is_cut_off(
    make_client: ClientFactory,
    ato: NewKey,
    pool: asyncpg.Pool,
    storage_root: Path,
    multipart: bool,
) -> None:
    client = await make_client(body_read_timeout_s=0.5)
    if multipart:
        target, content_type, sent = "/v1/uploads", MULTIPART["Content-Type"], TERMS_PART
    else:
        target = "/v1/uploads?file_name=june.csv&terms_accepted=true"
        content_type, sent = "text/csv", VALID_CSV
    head = (
        f"POST {target} HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: Bearer {ato.api_key}\r\nContent-Type: {content_type}\r\n"
        "Content-Length: 100000\r\n\r\n"
    ).encode()
    port = client.server.port
    assert port is not None
    answer, payload = await raw_exchange(client.server.host, port, head + sent)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in answer
    assert json.loads(payload)["code"] == "REQUEST_TIMEOUT"
    await assert_nothing_kept(pool, storage_root)


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(
    database_url: str, storage_root: Path
) -> None:
    settings = gateway_settings_for(database_url, storage_root, keepalive_timeout_s=0.5)
    server = TestServer(create_app(settings))
    await server.start_server(**runner_options(settings))
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(5):
                head, _ = await read_response(reader)
                assert head.startswith(b"HTTP/1.1 200 ")
                # Idle from here: the server closes the connection (EOF) within the timeout.
                assert await reader.read() == b""
        finally:
            writer.close()
    finally:
        await server.close()


# 5. Bodies on routes that take none (or JSON).


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"reason": "' + b"x" * 200_000 + b'"}', "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"reason": ', "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (b"y" * 200_000, "text/plain"),
    ],
    ids=["oversized", "deeply-nested", "malformed", "not-utf8", "oversized-not-json"],
)
async def test_a_bad_body_on_a_json_endpoint_is_400(
    client: Client, ato: NewKey, body: bytes, content_type: str
) -> None:
    for method, path in (
        ("POST", f"/v1/uploads/{uuid.uuid4()}/withdraw"),
        ("DELETE", f"/v1/achievements/{uuid.uuid4()}"),
    ):
        response = await client.request(
            method, path, data=body, headers={**bearer(ato), "Content-Type": content_type}
        )
        assert response.status == 400, (method, path)
        assert (await response.json())["code"] == "INVALID_BODY"


async def test_a_small_well_formed_json_body_passes_through(client: Client, ato: NewKey) -> None:
    response = await client.post(
        f"/v1/uploads/{uuid.uuid4()}/withdraw",
        data=b'{"reason": [1, {"a": "[[[["}]}',
        headers={**bearer(ato), "Content-Type": "application/json"},
    )
    assert response.status == 404  # the body was fine; the upload does not exist


async def test_a_chunked_oversized_body_on_a_json_endpoint_is_400(
    client: Client, ato: NewKey
) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b" " * 16 * 1024

    response = await client.post(
        f"/v1/uploads/{uuid.uuid4()}/withdraw",
        data=body(),
        headers={**bearer(ato), "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "INVALID_BODY"
