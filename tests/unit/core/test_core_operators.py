"""Operator tokens and names, and how the audit trail names an action's target: the pure parts
of services/core/operators.py and services/core/audit.py."""

from __future__ import annotations

import uuid

import pytest

from services.core.audit import AuditKind, target_of
from services.core.operators import (
    InvalidOperatorName,
    checked_name,
    hash_token,
    new_token,
    operator_id_of,
    token_matches,
)

OPERATOR_ID = uuid.UUID("0b6f5a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b")


def test_a_new_token_names_its_operator_and_holds_256_random_bits() -> None:
    token = new_token(OPERATOR_ID)

    assert token.startswith("op_0b6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b_")
    assert len(token.removeprefix("op_0b6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b_")) == 43  # 32 bytes
    assert operator_id_of(token) == OPERATOR_ID
    assert new_token(OPERATOR_ID) != token


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ak_0b6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b_secret",  # an ATO's API key
        "op_0b6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b",  # no secret
        "op_0b6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b_",  # an empty secret
        "op_0b6f5a3e_secret",  # a short id
        "op_zb6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b_secret",  # not hex
    ],
)
def test_a_string_not_shaped_as_a_token_names_no_operator(token: str) -> None:
    assert operator_id_of(token) is None


def test_a_token_matches_only_its_own_hash() -> None:
    token = new_token(OPERATOR_ID)

    assert len(hash_token(token)) == 32
    assert token_matches(token, hash_token(token))
    assert not token_matches(token + "x", hash_token(token))
    assert not token_matches(new_token(OPERATOR_ID), hash_token(token))


def test_a_name_is_kept_without_surrounding_white_space() -> None:
    assert checked_name("  Night Purge \n") == "Night Purge"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("   ", "empty"),
        ("x" * 101, "over 100 characters"),
        ("Night\x1bPurge", "control character"),
        ("Night\nPurge", "control character"),
    ],
)
def test_a_name_that_cannot_be_read_in_a_trail_is_refused(name: str, problem: str) -> None:
    with pytest.raises(InvalidOperatorName, match=problem):
        checked_name(name)


ROW = {
    "ato_id": "ATO-1A2B3C4D",
    "key_id": uuid.UUID("11111111-1111-4111-8111-111111111111"),
    "upload_id": uuid.UUID("22222222-2222-4222-8222-222222222222"),
    "target_operator": "Night Purge",
    "learner_request_id": uuid.UUID("33333333-3333-4333-8333-333333333333"),
    "purge_run_id": 17,
    "dead_letter_partition": 2,
    "dead_letter_offset": 40,
}


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        (AuditKind.LEARNER_FOUND, "learner-request:33333333-3333-4333-8333-333333333333"),
        (AuditKind.LEARNER_EXPORTED, "learner-request:33333333-3333-4333-8333-333333333333"),
        (AuditKind.LEARNER_ERASED, "learner-request:33333333-3333-4333-8333-333333333333"),
        (AuditKind.UPLOAD_PURGED, "upload:22222222-2222-4222-8222-222222222222"),
        (AuditKind.PURGE_RAN, "purge-run:17"),
        (AuditKind.OPERATOR_CREATED, "operator:Night Purge"),
        (AuditKind.OPERATOR_REVOKED, "operator:Night Purge"),
        (AuditKind.ATO_CREATED, "ato:ATO-1A2B3C4D"),
        (AuditKind.KEY_CREATED, "key:11111111-1111-4111-8111-111111111111"),
        (AuditKind.KEY_REVOKED, "key:11111111-1111-4111-8111-111111111111"),
        (AuditKind.DEAD_LETTER_REPLAYED, "dead-letter:2:40"),
        (AuditKind.CLAIMS_REPAIRED, "upload:22222222-2222-4222-8222-222222222222"),
    ],
)
def test_each_operator_action_names_its_target_by_kind_and_id(kind: AuditKind, target: str) -> None:
    assert target_of(kind, ROW) == target
