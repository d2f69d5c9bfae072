"""Amendments: withdrawing an achievement or a whole upload inside the window, and only then."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest
from gateway_helpers import Client, bearer, insert_achievement, insert_upload, outbox_events

from services.upload_gateway.keys import NewKey

PAST = timedelta(minutes=-1)


async def achievement_state(pool: asyncpg.Pool, achievement_id: uuid.UUID) -> tuple[str, bool]:
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT grant_state, withdrawn_at IS NOT NULL AS stamped FROM achievements"
            " WHERE achievement_id = $1",
            achievement_id,
        )
    assert row is not None
    return row["grant_state"], row["stamped"]


async def test_an_achievement_inside_its_window_is_withdrawn_with_an_event(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id)
    achievement_id = await insert_achievement(pool, upload_id, ato.ato_id)
    response = await client.delete(f"/v1/achievements/{achievement_id}", headers=bearer(ato))
    assert response.status == 200
    body = await response.json()
    assert body["grant_state"] == "withdrawn"
    assert body["withdrawn_at"] is not None
    assert await achievement_state(pool, achievement_id) == ("withdrawn", True)
    events = await outbox_events(pool)
    assert [(e["event_type"], e["achievement_id"]) for e in events] == [
        ("claim.withdrawn", str(achievement_id))
    ]


async def test_withdrawing_an_achievement_twice_is_a_conflict(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id)
    achievement_id = await insert_achievement(pool, upload_id, ato.ato_id)
    await client.delete(f"/v1/achievements/{achievement_id}", headers=bearer(ato))
    again = await client.delete(f"/v1/achievements/{achievement_id}", headers=bearer(ato))
    assert again.status == 409
    assert (await again.json())["code"] == "ALREADY_WITHDRAWN"


@pytest.mark.parametrize(
    ("grant_state", "release_in"),
    [("held", PAST), ("claimed", PAST), ("refused", PAST), ("claimed", timedelta(days=1))],
)
async def test_an_achievement_past_its_window_cannot_be_withdrawn(
    client: Client, ato: NewKey, pool: asyncpg.Pool, grant_state: str, release_in: timedelta
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id)
    achievement_id = await insert_achievement(
        pool, upload_id, ato.ato_id, grant_state=grant_state, release_in=release_in
    )
    response = await client.delete(f"/v1/achievements/{achievement_id}", headers=bearer(ato))
    assert response.status == 409
    assert (await response.json())["code"] == "AMENDMENT_WINDOW_CLOSED"
    assert await achievement_state(pool, achievement_id) == (grant_state, False)
    assert await outbox_events(pool) == []


async def test_a_whole_upload_is_withdrawn_inside_the_window(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id, status="partially_accepted")
    held = await insert_achievement(pool, upload_id, ato.ato_id, row_number=2)
    not_eligible = await insert_achievement(
        pool, upload_id, ato.ato_id, row_number=3, grant_state="not_eligible", grant_eligible=False
    )
    response = await client.post(f"/v1/uploads/{upload_id}/withdraw", headers=bearer(ato))
    assert response.status == 200
    body = await response.json()
    assert body["upload_id"] == str(upload_id)
    assert body["withdrawn_at"] is not None
    assert await achievement_state(pool, held) == ("withdrawn", True)
    assert await achievement_state(pool, not_eligible) == ("withdrawn", True)
    events = await outbox_events(pool)
    assert sorted(
        e["achievement_id"] for e in events if e["event_type"] == "claim.withdrawn"
    ) == sorted([str(held), str(not_eligible)])
    [upload_event] = [e for e in events if e["event_type"] == "upload.withdrawn"]
    assert upload_event["achievements_withdrawn"] == 2
    again = await client.post(f"/v1/uploads/{upload_id}/withdraw", headers=bearer(ato))
    assert again.status == 409
    assert (await again.json())["code"] == "ALREADY_WITHDRAWN"
    single = await client.delete(f"/v1/achievements/{held}", headers=bearer(ato))
    assert (await single.json())["code"] == "ALREADY_WITHDRAWN"


async def test_an_upload_with_a_released_achievement_is_not_withdrawn_at_all(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id)
    held = await insert_achievement(pool, upload_id, ato.ato_id, row_number=2)
    await insert_achievement(pool, upload_id, ato.ato_id, row_number=3, release_in=PAST)
    response = await client.post(f"/v1/uploads/{upload_id}/withdraw", headers=bearer(ato))
    assert response.status == 409
    assert (await response.json())["code"] == "AMENDMENT_WINDOW_CLOSED"
    assert await achievement_state(pool, held) == ("held", False)
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT withdrawn_at FROM uploads WHERE upload_id = $1", upload_id
            )
            is None
        )
    assert await outbox_events(pool) == []


@pytest.mark.parametrize("status", ["received", "validating", "rejected", "failed"])
async def test_an_upload_that_was_not_accepted_cannot_be_withdrawn(
    client: Client, ato: NewKey, pool: asyncpg.Pool, status: str
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id, status=status)
    response = await client.post(f"/v1/uploads/{upload_id}/withdraw", headers=bearer(ato))
    assert response.status == 409
    assert (await response.json())["code"] == "UPLOAD_NOT_ACCEPTED"


async def test_a_withdrawal_waits_for_a_bridge_holding_the_row_and_then_sees_its_claim(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    """The row lock orders a withdrawal after a claim in progress: no double outcome."""
    import asyncio

    upload_id = await insert_upload(pool, ato.ato_id)
    achievement_id = await insert_achievement(pool, upload_id, ato.ato_id)
    async with pool.acquire() as bridge:
        transaction = bridge.transaction()
        await transaction.start()
        await bridge.execute(
            "SELECT 1 FROM achievements WHERE achievement_id = $1 FOR UPDATE", achievement_id
        )
        withdrawal = asyncio.create_task(
            client.delete(f"/v1/achievements/{achievement_id}", headers=bearer(ato))
        )
        await asyncio.sleep(0.3)
        assert not withdrawal.done()  # blocked on the bridge's lock
        await bridge.execute(
            "UPDATE achievements SET grant_state = 'claimed', claimed_at = now()"
            " WHERE achievement_id = $1",
            achievement_id,
        )
        await transaction.commit()
    response = await withdrawal
    assert response.status == 409
    assert (await response.json())["code"] == "AMENDMENT_WINDOW_CLOSED"
    assert await achievement_state(pool, achievement_id) == ("claimed", False)
