"""Pure request rules: terms, file names, policies, API keys, idempotency keys, cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from services.upload_gateway.auth import bearer_key
from services.upload_gateway.domain_errors import (
    InvalidCursor,
    InvalidIdempotencyKey,
    InvalidPolicy,
    TermsNotAccepted,
)
from services.upload_gateway.errors import answer_for
from services.upload_gateway.intake import check_form, clean_file_name, form_from, parse_terms
from services.upload_gateway.uploads import (
    Upload,
    check_idempotency_key,
    decode_cursor,
    encode_cursor,
    status_message,
)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("", False),
        (None, False),
        ("truthy", False),
    ],
)
def test_terms_are_accepted_only_by_an_explicit_yes(value: str | None, accepted: bool) -> None:
    assert parse_terms(value) is accepted


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("june.csv", "june.csv"),
        ("C:\\Users\\me\\june.csv", "june.csv"),
        ("../../etc/passwd", "passwd"),
        ("ju\x00ne\r\n.csv", "june.csv"),
        ("", "upload.csv"),
        (None, "upload.csv"),
        ("dir/", "upload.csv"),
        ("a" * 300, "a" * 255),
    ],
)
def test_file_names_are_display_names_never_paths(raw: str | None, clean: str) -> None:
    assert clean_file_name(raw) == clean


def test_form_fields_take_the_file_parts_name_as_a_fallback() -> None:
    form = form_from({"terms_accepted": "true"}, "june.csv")
    assert (form.file_name, form.policy, form.terms_accepted) == ("june.csv", None, True)


def test_check_form_refuses_unaccepted_terms_and_unknown_policies() -> None:
    with pytest.raises(TermsNotAccepted) as terms:
        check_form(form_from({"terms_accepted": "no"}))
    assert (answer_for(terms.value).status, terms.value.code) == (422, "TERMS_NOT_ACCEPTED")
    with pytest.raises(InvalidPolicy) as policy:
        check_form(form_from({"terms_accepted": "true", "policy": "most_rows"}))
    assert (answer_for(policy.value).status, policy.value.code) == (400, "INVALID_POLICY")
    check_form(form_from({"terms_accepted": "true", "policy": "valid_rows"}))


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer ak_abc", "ak_abc"),
        ("bearer   ak_abc ", "ak_abc"),
        ("Bearer", None),
        ("Basic ak_abc", None),
        ("", None),
        (None, None),
        ("Bearer " + "k" * 513, None),
    ],
)
def test_bearer_keys_are_read_from_the_authorization_header(
    header: str | None, key: str | None
) -> None:
    assert bearer_key(header) == key


def test_idempotency_keys_are_trimmed_and_bounded() -> None:
    assert check_idempotency_key(None) is None
    assert check_idempotency_key(" k1 ") == "k1"
    for bad in ("", "   ", "k" * 256):
        with pytest.raises(InvalidIdempotencyKey):
            check_idempotency_key(bad)


def make_upload(**changes: object) -> Upload:
    values: dict[str, object] = {
        "upload_id": uuid.uuid4(),
        "file_name": "june.csv",
        "size_bytes": 10,
        "sha256": "a" * 64,
        "policy": "all_or_nothing",
        "status": "received",
        "encoding": None,
        "rows_total": 0,
        "rows_valid": 0,
        "rows_invalid": 0,
        "rows_warned": 0,
        "rows_processed": 0,
        "counts_by_code": {},
        "file_error_code": None,
        "file_error_message": None,
        "received_at": datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
        "upload_date": date(2026, 6, 1),
        "terms_accepted_at": datetime(2026, 6, 1, 12, 0, tzinfo=UTC),
        "validation_started_at": None,
        "validated_at": None,
        "withdrawn_at": None,
        "reference_version": 1,
        **changes,
    }
    return Upload(**values)  # type: ignore[arg-type]


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    upload = make_upload()
    assert decode_cursor(encode_cursor(upload)) == (upload.received_at, upload.upload_id)
    for forged in ("", "%%%", "bm90IGpzb24", "WzEsMl0"):
        with pytest.raises(InvalidCursor) as refused:
            decode_cursor(forged)
        assert refused.value.code == "INVALID_CURSOR"


def test_only_a_passed_upload_says_the_data_is_valid() -> None:
    assert status_message("passed", 0, None) == "The data is valid"
    assert status_message("rejected", 0, "Header missing.") == "Header missing."
    assert "12" in status_message("validating", 12, None)
    for status in ("received", "failed", "partially_accepted", "passed_with_warnings", "errored"):
        assert status_message(status, 0, None) != "The data is valid"


def test_an_errored_upload_asks_for_it_again_and_gives_a_reference() -> None:
    message = status_message("errored", 40, None, "9b1e0c2a")
    assert "upload it again" in message
    assert "not in the file" in message
    assert "reference 9b1e0c2a" in message


def test_the_upload_json_lists_file_errors_and_the_issue_total() -> None:
    upload = make_upload(
        status="rejected", file_error_code="FILE_04", file_error_message="Bad header."
    )
    body = upload.to_json()
    assert body["file_errors"] == [{"code": "FILE_04", "message": "Bad header."}]
    assert body["upload_date"] == "2026-06-01"
    assert make_upload(counts_by_code={"A": 2, "B": 3}).issues_total == 5
