"""POST /v1/claim-batches treats each claim as if sent alone with its claim_id as the key."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from standin_helpers import (
    AUTH,
    COURSE_GRANT_PENCE,
    INELIGIBLE_LEVY,
    claim_body,
    key_headers,
)

Client = TestClient[Any, Any]


async def post_batch(client: Client, claims: list[Any], key: str = "batch-1") -> tuple[int, Any]:
    response = await client.post(
        "/v1/claim-batches", json={"claims": claims}, headers=key_headers(key)
    )
    return response.status, await response.json()


async def test_a_batch_answers_each_claim_in_order_with_mixed_results(
    client: Client, db: asyncpg.Connection
) -> None:
    sent_alone = claim_body()
    await client.post("/v1/claims", json=sent_alone, headers=key_headers(sent_alone["claim_id"]))
    new = claim_body(learner={"uln": "1222222222"})
    same_achievement = claim_body(learner={"uln": "1222222222"})
    unknown_course = claim_body(course_code="NOPE-1")
    invalid = claim_body(achievement_date="yesterday")
    reused_key = {**sent_alone, "notes": "changed"}

    status, answer = await post_batch(
        client, [new, sent_alone, same_achievement, unknown_course, invalid, "junk", reused_key]
    )

    assert status == 207
    results = answer["results"]
    assert [(r["claim_id"], r["status"]) for r in results] == [
        (new["claim_id"], 201),
        (sent_alone["claim_id"], 200),
        (same_achievement["claim_id"], 409),
        (unknown_course["claim_id"], 422),
        (invalid["claim_id"], 422),
        (None, 422),
        (sent_alone["claim_id"], 409),
    ]
    assert results[0]["body"]["grant_amount_pence"] == COURSE_GRANT_PENCE
    assert results[2]["body"] == {"code": "ALREADY_CLAIMED", "existing_claim_id": new["claim_id"]}
    assert [r["body"]["code"] for r in results[3:]] == [
        "UNKNOWN_COURSE",
        "INVALID_CLAIM",
        "INVALID_CLAIM",
        "IDEMPOTENCY_KEY_REUSED",
    ]
    assert results[4]["body"]["message"].startswith("achievement_date:")
    assert await db.fetchval("SELECT count(*) FROM claims") == 2


async def test_a_batch_of_unrelated_claims_answers_each_as_if_sent_alone(
    client: Client, db: asyncpg.Connection
) -> None:
    """Distinct keys and achievements: the batch is answered a statement per step for all of
    its claims, with the answers each claim gets alone."""
    earlier = claim_body()
    await client.post("/v1/claims", json=earlier, headers=key_headers(earlier["claim_id"]))
    stored_elsewhere = claim_body()
    await client.post("/v1/claims", json=stored_elsewhere, headers=key_headers("another-key"))
    refused_before = claim_body(course_code="NOPE-1")
    await post_batch(client, [refused_before], key="batch-0")
    new = claim_body()
    same_achievement = claim_body(learner={"uln": stored_elsewhere["learner"]["uln"]})
    changed = {**earlier, "notes": "changed"}
    ineligible = claim_body(levy_registration_number=INELIGIBLE_LEVY)
    # Another learner's claim under the claim id already stored under another key.
    same_claim_id = claim_body(claim_id=stored_elsewhere["claim_id"])
    by_ni_number = claim_body(learner={"uln": None, "ni_number": "ab 12 34 56 c"})

    status, answer = await post_batch(
        client,
        [
            new,
            same_achievement,
            refused_before,
            same_claim_id,
            ineligible,
            by_ni_number,
            changed,
        ],
    )

    assert status == 207
    results = answer["results"]
    assert [(r["claim_id"], r["status"]) for r in results] == [
        (new["claim_id"], 201),
        (same_achievement["claim_id"], 409),
        (refused_before["claim_id"], 422),
        (same_claim_id["claim_id"], 422),
        (ineligible["claim_id"], 422),
        (by_ni_number["claim_id"], 201),
        (earlier["claim_id"], 409),
    ]
    assert results[0]["body"]["grant_amount_pence"] == COURSE_GRANT_PENCE
    assert results[1]["body"] == {
        "code": "ALREADY_CLAIMED",
        "existing_claim_id": stored_elsewhere["claim_id"],
    }
    assert [r["body"]["code"] for r in results[2:5]] == [
        "UNKNOWN_COURSE",
        "INVALID_CLAIM",
        "LEVY_NOT_ELIGIBLE",
    ]
    assert results[3]["body"]["message"].startswith("claim_id:")
    assert results[6]["body"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    stored = await db.fetch("SELECT claim_id, ni_number FROM claims ORDER BY claim_id")
    assert [(r["claim_id"], r["ni_number"]) for r in stored] == sorted(
        [
            (earlier["claim_id"], None),
            (stored_elsewhere["claim_id"], None),
            (new["claim_id"], None),
            (by_ni_number["claim_id"], "AB123456C"),
        ]
    )
    # Each answer is kept under its key and replayed as it was.
    again = claim_body()
    status, replayed = await post_batch(
        client, [new, same_achievement, ineligible, again], key="batch-2"
    )
    assert [r["status"] for r in replayed["results"]] == [200, 409, 422, 201]
    assert [r["body"] for r in replayed["results"][:3]] == [r["body"] for r in results[:2]] + [
        results[4]["body"]
    ]


async def test_a_batch_claim_is_stored_under_its_claim_id_as_key(client: Client) -> None:
    body = claim_body()
    _, answer = await post_batch(client, [body])
    first = answer["results"][0]["body"]
    response = await client.get(f"/v1/claims/{body['claim_id']}", headers=AUTH)
    assert (await response.json())["idempotency_key"] == body["claim_id"]
    alone = await client.post("/v1/claims", json=body, headers=key_headers(body["claim_id"]))
    assert alone.status == 200
    assert await alone.json() == first


async def test_a_resent_batch_replays_every_claim(client: Client) -> None:
    claims = [claim_body() for _ in range(3)]
    _, first = await post_batch(client, claims)
    status, again = await post_batch(client, claims, key="batch-2")
    assert status == 207
    assert [r["status"] for r in again["results"]] == [200, 200, 200]
    assert [r["body"] for r in again["results"]] == [r["body"] for r in first["results"]]


async def test_a_batch_of_500_is_accepted_and_501_refused(
    client: Client, db: asyncpg.Connection
) -> None:
    status, answer = await post_batch(client, [claim_body() for _ in range(501)])
    assert status == 422
    assert answer["code"] == "INVALID_CLAIM"
    assert answer["message"].startswith("claims:")
    assert await db.fetchval("SELECT count(*) FROM claims") == 0

    status, answer = await post_batch(client, [claim_body() for _ in range(500)])
    assert status == 207
    assert {r["status"] for r in answer["results"]} == {201}
    assert await db.fetchval("SELECT count(*) FROM claims") == 500


async def test_a_malformed_batch_is_refused_whole(client: Client) -> None:
    for body in ({"claims": "no"}, [claim_body()], {"claims": [], "extra": 1}):
        response = await client.post("/v1/claim-batches", json=body, headers=key_headers("b"))
        assert response.status == 422
        assert (await response.json())["code"] == "INVALID_CLAIM"


async def test_a_batch_needs_an_idempotency_key(client: Client) -> None:
    response = await client.post("/v1/claim-batches", json={"claims": []}, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["code"] == "INVALID_IDEMPOTENCY_KEY"


async def test_an_empty_batch_answers_no_results(client: Client) -> None:
    assert await post_batch(client, []) == (207, {"results": []})


async def test_an_upload_sent_in_batches_is_listed_whole_in_row_order(client: Client) -> None:
    """1,200 claims: more than one batch and more than one chunk of the streamed listing."""
    claims = [claim_body(upload_id="u-big", row_number=row) for row in range(1201, 1, -1)]
    started = time.monotonic()
    for start in range(0, len(claims), 500):
        status, _ = await post_batch(client, claims[start : start + 500], key=f"b{start}")
        assert status == 207
    elapsed_s = time.monotonic() - started
    response = await client.get("/v1/claims", params={"upload_id": "u-big"}, headers=AUTH)
    listed = (await response.json())["claims"]
    assert [c["row_number"] for c in listed] == list(range(2, 1202))
    print(f"stored {len(claims)} claims in batches at {len(claims) / elapsed_s:.0f} claims/s")


async def test_simultaneous_identical_batches_store_each_claim_once(
    client: Client, db: asyncpg.Connection
) -> None:
    claims = [claim_body() for _ in range(50)]
    answers = await asyncio.gather(*(post_batch(client, claims, key=f"b{i}") for i in range(4)))
    assert [status for status, _ in answers] == [207] * 4
    for index, claim in enumerate(claims):
        statuses = sorted(answer["results"][index]["status"] for _, answer in answers)
        assert statuses == [200, 200, 200, 201], claim["claim_id"]
    assert await db.fetchval("SELECT count(*) FROM claims") == 50


async def test_batches_taking_the_same_claims_in_opposite_orders_both_complete(
    client: Client, db: asyncpg.Connection
) -> None:
    """Opposite orders can deadlock; the aborted batch stored nothing and runs again."""
    claims = [claim_body() for _ in range(100)]
    (status_a, forward), (status_b, backward) = await asyncio.gather(
        post_batch(client, claims, key="forward"), post_batch(client, claims[::-1], key="back")
    )
    assert (status_a, status_b) == (207, 207)
    by_id: dict[str, list[int]] = {}
    for result in forward["results"] + backward["results"]:
        by_id.setdefault(result["claim_id"], []).append(result["status"])
    assert all(sorted(statuses) == [200, 201] for statuses in by_id.values())
    assert await db.fetchval("SELECT count(*) FROM claims") == 100


async def test_batches_claiming_the_same_achievements_crosswise_accept_each_once(
    client: Client, db: asyncpg.Connection
) -> None:
    """Different claim ids, same achievements, opposite orders: a possible deadlock, retried."""
    ulns = [f"14{n:08d}" for n in range(60)]
    first = [claim_body(learner={"uln": uln}) for uln in ulns]
    second = [claim_body(learner={"uln": uln}) for uln in reversed(ulns)]
    (status_a, answer_a), (status_b, answer_b) = await asyncio.gather(
        post_batch(client, first, key="a"), post_batch(client, second, key="b")
    )
    assert (status_a, status_b) == (207, 207)
    statuses_a = [r["status"] for r in answer_a["results"]]
    statuses_b = [r["status"] for r in reversed(answer_b["results"])]
    assert all(sorted(pair) == [201, 409] for pair in zip(statuses_a, statuses_b, strict=True))
    assert await db.fetchval("SELECT count(*) FROM claims") == 60
