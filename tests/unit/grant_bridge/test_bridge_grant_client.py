"""Claim ids are derived from achievements, bodies follow grant-api.md, and every answer of
the grant API maps to one result."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest

from services.grant_bridge.grant_client import (
    Accepted,
    ClaimData,
    ClaimResult,
    Refused,
    Replayed,
    Transient,
    batch_key_for,
    batch_results,
    claim_id_for,
    classify,
)

ACHIEVEMENT_ID = uuid.UUID("a3b1f0de-1f5c-4c55-9a9e-52a1b3c4d5e6")
UPLOAD_ID = uuid.UUID("9b1e0000-0000-4000-8000-000000000001")


def claim_data(**overrides: Any) -> ClaimData:
    row: dict[str, Any] = {
        "claim_id": claim_id_for(ACHIEVEMENT_ID),
        "achievement_id": ACHIEVEMENT_ID,
        "upload_id": UPLOAD_ID,
        "row_number": 17,
        "ato_id": "ATO-0042",
        "levy_number": "A1234567",
        "course_code": "SD-TW-101",
        "achievement_date": date(2026, 11, 20),
        "provider_reference": "BK-991",
        "forename": "Ada",
        "surname": "Lovelace",
        "date_of_birth": date(1990, 4, 1),
        "uln": "1000000043",
        "ni_number": None,
        "citb_individual_id": None,
        "notes": "PO 4471 / cohort B",
        **overrides,
    }
    return ClaimData.from_row(row)


def test_claim_id_is_the_same_for_the_same_achievement_on_every_call() -> None:
    assert claim_id_for(ACHIEVEMENT_ID) == claim_id_for(uuid.UUID(str(ACHIEVEMENT_ID)))
    assert claim_id_for(ACHIEVEMENT_ID).version == 5


def test_claim_id_is_pinned_so_a_namespace_change_cannot_slip_through() -> None:
    # Changing the namespace would send a second claim for every achievement already claimed.
    assert claim_id_for(ACHIEVEMENT_ID) == uuid.UUID("e0b97e25-d4ef-5759-b968-04a7bfb8df20")


def test_different_achievements_get_different_claim_ids() -> None:
    ids = {claim_id_for(uuid.uuid4()) for _ in range(1000)}
    assert len(ids) == 1000


def test_batch_key_ignores_order_but_not_membership() -> None:
    a, b, c = (claim_id_for(uuid.uuid4()) for _ in range(3))
    assert batch_key_for([a, b, c]) == batch_key_for([c, a, b])
    assert batch_key_for([a, b]) != batch_key_for([a, b, c])
    assert 1 <= len(batch_key_for([a, b, c])) <= 255


def test_body_is_the_claim_object_of_the_contract() -> None:
    data = claim_data()
    assert data.body() == {
        "claim_id": str(claim_id_for(ACHIEVEMENT_ID)),
        "ato_id": "ATO-0042",
        "levy_registration_number": "A1234567",
        "course_code": "SD-TW-101",
        "achievement_date": "2026-11-20",
        "provider_reference": "BK-991",
        "learner": {
            "forename": "Ada",
            "surname": "Lovelace",
            "date_of_birth": "1990-04-01",
            "uln": "1000000043",
            "ni_number": None,
            "citb_individual_id": None,
        },
        "notes": "PO 4471 / cohort B",
        "upload_id": str(UPLOAD_ID),
        "row_number": 17,
    }


def test_body_is_identical_on_every_build_so_a_retry_replays() -> None:
    assert claim_data().body() == claim_data().body()


def test_repr_of_claim_data_holds_no_personal_data() -> None:
    text = repr(claim_data())
    for value in ("Ada", "Lovelace", "1990", "1000000043", "PO 4471"):
        assert value not in text


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected"),
    [
        (201, {"status": "accepted", "grant_amount_pence": 6000}, None, Accepted(6000)),
        (200, {"status": "accepted", "grant_amount_pence": 6000}, None, Replayed(6000)),
        (200, {"code": "UNKNOWN_COURSE"}, None, Refused("UNKNOWN_COURSE")),
        (201, {"status": "accepted"}, None, Transient("BAD_RESPONSE")),
        (201, None, None, Transient("BAD_RESPONSE")),
        (
            409,
            {"code": "ALREADY_CLAIMED", "existing_claim_id": "x"},
            None,
            Refused("ALREADY_CLAIMED"),
        ),
        (409, {"code": "IDEMPOTENCY_KEY_REUSED"}, None, Refused("IDEMPOTENCY_KEY_REUSED")),
        (409, None, None, Refused("CONFLICT")),
        (422, {"code": "LEVY_NOT_ELIGIBLE", "message": "m"}, None, Refused("LEVY_NOT_ELIGIBLE")),
        (422, {"code": "UNKNOWN_COURSE"}, None, Refused("UNKNOWN_COURSE")),
        (422, {"code": "INVALID_CLAIM"}, None, Refused("INVALID_CLAIM")),
        (422, "not json", None, Refused("INVALID_CLAIM")),
        (429, {"code": "RATE_LIMITED"}, "2", Transient("RATE_LIMITED", 2.0)),
        (429, None, None, Transient("RATE_LIMITED", None)),
        (500, None, None, Transient("HTTP_500")),
        (502, None, None, Transient("HTTP_502")),
        (503, {"code": "UNAVAILABLE"}, "7", Transient("HTTP_503", 7.0)),
        (504, None, None, Transient("HTTP_504")),
        (401, {"code": "UNAUTHORIZED"}, None, Transient("HTTP_401")),
        (400, {"code": "INVALID_IDEMPOTENCY_KEY"}, None, Transient("HTTP_400")),
    ],
)
def test_every_answer_is_classified(
    status: int, body: object, retry_after: str | None, expected: ClaimResult
) -> None:
    assert classify(status, body, retry_after) == expected


def test_batch_results_follow_claim_order_and_retry_a_missing_entry() -> None:
    first, second, third = (claim_id_for(uuid.uuid4()) for _ in range(3))
    body = {
        "results": [
            {"claim_id": str(second), "status": 422, "body": {"code": "UNKNOWN_COURSE"}},
            {"claim_id": str(first), "status": 201, "body": {"grant_amount_pence": 100}},
        ]
    }
    assert batch_results([first, second, third], body) == [
        Accepted(100),
        Refused("UNKNOWN_COURSE"),
        Transient("BAD_RESPONSE"),
    ]


def test_an_unreadable_batch_answer_retries_every_claim() -> None:
    ids = [claim_id_for(uuid.uuid4()) for _ in range(2)]
    assert batch_results(ids, None) == [Transient("BAD_RESPONSE")] * 2


def test_pure_modules_import_no_database_or_kafka_client() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import services.grant_bridge.grant_client, "
        "services.grant_bridge.backoff, services.grant_bridge.circuit_breaker; "
        "print(any(m in sys.modules for m in ('asyncpg', 'aiokafka')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"
