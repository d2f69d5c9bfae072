"""Idempotent retries (also under concurrency) and the size limit enforced while streaming."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from gateway_helpers import (
    VALID_CSV,
    ClientFactory,
    bearer,
    count_uploads,
    outbox_events,
    stored_files,
)

from services.upload_gateway.keys import NewKey

Client = TestClient[web.Request, web.Application]
RAW = {"file_name": "june.csv", "terms_accepted": "true"}
CSV = {"Content-Type": "text/csv"}


async def test_a_retry_with_the_same_key_and_bytes_returns_the_first_upload(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    headers = {**bearer(ato), **CSV, "Idempotency-Key": "june-2026"}
    first = await client.post("/v1/uploads", data=VALID_CSV, params=RAW, headers=headers)
    retry = await client.post("/v1/uploads", data=VALID_CSV, params=RAW, headers=headers)
    assert (first.status, retry.status) == (202, 200)
    first_body, retry_body = await first.json(), await retry.json()
    assert retry_body["upload_id"] == first_body["upload_id"]
    assert retry.headers["Location"] == first.headers["Location"]
    assert await count_uploads(pool) == 1
    assert len(await outbox_events(pool)) == 1
    assert len(stored_files(storage_root)) == 1


async def test_the_same_key_with_different_bytes_is_a_conflict(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    headers = {**bearer(ato), **CSV, "Idempotency-Key": "june-2026"}
    first = await client.post("/v1/uploads", data=VALID_CSV, params=RAW, headers=headers)
    other = await client.post(
        "/v1/uploads", data=VALID_CSV + b"R2,X,,,,,,,,,\r\n", params=RAW, headers=headers
    )
    assert first.status == 202
    assert other.status == 409
    assert (await other.json())["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await count_uploads(pool) == 1
    assert len(stored_files(storage_root)) == 1


async def test_the_same_key_is_independent_per_ato(
    client: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    for key in (ato, other_ato):
        response = await client.post(
            "/v1/uploads",
            data=VALID_CSV,
            params=RAW,
            headers={**bearer(key), **CSV, "Idempotency-Key": "k"},
        )
        assert response.status == 202
    assert await count_uploads(pool) == 2


async def test_ten_simultaneous_identical_requests_make_one_upload(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    # All ten in flight at once: above the default per-ATO limit, which is not under test here.
    client = await make_client(max_concurrent_uploads_per_ato=10)
    headers = {**bearer(ato), **CSV, "Idempotency-Key": "burst"}

    async def send() -> tuple[int, str]:
        response = await client.post("/v1/uploads", data=VALID_CSV, params=RAW, headers=headers)
        return response.status, (await response.json())["upload_id"]

    results = await asyncio.gather(*(send() for _ in range(10)))
    assert sorted(status for status, _ in results) == [200] * 9 + [202]
    assert len({upload_id for _, upload_id in results}) == 1
    assert await count_uploads(pool) == 1
    assert [e["event_type"] for e in await outbox_events(pool)] == ["upload.received"]
    assert len(stored_files(storage_root)) == 1


async def test_an_idempotency_key_longer_than_255_characters_is_refused(
    client: Client, ato: NewKey
) -> None:
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params=RAW,
        headers={**bearer(ato), **CSV, "Idempotency-Key": "k" * 256},
    )
    assert response.status == 400
    assert (await response.json())["code"] == "INVALID_IDEMPOTENCY_KEY"


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    client = await make_client(max_upload_bytes=1024)
    response = await client.post(
        "/v1/uploads", data=b"a" * 2048, params=RAW, headers={**bearer(ato), **CSV}
    )
    assert response.status == 413
    assert (await response.json())["code"] == "FILE_03"
    assert await count_uploads(pool) == 0
    assert stored_files(storage_root) == []


async def test_a_file_of_exactly_the_limit_is_accepted(
    make_client: ClientFactory, ato: NewKey
) -> None:
    client = await make_client(max_upload_bytes=len(VALID_CSV))
    response = await client.post(
        "/v1/uploads", data=VALID_CSV, params=RAW, headers={**bearer(ato), **CSV}
    )
    assert response.status == 202


async def test_a_body_larger_than_aiohttps_default_buffer_is_streamed_and_accepted(
    client: Client, ato: NewKey, storage_root: Path
) -> None:
    big = VALID_CSV + b"R9,SMSTS-R,01/03/2026,Ann,Smith,01/01/1990,1000000043,,,,\r\n" * 60_000
    assert len(big) > 3 * 1024 * 1024  # aiohttp would refuse a buffered body over 1 MB
    response = await client.post(
        "/v1/uploads", data=big, params=RAW, headers={**bearer(ato), **CSV}
    )
    assert response.status == 202
    assert (await response.json())["size_bytes"] == len(big)
    [stored] = stored_files(storage_root)
    assert stored.stat().st_size == len(big)


async def test_a_streamed_body_over_the_limit_is_cut_off_with_memory_flat(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    limit_bytes = 4 * 1024 * 1024
    client = await make_client(max_upload_bytes=limit_bytes)
    chunk = (b"ABC-123,SMSTS-R,01/03/2026,Ann,Smith,01/01/1990,1000000043,,,,\r\n" * 1024)[
        : 64 * 1024
    ]
    sent_bytes = 0

    async def body() -> AsyncIterator[bytes]:
        # No Content-Length: the server only learns the size by reading (chunked encoding).
        nonlocal sent_bytes
        yield VALID_CSV
        while sent_bytes < 3 * limit_bytes:
            sent_bytes += len(chunk)
            yield chunk

    tracemalloc.start()
    try:
        response = await client.post(
            "/v1/uploads", data=body(), params=RAW, headers={**bearer(ato), **CSV}
        )
        status, payload = response.status, await response.json()
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert payload["code"] == "FILE_03"
    # The server stopped reading soon after the limit rather than taking all 12 MB.
    assert sent_bytes < 3 * limit_bytes
    # Nothing near the body's size was ever held in memory (client and server together).
    assert peak_bytes < limit_bytes
    assert stored_files(storage_root) == []
    assert await count_uploads(pool) == 0
    assert await outbox_events(pool) == []


async def test_a_multipart_file_over_the_limit_is_cut_off(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    client = await make_client(max_upload_bytes=64 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield (
            b'--B\r\nContent-Disposition: form-data; name="terms_accepted"\r\n\r\ntrue\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\n"
        )
        for _ in range(8):
            yield b"x" * 32 * 1024
        yield b"\r\n--B--\r\n"

    response = await client.post(
        "/v1/uploads",
        data=body(),
        headers={**bearer(ato), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert response.status == 413
    assert (await response.json())["code"] == "FILE_03"
    assert stored_files(storage_root) == []
    assert await count_uploads(pool) == 0
