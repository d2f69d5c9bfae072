"""The claim body, batch body, Idempotency-Key and canonical digest rules (no I/O)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.grant_standin.claims import (
    InvalidClaim,
    canonical_sha256,
    check_idempotency_key,
    normalise_identifier,
    parse_batch,
    parse_claim,
    parse_json,
)

VALID: dict[str, Any] = {
    "claim_id": "3f0c9a1e-0000-4000-8000-000000000001",
    "ato_id": "ATO-0042",
    "levy_registration_number": "A1234567",
    "course_code": "SD-TW-101",
    "achievement_date": "2026-11-20",
    "provider_reference": "BK-991",
    "learner": {
        "forename": "Grace",
        "surname": "Hopper",
        "date_of_birth": "1990-04-01",
        "uln": "1000000043",
        "ni_number": None,
        "citb_individual_id": None,
    },
    "notes": "PO 4471 / cohort B",
    "upload_id": "9b1e0000-0000-4000-8000-000000000002",
    "row_number": 17,
}


def changed(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    body["learner"].update(changes.pop("learner", {}))
    body.update(changes)
    return body


def message_for(body: object) -> str:
    with pytest.raises(InvalidClaim) as raised:
        parse_claim(body)
    return str(raised.value)


def test_the_spec_example_is_a_valid_claim() -> None:
    claim = parse_claim(VALID)
    assert claim.achievement_date.isoformat() == "2026-11-20"
    assert claim.learner.uln == "1000000043"


@pytest.mark.parametrize(
    "identifiers",
    [{"uln": None, "ni_number": "AB123456C"}, {"uln": None, "citb_individual_id": "CITB1"}],
)
def test_any_one_learner_identifier_is_enough(identifiers: dict[str, Any]) -> None:
    assert parse_claim(changed(learner=identifiers)).learner.uln is None


def test_optional_fields_may_be_left_out() -> None:
    body = changed()
    for name in ("provider_reference", "notes"):
        del body[name]
    del body["learner"]["ni_number"]
    assert parse_claim(body).notes is None


def test_a_learner_without_any_identifier_is_invalid() -> None:
    message = message_for(changed(learner={"uln": None}))
    assert message.startswith("learner: ")
    assert "at least one of uln, ni_number, citb_individual_id" in message


def test_a_blank_identifier_is_invalid() -> None:
    assert message_for(changed(learner={"uln": "   "})).startswith("learner.uln: ")


@pytest.mark.parametrize(
    "value", ["20/11/2026", "2026-1-5", "20261120", "2026-11-20T00:00:00", "2026-02-30", 20261120]
)
def test_dates_must_be_iso_calendar_dates(value: object) -> None:
    message = message_for(changed(achievement_date=value))
    assert message.startswith("achievement_date: ")
    assert str(value) not in message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"row_number": "17"}, "row_number"),
        ({"row_number": 0}, "row_number"),
        ({"row_number": True}, "row_number"),
        ({"course_code": 101}, "course_code"),
        ({"claim_id": "a/b"}, "claim_id"),
        ({"claim_id": "k" * 256}, "claim_id"),
        ({"notes": "n" * 256}, "notes"),
        ({"colour": "blue"}, "colour"),
        ({"learner": {"surname": ""}}, "learner.surname"),
        ({"learner": {"middle_name": "X"}}, "learner.middle_name"),
    ],
)
def test_an_invalid_field_is_named(change: dict[str, Any], field: str) -> None:
    assert message_for(changed(**change)).startswith(f"{field}: ")


def test_a_message_never_echoes_a_learners_data() -> None:
    body = changed(
        learner={"forename": "Q" * 101, "surname": "Secretsurname", "date_of_birth": "01/04/1990"},
        notes="x" * 300,
    )
    message = message_for(body)
    for value in ("Q" * 101, "Secretsurname", "01/04/1990", "x" * 300):
        assert value not in message


def test_many_errors_are_summarised() -> None:
    message = message_for({"colour": 1})
    assert message.endswith("more")


@pytest.mark.parametrize("body", [[VALID], "claim", None, 17])
def test_a_body_that_is_not_an_object_is_invalid(body: object) -> None:
    assert message_for(body) == "body: must be a JSON object"


def test_json_with_nan_or_bad_bytes_is_invalid() -> None:
    for raw in (b'{"row_number": NaN}', b"\xff\xfe", b"{"):
        with pytest.raises(InvalidClaim, match="not valid JSON"):
            parse_json(raw)
    assert parse_json(b'{"a": [1, null]}') == {"a": [1, None]}


def test_the_digest_ignores_key_order_but_not_values() -> None:
    reordered = dict(reversed(list(changed().items())))
    assert canonical_sha256(reordered) == canonical_sha256(VALID)
    assert canonical_sha256(changed(notes="other")) != canonical_sha256(VALID)
    assert canonical_sha256(changed(learner={"uln": "1000000043 "})) != canonical_sha256(VALID)


@pytest.mark.parametrize("key", [None, "", "k" * 256])
def test_an_idempotency_key_must_have_1_to_255_characters(key: str | None) -> None:
    with pytest.raises(InvalidClaim):
        check_idempotency_key(key)


def test_an_idempotency_key_of_255_characters_is_accepted() -> None:
    assert check_idempotency_key("k" * 255) == "k" * 255


def test_a_batch_holds_at_most_500_claims() -> None:
    assert len(parse_batch({"claims": [{}] * 500})) == 500
    with pytest.raises(InvalidClaim, match="at most 500"):
        parse_batch({"claims": [{}] * 501})


@pytest.mark.parametrize("body", [{"claims": {}}, {"claim": []}, [], {"claims": [], "x": 1}])
def test_a_malformed_batch_is_invalid(body: object) -> None:
    with pytest.raises(InvalidClaim):
        parse_batch(body)


def test_identifiers_compare_without_spaces_or_case() -> None:
    assert normalise_identifier(" ab 12 34 56 c ") == "AB123456C"
