"""API keys: required on every ATO route, and every query scoped to the key's ATO."""

from __future__ import annotations

import asyncpg
import pytest
from gateway_helpers import VALID_CSV, Client, bearer, insert_achievement, insert_upload

from services.upload_gateway.keys import NewKey, revoke_key

PUBLIC = [
    "/healthz",
    "/metrics",
    "/v1/template.csv",
    "/v1/scheme",
    "/v1/courses",
    "/v1/events/schema",
    "/v1/openapi.json",
]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Bearer ak_not-a-key", "Basic dXNlcjpwYXNz", "ak_raw"]
)
async def test_a_missing_or_unknown_key_is_401_json(
    client: Client, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/v1/uploads", headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["code"] == "UNAUTHORIZED"
    assert body["message"]


async def test_a_revoked_key_stops_working(client: Client, ato: NewKey, pool: asyncpg.Pool) -> None:
    assert (await client.get("/v1/uploads", headers=bearer(ato))).status == 200
    async with pool.acquire() as connection:
        assert await revoke_key(connection, ato.key_id)
    assert (await client.get("/v1/uploads", headers=bearer(ato))).status == 401


async def test_an_upload_without_a_key_is_401_before_anything_is_stored(
    client: Client, pool: asyncpg.Pool
) -> None:
    response = await client.post("/v1/uploads", data=VALID_CSV, params={"terms_accepted": "true"})
    assert response.status == 401
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM uploads") == 0


@pytest.mark.parametrize("path", PUBLIC)
async def test_public_routes_need_no_key(client: Client, path: str) -> None:
    assert (await client.get(path)).status == 200


async def test_another_atos_resources_answer_exactly_like_missing_ones(
    client: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, other_ato.ato_id)
    achievement_id = await insert_achievement(pool, upload_id, other_ato.ato_id)
    missing = "00000000-0000-4000-8000-000000000000"
    attempts = [
        ("GET", "/v1/uploads/{}"),
        ("GET", "/v1/uploads/{}/errors"),
        ("GET", "/v1/uploads/{}/errors?format=csv"),
        ("GET", "/v1/uploads/{}/achievements"),
        ("POST", "/v1/uploads/{}/withdraw"),
    ]
    for method, template in attempts:
        foreign = await client.request(method, template.format(upload_id), headers=bearer(ato))
        absent = await client.request(method, template.format(missing), headers=bearer(ato))
        assert foreign.status == absent.status == 404, template
        assert await foreign.json() == await absent.json()
    foreign = await client.delete(f"/v1/achievements/{achievement_id}", headers=bearer(ato))
    absent = await client.delete(f"/v1/achievements/{missing}", headers=bearer(ato))
    assert foreign.status == absent.status == 404
    assert await foreign.json() == await absent.json()
    listed = await (await client.get("/v1/uploads", headers=bearer(ato))).json()
    assert listed["items"] == []
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT grant_state FROM achievements WHERE achievement_id = $1", achievement_id
            )
            == "held"
        )
        assert (
            await connection.fetchval(
                "SELECT withdrawn_at FROM uploads WHERE upload_id = $1", upload_id
            )
            is None
        )
    # The owner still sees its own upload.
    assert (await client.get(f"/v1/uploads/{upload_id}", headers=bearer(other_ato))).status == 200


@pytest.mark.parametrize(
    "path", ["/v1/uploads/not-a-uuid", "/v1/uploads/123/errors", "/v1/achievements/x"]
)
async def test_malformed_ids_are_404_json(client: Client, ato: NewKey, path: str) -> None:
    method = "DELETE" if path.startswith("/v1/achievements") else "GET"
    response = await client.request(method, path, headers=bearer(ato))
    assert response.status == 404
    assert (await response.json())["code"] == "NOT_FOUND"
