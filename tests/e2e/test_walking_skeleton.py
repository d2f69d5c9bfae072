"""One upload through every hop: gateway, Kafka, validators, bridge, the grant stand-in."""

from __future__ import annotations

import asyncio
from datetime import date

import asyncpg

from services.demo import write_sample
from tests.e2e.conftest import Pipeline


async def test_sample_upload_passes_and_each_achievement_is_claimed_once(
    make_pipeline, tmp_path
) -> None:
    pipeline: Pipeline = await make_pipeline(GRANT_BRIDGE_AMENDMENT_WINDOW_S="1")
    _, api_key = await pipeline.create_ato()
    sample = write_sample(tmp_path, date.today())

    accepted = await pipeline.upload(sample.read_bytes(), api_key, file_name="june.csv")
    upload = await pipeline.wait_final(accepted["upload_id"], api_key)

    assert upload["status"] == "passed"
    assert upload["file_name"] == "june.csv"
    assert (upload["rows_total"], upload["rows_valid"], upload["rows_invalid"]) == (8, 8, 0)
    claims = []
    for _ in range(120):
        claims = await pipeline.standin_claims(upload["upload_id"])
        if len(claims) >= 8:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # anything sent twice would show up now
    claims = await pipeline.standin_claims(upload["upload_id"])
    assert sorted(c["row_number"] for c in claims) == list(range(2, 10))
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        states = await connection.fetch(
            "SELECT row_number, grant_state FROM achievements WHERE upload_id = $1",
            upload["upload_id"],
        )
    finally:
        await connection.close()
    assert {r["grant_state"] for r in states} == {"claimed"}
