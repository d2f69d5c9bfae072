"""`achievements upload FILE --wait`: streams the file, retries idempotently, waits for a result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from gateway_helpers import VALID_CSV, Client

from services.upload_client import UploadError, upload_file
from services.upload_gateway.keys import NewKey


async def play_validator(pool: asyncpg.Pool) -> None:
    """Moves the first upload through validating to passed, as a validator would."""
    async with pool.acquire() as connection:
        for _ in range(200):
            if await connection.fetchval("SELECT count(*) FROM uploads"):
                break
            await asyncio.sleep(0.05)
        await connection.execute(
            "UPDATE uploads SET status = 'validating', validation_started_at = now()"
        )
        await asyncio.sleep(0.3)
        await connection.execute(
            "UPDATE uploads SET status = 'passed', validated_at = now(), rows_total = 1,"
            " rows_valid = 1, rows_processed = 1, encoding = 'utf-8'"
        )


async def test_upload_file_waits_for_the_final_status(
    client: Client, ato: NewKey, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "june.csv"
    path.write_bytes(VALID_CSV)
    validator = asyncio.create_task(play_validator(pool))
    result = await upload_file(
        path,
        api_key=ato.api_key,
        gateway_url=str(client.make_url("")),
        policy="valid_rows",
        wait=True,
        timeout_s=30,
        poll_interval_s=0.1,
    )
    await validator
    assert result["status"] == "passed"
    assert result["message"] == "The data is valid"
    assert result["file_name"] == "june.csv"
    assert result["policy"] == "valid_rows"
    assert (result["rows_total"], result["rows_valid"], result["rows_invalid"]) == (1, 1, 0)


async def test_running_the_upload_again_returns_the_same_upload(
    client: Client, ato: NewKey, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "june.csv"
    path.write_bytes(VALID_CSV)
    url = str(client.make_url(""))
    first = await upload_file(path, api_key=ato.api_key, gateway_url=url)
    second = await upload_file(path, api_key=ato.api_key, gateway_url=url)
    assert first["upload_id"] == second["upload_id"]
    assert first["status"] == "received"
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM uploads") == 1
        assert (await connection.fetchval("SELECT idempotency_key FROM uploads")).startswith(
            "sha256:"
        )


async def test_a_refusal_raises_with_the_gateways_code(
    client: Client, ato: NewKey, tmp_path: Path
) -> None:
    path = tmp_path / "june.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(UploadError) as refused:
        await upload_file(path, api_key=ato.api_key, gateway_url=str(client.make_url("")))
    assert (refused.value.status, refused.value.code) == (422, "FILE_01")


async def test_a_wait_that_outlives_its_timeout_raises(
    client: Client, ato: NewKey, tmp_path: Path
) -> None:
    path = tmp_path / "june.csv"
    path.write_bytes(VALID_CSV)
    with pytest.raises(TimeoutError):
        await upload_file(
            path,
            api_key=ato.api_key,
            gateway_url=str(client.make_url("")),
            wait=True,
            timeout_s=0.5,
            poll_interval_s=0.1,
        )
