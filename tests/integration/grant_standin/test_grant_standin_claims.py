"""POST /v1/claims and the GET endpoints behave as the grant API contract says."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standin_helpers import (
    ADMIN_AUTH,
    AUTH,
    COURSE_GRANT_PENCE,
    INELIGIBLE_LEVY,
    claim_body,
    key_headers,
)
from structlog.testing import capture_logs

Client = TestClient[Any, Any]


async def post(client: Client, body: Any, key: str | None = "k") -> tuple[int, Any]:
    headers = AUTH if key is None else key_headers(key)
    response = await client.post("/v1/claims", json=body, headers=headers)
    return response.status, await response.json()


# --- Authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/claims"),
        ("POST", "/v1/claim-batches"),
        ("GET", "/v1/claims/anything"),
        ("GET", "/v1/claims?upload_id=u"),
        ("GET", "/admin/faults"),
        ("PUT", "/admin/faults"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", "test-grant-token", "Bearer "]
)
async def test_every_endpoint_refuses_a_missing_or_wrong_token(
    client: Client, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Idempotency-Key": "k"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.request(method, path, headers=headers, json=claim_body())
    assert response.status == 401
    assert await response.json() == {"code": "UNAUTHORIZED"}


# --- Accepting and replaying ---------------------------------------------------------------------


async def test_a_new_claim_is_accepted_with_the_course_grant(client: Client) -> None:
    body = claim_body()
    status, answer = await post(client, body, key=body["claim_id"])
    assert status == 201
    assert answer["claim_id"] == body["claim_id"]
    assert answer["status"] == "accepted"
    assert answer["grant_amount_pence"] == COURSE_GRANT_PENCE
    assert answer["received_at"].startswith("20")


async def test_a_stored_claim_is_read_back_with_what_the_grant_system_added(
    client: Client,
) -> None:
    body = claim_body()
    _, accepted = await post(client, body, key="key-1")
    response = await client.get(f"/v1/claims/{body['claim_id']}", headers=AUTH)
    assert response.status == 200
    stored = await response.json()
    assert stored == {
        **body,
        "status": "accepted",
        "grant_amount_pence": COURSE_GRANT_PENCE,
        "received_at": accepted["received_at"],
        "idempotency_key": "key-1",
    }


async def test_an_unknown_claim_is_not_found(client: Client) -> None:
    response = await client.get("/v1/claims/never-sent", headers=AUTH)
    assert response.status == 404
    assert await response.json() == {"code": "NOT_FOUND"}


async def test_the_same_key_and_body_replay_the_first_answer_with_200(
    client: Client, db: asyncpg.Connection
) -> None:
    body = claim_body()
    _, first = await post(client, body)
    # The same JSON value written differently is the same body.
    text = json.dumps(dict(reversed(list(body.items()))), indent=2)
    response = await client.post("/v1/claims", data=text, headers=key_headers("k"))
    assert response.status == 200
    assert await response.json() == first
    assert await db.fetchval("SELECT count(*) FROM claims") == 1


async def test_the_same_key_with_another_body_is_a_reused_key(client: Client) -> None:
    body = claim_body()
    await post(client, body)
    status, answer = await post(client, {**body, "notes": "changed"})
    assert status == 409
    assert answer["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_a_replay_is_answered_after_more_than_seven_days(
    client: Client, db: asyncpg.Connection
) -> None:
    body = claim_body()
    _, first = await post(client, body)
    await db.execute("UPDATE idempotency_records SET created_at = now() - interval '8 days'")
    await db.execute("UPDATE claims SET received_at = received_at - interval '8 days'")
    status, answer = await post(client, body)
    assert status == 200
    assert answer == first


@pytest.mark.parametrize("key", [None, "", "k" * 256])
async def test_a_missing_empty_or_too_long_idempotency_key_is_refused(
    client: Client, key: str | None, db: asyncpg.Connection
) -> None:
    headers = dict(AUTH) if key is None else key_headers(key)
    response = await client.post("/v1/claims", json=claim_body(), headers=headers)
    assert response.status == 400
    assert (await response.json())["code"] == "INVALID_IDEMPOTENCY_KEY"
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


async def test_a_key_of_255_characters_is_accepted(client: Client) -> None:
    status, _ = await post(client, claim_body(), key="k" * 255)
    assert status == 201


# --- Refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"learner": {"uln": None, "ni_number": None, "citb_individual_id": None}}, "learner"),
        ({"achievement_date": "20/11/2026"}, "achievement_date"),
        ({"learner": {"date_of_birth": "1990-02-30"}}, "learner.date_of_birth"),
        ({"row_number": "17"}, "row_number"),
        ({"course_code": None}, "course_code"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_an_invalid_claim_names_the_field_without_echoing_values(
    client: Client, change: dict[str, Any], field: str, db: asyncpg.Connection
) -> None:
    body = claim_body()
    learner_change = change.pop("learner", {})
    body.update(change)
    body["learner"].update(learner_change)
    status, answer = await post(client, body)
    assert status == 422
    assert answer["code"] == "INVALID_CLAIM"
    assert answer["message"].startswith(f"{field}:")
    for value in ("20/11/2026", "1990-02-30", body["learner"]["surname"]):
        assert value not in answer["message"]
    assert await db.fetchval("SELECT count(*) FROM idempotency_records") == 0


async def test_a_body_that_is_not_json_is_an_invalid_claim(client: Client) -> None:
    response = await client.post("/v1/claims", data=b"{not json", headers=key_headers("k"))
    assert response.status == 422
    assert await response.json() == {"code": "INVALID_CLAIM", "message": "body: not valid JSON"}


async def test_an_unknown_course_is_refused_and_the_refusal_replayed(
    client: Client, db: asyncpg.Connection
) -> None:
    body = claim_body(course_code="NO-SUCH-1")
    first = await post(client, body)
    assert first[0] == 422
    assert first[1]["code"] == "UNKNOWN_COURSE"
    assert await post(client, body) == first
    assert await db.fetchval("SELECT count(*) FROM claims") == 0


@pytest.mark.parametrize("levy", [INELIGIBLE_LEVY, "Z9999999"])
async def test_a_levy_number_not_registered_or_not_eligible_is_refused(
    client: Client, levy: str
) -> None:
    status, answer = await post(client, claim_body(levy_registration_number=levy))
    assert status == 422
    assert answer["code"] == "LEVY_NOT_ELIGIBLE"
    assert levy not in answer["message"]


@pytest.mark.parametrize(
    "shared",
    [
        {"uln": "1999999999"},
        {"ni_number": "AB123456C"},
        {"citb_individual_id": "CITB12345"},
    ],
)
async def test_the_same_achievement_under_another_key_is_already_claimed(
    client: Client, shared: dict[str, str], db: asyncpg.Connection
) -> None:
    first = claim_body(learner={"uln": None, **shared})
    await post(client, first, key=first["claim_id"])
    # Another learner record sharing one identifier, same course and date, spelt differently.
    spelt = {name: f" {value.lower()} " for name, value in shared.items()}
    second = claim_body(learner={"uln": "1888888888", **spelt} if "uln" not in shared else spelt)
    status, answer = await post(client, second, key=second["claim_id"])
    assert status == 409
    assert answer == {"code": "ALREADY_CLAIMED", "existing_claim_id": first["claim_id"]}
    assert await db.fetchval("SELECT count(*) FROM claims") == 1


async def test_the_same_learner_on_another_date_or_course_is_a_new_claim(client: Client) -> None:
    first = claim_body(learner={"uln": "1777777777"})
    assert (await post(client, first, key="a"))[0] == 201
    other_date = claim_body(learner={"uln": "1777777777"}, achievement_date="2026-11-21")
    assert (await post(client, other_date, key="b"))[0] == 201
    other_course = claim_body(learner={"uln": "1777777777"}, course_code="SD-MSF-102")
    assert (await post(client, other_course, key="c"))[0] == 201


async def test_a_claim_id_taken_by_another_achievement_is_refused(client: Client) -> None:
    first = claim_body()
    await post(client, first, key="a")
    status, answer = await post(client, claim_body(claim_id=first["claim_id"]), key="b")
    assert status == 422
    assert answer["code"] == "INVALID_CLAIM"
    assert answer["message"].startswith("claim_id:")


# --- Concurrency ---------------------------------------------------------------------------------


async def test_twenty_simultaneous_identical_requests_store_one_claim(
    client: Client, db: asyncpg.Connection
) -> None:
    body = claim_body()
    answers = await asyncio.gather(*(post(client, body, key="same") for _ in range(20)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 19 + [201]
    assert {answer["claim_id"] for _, answer in answers} == {body["claim_id"]}
    assert len({answer["received_at"] for _, answer in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM claims") == 1


async def test_simultaneous_claims_of_one_achievement_under_different_keys_accept_one(
    client: Client, db: asyncpg.Connection
) -> None:
    bodies = [claim_body(learner={"uln": "1666666666"}) for _ in range(20)]
    answers = await asyncio.gather(*(post(client, b, key=b["claim_id"]) for b in bodies))
    accepted = [answer for status, answer in answers if status == 201]
    assert len(accepted) == 1
    refused = [answer for status, answer in answers if status == 409]
    assert len(refused) == 19
    assert {a["existing_claim_id"] for a in refused} == {accepted[0]["claim_id"]}
    assert await db.fetchval("SELECT count(*) FROM claims") == 1


# --- Listing an upload ---------------------------------------------------------------------------


async def test_the_claims_of_an_upload_are_listed_in_row_order(client: Client) -> None:
    for row_number in (9, 3, 5):
        await post(
            client, claim_body(upload_id="u-list", row_number=row_number), key=f"r{row_number}"
        )
    await post(client, claim_body(upload_id="u-other"), key="other")
    await post(client, claim_body(upload_id="u-list", course_code="NOPE-1"), key="refused")
    response = await client.get("/v1/claims", params={"upload_id": "u-list"}, headers=AUTH)
    assert response.status == 200
    claims = (await response.json())["claims"]
    assert [c["row_number"] for c in claims] == [3, 5, 9]
    assert all(c["status"] == "accepted" and c["upload_id"] == "u-list" for c in claims)


async def test_an_upload_with_no_claims_lists_none(client: Client) -> None:
    response = await client.get("/v1/claims", params={"upload_id": "nothing"}, headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"claims": []}


async def test_listing_without_an_upload_id_is_a_bad_request(client: Client) -> None:
    response = await client.get("/v1/claims", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["code"] == "INVALID_REQUEST"


# --- Personal data -------------------------------------------------------------------------------


async def test_no_learner_data_is_logged(client: Client) -> None:
    learner = {
        "forename": "Zebedee",
        "surname": "Quixotic",
        "date_of_birth": "1971-07-13",
        "uln": "1357913579",
        "ni_number": "JT246802A",
        "citb_individual_id": "CITB97531",
    }
    body = claim_body(learner=learner, notes="secret note 8642")
    with capture_logs() as logs:
        await post(client, body)
        await post(client, body)
        await post(client, {**body, "notes": "other"})
        await post(client, claim_body(learner=learner, course_code="NOPE-1"), key="x")
        await post(client, claim_body(learner={**learner, "date_of_birth": "13/07/1971"}), "y")
        await client.get(f"/v1/claims/{body['claim_id']}", headers=AUTH)
    assert {entry["event"] for entry in logs} >= {
        "claim_accepted",
        "claim_replayed",
        "claim_refused",
        "request_handled",
    }
    logged = json.dumps(logs, default=str)
    for value in [*learner.values(), "13/07/1971", "secret note 8642"]:
        assert value not in logged


async def test_a_database_failure_answers_500_without_logging_learner_data(
    client: Client, db: asyncpg.Connection
) -> None:
    await db.execute("ALTER TABLE idempotency_records RENAME TO records_gone")
    body = claim_body(learner={"surname": "Unloggable"})
    with capture_logs() as logs:
        status, answer = await post(client, body)
    assert status == 500
    assert answer == {"code": "INTERNAL_ERROR"}
    assert any(entry["event"] == "request_failed" for entry in logs)
    assert "Unloggable" not in json.dumps(logs, default=str)


async def test_a_call_whose_store_failed_is_logged_with_no_stored_answer(
    client: Client, db: asyncpg.Connection
) -> None:
    # The database can fail after its commit: a later replay (200) of a claim no call created
    # is explained only by this entry, so the failed call must be in the log too.
    await db.execute("ALTER TABLE idempotency_records RENAME TO records_gone")
    body = claim_body(upload_id="upload-store-failed")
    status, _ = await post(client, body, key=body["claim_id"])
    assert status == 500
    response = await client.get("/admin/calls?upload_id=upload-store-failed", headers=ADMIN_AUTH)
    assert await response.json() == {
        "calls": {body["claim_id"]: [{"status": 500, "stored_status": None, "delivered": True}]}
    }
