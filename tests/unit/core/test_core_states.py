"""The state vocabularies: one enum per state machine, the upload's shared with the scheme, and
the documented mapping between a claim's state and its achievement's grant state."""

from __future__ import annotations

from enum import StrEnum

import pytest

from services.core.scheme.codes import UploadStatus
from services.core.scheme.outcome import accepts_rows
from services.core.states import (
    ACCEPTING,
    ANSWERED,
    CLOSED_CLAIMS,
    FINAL,
    GRANT_STATE_OF_CLAIM,
    IN_PROGRESS,
    WITHDRAWABLE,
    ClaimState,
    GrantState,
    UploadState,
    initial_grant_state,
    sql_list,
    sql_literal,
)


def test_the_upload_states_are_the_schemes_statuses_including_errored() -> None:
    assert UploadState is UploadStatus
    assert [state.value for state in UploadState] == [
        "received",
        "validating",
        "rejected",
        "failed",
        "partially_accepted",
        "passed_with_warnings",
        "passed",
        "errored",
    ]


def test_final_and_accepting_upload_states() -> None:
    assert {UploadState.RECEIVED, UploadState.VALIDATING} == IN_PROGRESS
    assert set(UploadState) - IN_PROGRESS == FINAL
    assert UploadState.ERRORED in FINAL
    assert {s for s in UploadState if accepts_rows(s)} == ACCEPTING
    assert {
        UploadState.PARTIALLY_ACCEPTED,
        UploadState.PASSED_WITH_WARNINGS,
        UploadState.PASSED,
    } == ACCEPTING
    assert ACCEPTING < FINAL


def test_grant_and_claim_states_are_the_column_words() -> None:
    assert [s.value for s in GrantState] == [
        "held",
        "not_eligible",
        "claimed",
        "refused",
        "withdrawn",
    ]
    assert [s.value for s in ClaimState] == [
        "pending",
        "accepted",
        "refused",
        "withdrawn",
        "skipped",
    ]
    assert set(ClaimState) - {ClaimState.PENDING} == CLOSED_CLAIMS


def test_every_claim_state_has_its_documented_grant_state() -> None:
    assert set(GRANT_STATE_OF_CLAIM) == set(ClaimState)
    assert dict(GRANT_STATE_OF_CLAIM) == {
        ClaimState.PENDING: GrantState.HELD,
        ClaimState.ACCEPTED: GrantState.CLAIMED,
        ClaimState.REFUSED: GrantState.REFUSED,
        ClaimState.WITHDRAWN: GrantState.WITHDRAWN,
        ClaimState.SKIPPED: None,
    }
    # The grant system's answers are what the bridge writes onto an achievement.
    assert {GRANT_STATE_OF_CLAIM[s] for s in ANSWERED} == {GrantState.CLAIMED, GrantState.REFUSED}
    assert ANSWERED < CLOSED_CLAIMS


def test_only_unanswered_achievements_can_be_withdrawn() -> None:
    assert {GrantState.HELD, GrantState.NOT_ELIGIBLE} == WITHDRAWABLE
    assert initial_grant_state(True) is GrantState.HELD
    assert initial_grant_state(False) is GrantState.NOT_ELIGIBLE
    assert {initial_grant_state(e) for e in (True, False)} == WITHDRAWABLE


def test_states_become_sql_literals_and_nothing_else_does() -> None:
    assert sql_literal(ClaimState.PENDING) == "'pending'"
    assert sql_list(WITHDRAWABLE) == "'held', 'not_eligible'"

    class Odd(StrEnum):
        QUOTE = "x' OR '1"

    with pytest.raises(ValueError, match="not a state word"):
        sql_literal(Odd.QUOTE)
