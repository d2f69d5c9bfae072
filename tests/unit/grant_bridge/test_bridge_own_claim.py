"""A 409 ALREADY_CLAIMED naming the claim id we sent means an earlier send of this claim was
stored: it is accepted (with the amount from the answer, or read with GET /v1/claims/{id}),
never refused. One naming another claim id is a refusal as before."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.grant_bridge.grant_client import (
    OWN_CLAIM_UNCONFIRMED,
    ClaimData,
    GrantClient,
    Refused,
    Replayed,
    Transient,
    batch_results,
    classify,
)

OURS = uuid.UUID("e0b97e25-d4ef-5759-b968-04a7bfb8df20")
OTHER = uuid.UUID("11111111-2222-5333-8444-555555555555")


def claim_data(claim_id: uuid.UUID = OURS) -> ClaimData:
    return ClaimData(
        claim_id=claim_id,
        achievement_id=uuid.UUID("a3b1f0de-1f5c-4c55-9a9e-52a1b3c4d5e6"),
        upload_id=uuid.UUID("9b1e0000-0000-4000-8000-000000000001"),
        row_number=17,
        ato_id="ATO-0042",
        levy_number="A1234567",
        course_code="SD-TW-101",
        achievement_date=date(2026, 11, 20),
        provider_reference=None,
        forename="Ada",
        surname="Lovelace",
        date_of_birth=date(1990, 4, 1),
        uln="1000000043",
        ni_number=None,
        citb_individual_id=None,
        notes=None,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": "ALREADY_CLAIMED", "existing_claim_id": str(OURS)},
            Transient("OWN_CLAIM_UNCONFIRMED"),
        ),
        (
            {"code": "ALREADY_CLAIMED", "existing_claim_id": str(OURS), "grant_amount_pence": 6000},
            Replayed(6000),
        ),
        # Upper case is the same id.
        (
            {
                "code": "ALREADY_CLAIMED",
                "existing_claim_id": str(OURS).upper(),
                "grant_amount_pence": 1,
            },
            Replayed(1),
        ),
        ({"code": "ALREADY_CLAIMED", "existing_claim_id": str(OTHER)}, Refused("ALREADY_CLAIMED")),
        ({"code": "ALREADY_CLAIMED"}, Refused("ALREADY_CLAIMED")),
        (
            {"code": "ALREADY_CLAIMED", "existing_claim_id": "not-a-uuid"},
            Refused("ALREADY_CLAIMED"),
        ),
        ({"code": "ALREADY_CLAIMED", "existing_claim_id": 7}, Refused("ALREADY_CLAIMED")),
        # Another code naming our id is not the earlier send's answer.
        (
            {"code": "IDEMPOTENCY_KEY_REUSED", "existing_claim_id": str(OURS)},
            Refused("IDEMPOTENCY_KEY_REUSED"),
        ),
    ],
)
def test_already_claimed_under_our_own_claim_id_is_not_a_refusal(
    body: dict[str, Any], expected: object
) -> None:
    assert classify(409, body, claim_id=OURS) == expected


def test_without_the_sent_claim_id_already_claimed_stays_a_refusal() -> None:
    body = {"code": "ALREADY_CLAIMED", "existing_claim_id": str(OURS), "grant_amount_pence": 5}
    assert classify(409, body) == Refused("ALREADY_CLAIMED")


def test_batch_entries_are_judged_against_their_own_claim_id() -> None:
    body = {
        "results": [
            {
                "claim_id": str(OURS),
                "status": 409,
                "body": {"code": "ALREADY_CLAIMED", "existing_claim_id": str(OURS)},
            },
            {
                "claim_id": str(OTHER),
                "status": 409,
                "body": {"code": "ALREADY_CLAIMED", "existing_claim_id": str(OURS)},
            },
        ]
    }
    assert batch_results([OURS, OTHER], body) == [
        Transient(OWN_CLAIM_UNCONFIRMED),
        Refused("ALREADY_CLAIMED"),
    ]


class FakeGrantApi:
    """Every claim sent is answered 409 ALREADY_CLAIMED naming its own claim id; GET answers
    the claim from `stored` (404 when absent), or `get_status` when that is not 200."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {
            str(OURS): {"claim_id": str(OURS), "grant_amount_pence": 4200}
        }
        self.get_status = 200
        self.gets: list[str] = []

    async def post_claim(self, request: web.Request) -> web.Response:
        body = await request.json()
        conflict = {"code": "ALREADY_CLAIMED", "existing_claim_id": body["claim_id"]}
        return web.json_response(conflict, status=409)

    async def post_batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        results = [
            {
                "claim_id": claim["claim_id"],
                "status": 409,
                "body": {"code": "ALREADY_CLAIMED", "existing_claim_id": claim["claim_id"]},
            }
            for claim in body["claims"]
        ]
        return web.json_response({"results": results}, status=207)

    async def get_claim(self, request: web.Request) -> web.Response:
        claim_id = request.match_info["claim_id"]
        self.gets.append(claim_id)
        if self.get_status != 200:
            return web.json_response({"code": "UNAVAILABLE"}, status=self.get_status)
        if claim_id not in self.stored:
            return web.json_response({"code": "NOT_FOUND"}, status=404)
        return web.json_response(self.stored[claim_id])


@pytest.fixture
def api() -> FakeGrantApi:
    return FakeGrantApi()


@pytest.fixture
async def client(api: FakeGrantApi) -> AsyncIterator[GrantClient]:
    app = web.Application()
    app.router.add_post("/v1/claims", api.post_claim)
    app.router.add_post("/v1/claim-batches", api.post_batch)
    app.router.add_get("/v1/claims/{claim_id}", api.get_claim)
    server = TestServer(app, port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield GrantClient(session, str(server.make_url("/")))
    finally:
        await server.close()


async def test_an_own_claim_is_accepted_with_the_stored_amount(
    client: GrantClient, api: FakeGrantApi
) -> None:
    assert await client.submit(claim_data()) == Replayed(4200)
    assert api.gets == [str(OURS)]


async def test_an_own_claim_in_a_batch_is_accepted_with_the_stored_amount(
    client: GrantClient, api: FakeGrantApi
) -> None:
    api.stored[str(OTHER)] = {"claim_id": str(OTHER), "grant_amount_pence": 900}
    results = await client.submit_batch([claim_data(), claim_data(claim_id=OTHER)])
    assert results == [Replayed(4200), Replayed(900)]
    assert sorted(api.gets) == sorted([str(OURS), str(OTHER)])


@pytest.mark.parametrize(
    ("stored", "get_status"),
    [
        ({}, 200),  # 404
        ({str(OURS): {"claim_id": str(OURS)}}, 200),  # no amount
        ({str(OURS): {"claim_id": str(OURS), "grant_amount_pence": "6000"}}, 200),
        ({}, 503),
    ],
)
async def test_an_own_claim_that_cannot_be_read_back_is_retried(
    client: GrantClient, api: FakeGrantApi, stored: dict[str, dict[str, Any]], get_status: int
) -> None:
    api.stored = stored
    api.get_status = get_status
    assert await client.submit(claim_data()) == Transient(OWN_CLAIM_UNCONFIRMED)
