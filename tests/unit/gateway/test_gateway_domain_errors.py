"""Every domain refusal of the gateway has exactly one API answer, and the answers are the
API's contract as it was (status, code, message, headers), written out here by hand."""

from __future__ import annotations

import inspect

import pytest

from services.core.scheme.codes import Code, FileError
from services.upload_gateway import domain_errors
from services.upload_gateway.domain_errors import (
    AlreadyWithdrawn,
    AmendmentWindowClosed,
    BodyTimedOut,
    DomainError,
    FileMissing,
    FileRefused,
    FileTooLarge,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidIdempotencyKey,
    InvalidPolicy,
    MalformedBody,
    MultipleFiles,
    NotFound,
    StorageFull,
    StorageOutage,
    TermsNotAccepted,
    TooManyParts,
    TooManyUploads,
    UnsupportedMediaType,
    UploadNotAccepted,
)
from services.upload_gateway.errors import ANSWERS, ApiAnswer, answer_for
from services.upload_gateway.pages import texts


def _refusal_classes() -> set[type[DomainError]]:
    return {
        value
        for _, value in inspect.getmembers(domain_errors, inspect.isclass)
        if issubclass(value, DomainError) and value is not DomainError
    }


def test_every_domain_refusal_has_exactly_one_answer() -> None:
    assert set(ANSWERS) == _refusal_classes()


def test_every_refusal_but_the_schemes_own_has_a_code_of_its_own_class() -> None:
    for kind in _refusal_classes() - {FileRefused}:
        assert kind.code, kind.__name__


@pytest.mark.parametrize(
    ("refusal", "answer"),
    [
        (NotFound("upload"), ApiAnswer(404, "NOT_FOUND", "No such upload.")),
        (NotFound("achievement"), ApiAnswer(404, "NOT_FOUND", "No such achievement.")),
        (
            AlreadyWithdrawn("upload"),
            ApiAnswer(409, "ALREADY_WITHDRAWN", "This upload has already been withdrawn."),
        ),
        (
            AlreadyWithdrawn("achievement"),
            ApiAnswer(409, "ALREADY_WITHDRAWN", "This achievement has already been withdrawn."),
        ),
        (
            UploadNotAccepted("upload", "failed"),
            ApiAnswer(
                409,
                "UPLOAD_NOT_ACCEPTED",
                "Only an accepted upload can be withdrawn; this one is 'failed'.",
            ),
        ),
        (
            UploadNotAccepted("achievement", "failed"),
            ApiAnswer(
                409, "UPLOAD_NOT_ACCEPTED", "The upload of this achievement was not accepted."
            ),
        ),
        (
            AmendmentWindowClosed(),
            ApiAnswer(
                409,
                "AMENDMENT_WINDOW_CLOSED",
                "The amendment window has closed: the achievement has been or is being sent"
                " for a grant.",
            ),
        ),
        (
            InvalidCursor(),
            ApiAnswer(400, "INVALID_CURSOR", "The cursor is not one this API issued."),
        ),
        (
            InvalidIdempotencyKey(255),
            ApiAnswer(
                400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1 to 255 characters."
            ),
        ),
        (
            IdempotencyKeyReused(),
            ApiAnswer(
                409,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was used for a different file; use a new key.",
            ),
        ),
        (
            TooManyUploads(4, 30),
            ApiAnswer(
                429,
                "TOO_MANY_UPLOADS",
                "This ATO already has 4 uploads in progress; wait for one to finish and retry.",
                {"Retry-After": "30"},
            ),
        ),
        (
            TermsNotAccepted(),
            ApiAnswer(
                422,
                "TERMS_NOT_ACCEPTED",
                "The terms and conditions must be accepted: send terms_accepted=true.",
            ),
        ),
        (
            InvalidPolicy(),
            ApiAnswer(400, "INVALID_POLICY", "policy must be 'all_or_nothing' or 'valid_rows'."),
        ),
        (
            FileTooLarge(200 * 1024 * 1024),
            ApiAnswer(
                413,
                "FILE_03",
                "The file is larger than the limit of 209715200 bytes (200 MB); split it into"
                " smaller files.",
            ),
        ),
        (
            TooManyParts(16),
            ApiAnswer(
                413,
                "FILE_03",
                "The multipart body has more than 16 parts; send the file and its fields only.",
            ),
        ),
        (
            FileRefused(FileError(Code.FILE_01, "The file is not a CSV file.")),
            ApiAnswer(422, "FILE_01", "The file is not a CSV file."),
        ),
        (
            UnsupportedMediaType(),
            ApiAnswer(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                "Send the CSV as a text/csv body or as multipart/form-data with a 'file' part.",
            ),
        ),
        (
            MalformedBody("field_too_long", "policy"),
            ApiAnswer(400, "BAD_REQUEST", "Form field 'policy' is too long."),
        ),
        (
            MalformedBody("field_not_utf8", "file_name"),
            ApiAnswer(400, "BAD_REQUEST", "Form field 'file_name' is not UTF-8."),
        ),
        (
            MalformedBody("nested"),
            ApiAnswer(400, "BAD_REQUEST", "Nested multipart bodies are not supported."),
        ),
        (
            MalformedBody("unreadable"),
            ApiAnswer(400, "BAD_REQUEST", "The multipart body could not be read."),
        ),
        (MultipleFiles(), ApiAnswer(400, "MULTIPLE_FILES", "Send one file per upload.")),
        (FileMissing(), ApiAnswer(400, "FILE_MISSING", "The multipart body has no 'file' part.")),
        (
            BodyTimedOut(30.0),
            ApiAnswer(
                408,
                "REQUEST_TIMEOUT",
                "No part of the body arrived for 30 seconds; the upload was stopped.",
            ),
        ),
        (
            StorageFull(),
            ApiAnswer(
                507,
                "INSUFFICIENT_STORAGE",
                "The service has no room to store the file just now; nothing was kept. Retry"
                " later.",
            ),
        ),
        (
            StorageOutage(5),
            ApiAnswer(
                503,
                "STORAGE_UNAVAILABLE",
                "The file storage cannot be reached just now; nothing was kept. Retry later with"
                " the same Idempotency-Key.",
                {"Retry-After": "5"},
            ),
        ),
    ],
)
def test_the_api_answers_each_refusal_as_before(refusal: DomainError, answer: ApiAnswer) -> None:
    assert answer_for(refusal) == answer


def test_the_pages_word_every_withdrawal_refusal_by_a_code_the_domain_raises() -> None:
    codes = {kind.code for kind in _refusal_classes()}

    assert set(texts.WITHDRAWAL_REFUSALS) <= codes
    assert set(texts.UPLOAD_REFUSALS) <= codes
