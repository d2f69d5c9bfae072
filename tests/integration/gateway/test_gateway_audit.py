"""The audit trail the gateway writes: every upload, error-report download, listing and
withdrawal, and each key's use, with the key and the time; identifiers only."""

from __future__ import annotations

import uuid

import asyncpg
from gateway_helpers import VALID_CSV, Client, bearer, insert_achievement, insert_upload

from services.upload_gateway.keys import NewKey

RAW = {"file_name": "amelia-hartley.csv", "terms_accepted": "true"}


async def trail(pool: asyncpg.Pool) -> list[tuple[str, str | None, uuid.UUID | None, str | None]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT kind, ato_id, key_id, upload_id::text FROM audit_events ORDER BY event_id"
        )
    return [(r["kind"], r["ato_id"], r["key_id"], r["upload_id"]) for r in rows]


async def test_each_action_is_recorded_once_with_its_key_and_the_key_use_once(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    response = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params=RAW,
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    assert response.status == 202
    uploaded = (await response.json())["upload_id"]
    accepted = await insert_upload(pool, ato.ato_id)
    achievement = await insert_achievement(pool, accepted, ato.ato_id)
    for path in (
        f"/v1/uploads/{uploaded}",  # reading a status is not audited
        f"/v1/uploads/{uploaded}/errors",
        f"/v1/uploads/{accepted}/achievements",
    ):
        assert (await client.get(path, headers=bearer(ato))).status == 200
    assert (
        await client.delete(f"/v1/achievements/{achievement}", headers=bearer(ato))
    ).status == 200

    me = (ato.ato_id, ato.key_id)
    assert await trail(pool) == [
        ("key_used", *me, None),
        ("upload_received", *me, uploaded),
        ("error_report_downloaded", *me, uploaded),
        ("achievements_listed", *me, str(accepted)),
        ("achievement_withdrawn", *me, str(accepted)),
    ]


async def test_a_refused_upload_and_a_failed_withdrawal_leave_no_action_in_the_trail(
    client: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    theirs = await insert_upload(pool, other_ato.ato_id)
    achievement = await insert_achievement(pool, theirs, other_ato.ato_id)

    refused = await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params={"file_name": "june.csv"},  # terms not accepted
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    not_mine = await client.delete(f"/v1/achievements/{achievement}", headers=bearer(ato))

    assert (refused.status, not_mine.status) == (422, 404)
    assert [kind for kind, *_ in await trail(pool)] == ["key_used"]
