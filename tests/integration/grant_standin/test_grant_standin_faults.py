"""Injected faults misbehave exactly as configured; the admin endpoint changes them live."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standin_helpers import ADMIN_AUTH, AUTH, claim_body, key_headers

from services.grant_standin.faults import FaultConfig, FaultInjector

Client = TestClient[Any, Any]


async def post(client: Client, body: Any, key: str = "k", **kwargs: Any) -> aiohttp.ClientResponse:
    return await client.post("/v1/claims", json=body, headers=key_headers(key), **kwargs)


async def put_faults(client: Client, **changes: Any) -> dict[str, Any]:
    response = await client.put("/admin/faults", json=changes, headers=ADMIN_AUTH)
    assert response.status == 200
    answer: dict[str, Any] = await response.json()
    return answer


async def stored(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM claims")
    return count


# --- Each fault ---------------------------------------------------------------------------------


async def test_failing_before_store_answers_503_and_stores_nothing(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(fail_before_store=1.0)
    response = await post(client, claim_body())
    assert response.status == 503
    assert (await response.json())["code"] == "UNAVAILABLE"
    assert await stored(db) == 0
    assert await db.fetchval("SELECT count(*) FROM idempotency_records") == 0


async def test_failing_after_store_answers_503_and_a_retry_replays_the_stored_claim(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(fail_after_store=1.0)
    body = claim_body()
    first = await post(client, body)
    assert first.status == 503
    assert await stored(db) == 1
    found = await client.get(f"/v1/claims/{body['claim_id']}", headers=AUTH)
    assert found.status == 200

    await put_faults(client, fail_after_store=0.0)
    retry = await post(client, body)
    assert retry.status == 200
    assert (await retry.json())["claim_id"] == body["claim_id"]
    assert await stored(db) == 1


async def test_too_many_requests_answers_429_with_retry_after_and_stores_nothing(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(retry_after_fraction=1.0, retry_after_s=7)
    response = await post(client, claim_body())
    assert response.status == 429
    assert response.headers["Retry-After"] == "7"
    assert (await response.json())["code"] == "RATE_LIMITED"
    assert await stored(db) == 0


async def test_a_slow_answer_comes_after_the_delay_with_the_claim_already_stored(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(slow=1.0, slow_delay_s=1.0)
    body = claim_body()
    with pytest.raises(asyncio.TimeoutError):
        await post(client, body, timeout=aiohttp.ClientTimeout(total=0.3))
    # The client gave up; the claim is there to be found, and a retry replays it.
    found = await client.get(f"/v1/claims/{body['claim_id']}", headers=AUTH)
    assert found.status == 200
    await put_faults(client, slow=0.0)
    retry = await post(client, body)
    assert retry.status == 200
    assert await stored(db) == 1


async def test_a_slow_answer_arrives_eventually_for_a_patient_client(make_client: Any) -> None:
    client = await make_client(slow=1.0, slow_delay_s=0.3)
    started = asyncio.get_running_loop().time()
    response = await post(client, claim_body())
    assert response.status == 201
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_down_refuses_every_request_but_the_admin_endpoints(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(down=True)
    body = claim_body()
    assert (await post(client, body)).status == 503
    batch = await client.post(
        "/v1/claim-batches", json={"claims": [body]}, headers=key_headers("b")
    )
    assert batch.status == 503
    assert (await client.get("/v1/claims/x", headers=AUTH)).status == 503
    assert (await client.get("/v1/claims?upload_id=u", headers=AUTH)).status == 503
    assert await stored(db) == 0

    assert (await put_faults(client, down=False))["down"] is False
    assert (await post(client, body)).status == 201


async def test_get_endpoints_are_not_faulted_by_fractions(make_client: Any) -> None:
    client = await make_client(fail_before_store=1.0, retry_after_fraction=1.0, slow=1.0)
    assert (await client.get("/v1/claims/x", headers=AUTH)).status == 404
    assert (await client.get("/v1/claims?upload_id=u", headers=AUTH)).status == 200


async def test_faults_come_before_request_checks(make_client: Any) -> None:
    client = await make_client(fail_before_store=1.0)
    response = await client.post("/v1/claims", json=claim_body(), headers=AUTH)
    assert response.status == 503


# --- Batches --------------------------------------------------------------------------------------


async def test_a_batch_failing_before_store_stores_none_of_its_claims(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(fail_before_store=1.0)
    claims = [claim_body() for _ in range(3)]
    response = await client.post(
        "/v1/claim-batches", json={"claims": claims}, headers=key_headers("b")
    )
    assert response.status == 503
    assert await stored(db) == 0


async def test_a_batch_failing_after_store_stores_all_and_replays_them(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(fail_after_store=1.0)
    claims = [claim_body() for _ in range(3)]
    first = await client.post(
        "/v1/claim-batches", json={"claims": claims}, headers=key_headers("b")
    )
    assert first.status == 503
    assert await stored(db) == 3
    await put_faults(client, fail_after_store=0.0)
    again = await client.post(
        "/v1/claim-batches", json={"claims": claims}, headers=key_headers("b")
    )
    assert again.status == 207
    assert [r["status"] for r in (await again.json())["results"]] == [200, 200, 200]


# --- Fractions and the seed -----------------------------------------------------------------------


async def test_a_seeded_fraction_fails_the_requests_the_generator_predicts(
    make_client: Any, db: asyncpg.Connection
) -> None:
    client = await make_client(fail_before_store=0.5, seed=42)
    predicted = FaultInjector(FaultConfig(fail_before_store=0.5, seed=42))
    expected = [503 if predicted.plan().fail_before_store else 201 for _ in range(40)]
    statuses = []
    for _ in range(40):
        body = claim_body()
        statuses.append((await post(client, body, key=body["claim_id"])).status)
    assert statuses == expected
    assert 10 <= statuses.count(503) <= 30
    assert await stored(db) == statuses.count(201)


# --- The admin endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_the_admin_endpoint_refuses_the_claims_token(client: Client, method: str) -> None:
    response = await client.request(method, "/admin/faults", json={"down": True}, headers=AUTH)
    assert response.status == 401
    assert await response.json() == {"code": "UNAUTHORIZED"}
    faults = await client.get("/admin/faults", headers=ADMIN_AUTH)
    assert faults.status == 200
    assert (await faults.json())["down"] is False  # the refused PUT changed nothing


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/claims"), ("GET", "/v1/claims/anything"), ("GET", "/v1/claims?upload_id=u")],
)
async def test_the_claims_api_refuses_the_admin_token(
    client: Client, method: str, path: str
) -> None:
    headers = {**ADMIN_AUTH, "Idempotency-Key": "k"}
    response = await client.request(method, path, json=claim_body(), headers=headers)
    assert response.status == 401


async def test_the_admin_endpoint_reports_the_start_up_faults(make_client: Any) -> None:
    client = await make_client(fail_after_store=0.25, slow_delay_s=2.0)
    response = await client.get("/admin/faults", headers=ADMIN_AUTH)
    assert response.status == 200
    assert await response.json() == {
        "fail_before_store": 0.0,
        "fail_after_store": 0.25,
        "slow": 0.0,
        "slow_delay_s": 2.0,
        "retry_after_fraction": 0.0,
        "retry_after_s": 1,
        "down": False,
        "seed": 1,
    }


async def test_putting_faults_changes_only_the_fields_given(client: Client) -> None:
    answer = await put_faults(client, retry_after_fraction=1.0, retry_after_s=3)
    assert answer["retry_after_fraction"] == 1.0
    assert answer["slow_delay_s"] == 0.5
    answer = await put_faults(client, down=True)
    assert answer["retry_after_fraction"] == 1.0
    assert answer["down"] is True
    response = await client.get("/admin/faults", headers=ADMIN_AUTH)
    assert await response.json() == answer


async def test_faults_put_at_run_time_apply_to_the_next_request(client: Client) -> None:
    await put_faults(client, retry_after_fraction=1.0, retry_after_s=3)
    response = await post(client, claim_body())
    assert response.status == 429
    assert response.headers["Retry-After"] == "3"


@pytest.mark.parametrize(
    "body", [{"fail_before_store": 1.5}, {"no_such_fault": 1}, {"down": "sometimes"}, [1]]
)
async def test_invalid_fault_settings_are_refused_and_change_nothing(
    client: Client, body: Any
) -> None:
    before = await (await client.get("/admin/faults", headers=ADMIN_AUTH)).json()
    response = await client.put("/admin/faults", json=body, headers=ADMIN_AUTH)
    assert response.status == 422
    assert (await response.json())["code"] == "INVALID_FAULTS"
    assert await (await client.get("/admin/faults", headers=ADMIN_AUTH)).json() == before


async def test_deleting_faults_restores_the_start_up_faults(make_client: Any) -> None:
    client = await make_client(fail_after_store=0.25)
    start_up = await (await client.get("/admin/faults", headers=ADMIN_AUTH)).json()
    await put_faults(client, down=True, fail_after_store=1.0)
    response = await client.delete("/admin/faults", headers=ADMIN_AUTH)
    assert response.status == 200
    assert await response.json() == start_up
