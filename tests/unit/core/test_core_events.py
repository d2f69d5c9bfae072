"""The event contract (shared/spec/events.md): where each event goes, how it travels, what it
publishes, and that no event has room for a learner's personal data."""

from __future__ import annotations

import re
import typing
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.core.events import (
    AcceptedAchievement,
    AchievementsAccepted,
    AnyEvent,
    ClaimAccepted,
    ClaimRefused,
    ClaimSubmitted,
    ClaimWithdrawn,
    Event,
    Topics,
    UploadProgress,
    UploadReceived,
    UploadValidated,
    UploadWithdrawn,
    ValidationStarted,
    encode_event,
    events_json_schema,
    parse_event,
    topic_for,
)

UPLOAD_ID = uuid.UUID("6f1c2d3e-0000-4000-8000-000000000001")
ACHIEVEMENT_ID = uuid.UUID("6f1c2d3e-0000-4000-8000-000000000002")
CLAIM_ID = uuid.UUID("6f1c2d3e-0000-4000-8000-000000000003")
RELEASE_AT = datetime(2026, 6, 3, 9, 30, tzinfo=UTC)

# One example of every event type, with the topic attribute and key field the spec gives it.
EXAMPLES: list[tuple[Event, str, str]] = [
    (
        UploadReceived(
            upload_id=UPLOAD_ID,
            ato_id="ATO-1",
            file_name="june.csv",
            size_bytes=848,
            sha256="ab" * 32,
            policy="valid_rows",
            storage_key=f"uploads/{UPLOAD_ID}.csv",
            upload_date=date(2026, 6, 1),
        ),
        "uploads",
        "upload_id",
    ),
    (
        UploadWithdrawn(upload_id=UPLOAD_ID, ato_id="ATO-1", achievements_withdrawn=3),
        "uploads",
        "upload_id",
    ),
    (ValidationStarted(upload_id=UPLOAD_ID, ato_id="ATO-1"), "upload_status", "upload_id"),
    (UploadProgress(upload_id=UPLOAD_ID, rows_processed=10_000), "upload_status", "upload_id"),
    (
        UploadValidated(
            upload_id=UPLOAD_ID,
            ato_id="ATO-1",
            status="partially_accepted",
            encoding="utf-8",
            rows_total=7,
            rows_valid=4,
            rows_invalid=3,
            rows_warned=1,
            counts_by_code={"ULN_03": 1, "NOTES_02": 1},
        ),
        "upload_status",
        "upload_id",
    ),
    (
        AchievementsAccepted(
            upload_id=UPLOAD_ID,
            ato_id="ATO-1",
            achievements=[
                AcceptedAchievement(
                    achievement_id=ACHIEVEMENT_ID,
                    row_number=2,
                    grant_eligible=True,
                    release_at=RELEASE_AT,
                )
            ],
        ),
        "accepted",
        "upload_id",
    ),
    (
        ClaimSubmitted(achievement_id=ACHIEVEMENT_ID, upload_id=UPLOAD_ID, claim_id=CLAIM_ID),
        "grant_claims",
        "achievement_id",
    ),
    (
        ClaimAccepted(
            achievement_id=ACHIEVEMENT_ID,
            upload_id=UPLOAD_ID,
            claim_id=CLAIM_ID,
            grant_amount_pence=6000,
        ),
        "grant_claims",
        "achievement_id",
    ),
    (
        ClaimRefused(
            achievement_id=ACHIEVEMENT_ID,
            upload_id=UPLOAD_ID,
            claim_id=CLAIM_ID,
            code="UNKNOWN_COURSE",
        ),
        "grant_claims",
        "achievement_id",
    ),
    (
        ClaimWithdrawn(achievement_id=ACHIEVEMENT_ID, upload_id=UPLOAD_ID),
        "grant_claims",
        "achievement_id",
    ),
]
EXAMPLE_IDS = [type(event).__name__ for event, _, _ in EXAMPLES]

# Field-name words that would mean a learner's personal data (csv-scheme columns D to K).
PERSONAL_FIELD = re.compile(
    r"forename|surname|learner|birth|dob|uln|nino|ni_?number|national_insurance|citb|"
    r"individual|notes?\b|(^|_)name$",
)
# Names that match the pattern above but are not about a learner.
NOT_PERSONAL = {"file_name"}


def event_types() -> set[type[Event]]:
    union = typing.get_args(AnyEvent)[0]
    return set(typing.get_args(union))


def schema_property_names(node: Any) -> set[str]:
    """Every property name anywhere in a JSON Schema, nested models included."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                names.update(value)
            names |= schema_property_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= schema_property_names(item)
    return names


def test_every_event_type_has_an_example_here() -> None:
    assert {type(event) for event, _, _ in EXAMPLES} == event_types()


def test_the_topic_names_are_the_contracts_behind_the_prefix() -> None:
    topics = Topics("t42.")
    assert topics.all() == [
        "t42.achievements.uploads.v1",
        "t42.achievements.upload-status.v1",
        "t42.achievements.accepted.v1",
        "t42.achievements.grant-claims.v1",
        "t42.achievements.dead-letter.v1",
    ]
    assert Topics().uploads == "achievements.uploads.v1"


@pytest.mark.parametrize(("event", "topic_name", "key_field"), EXAMPLES, ids=EXAMPLE_IDS)
def test_each_event_goes_to_its_topic_keyed_as_the_spec_says(
    event: Event, topic_name: str, key_field: str
) -> None:
    topics = Topics("p.")
    assert topic_for(event, topics) == (
        getattr(topics, topic_name),
        str(getattr(event, key_field)),
    )


def test_an_upload_and_its_outcome_share_a_key_so_they_keep_their_order() -> None:
    topics = Topics()
    keys = {topic_for(event, topics)[1] for event, _, key in EXAMPLES if key == "upload_id"}
    assert keys == {str(UPLOAD_ID)}


def test_an_event_type_without_a_topic_is_refused() -> None:
    with pytest.raises(TypeError, match="no topic for Event"):
        topic_for(Event(), Topics())


@pytest.mark.parametrize(("event", "topic_name", "key_field"), EXAMPLES, ids=EXAMPLE_IDS)
def test_an_encoded_event_parses_back_to_the_same_event(
    event: Event, topic_name: str, key_field: str
) -> None:
    parsed = parse_event(encode_event(event))
    assert type(parsed) is type(event)
    assert parsed == event


def test_encoded_events_carry_the_envelope_fields() -> None:
    event = ClaimWithdrawn(achievement_id=ACHIEVEMENT_ID, upload_id=UPLOAD_ID)
    raw = encode_event(event)
    assert b'"event_type":"claim.withdrawn"' in raw
    assert b'"schema_version":1' in raw
    assert str(event.event_id).encode() in raw
    assert event.occurred_at.tzinfo is not None


def test_parsing_refuses_unknown_types_and_unknown_fields() -> None:
    progress = encode_event(UploadProgress(upload_id=UPLOAD_ID, rows_processed=1))
    with pytest.raises(ValidationError):
        parse_event(progress.replace(b'"upload.progress"', b'"upload.exploded"'))
    withdrawn = encode_event(ClaimWithdrawn(achievement_id=ACHIEVEMENT_ID, upload_id=UPLOAD_ID))
    with pytest.raises(ValidationError):
        parse_event(withdrawn[:-1] + b', "learner_surname": "Quenby"}')


def test_the_json_schema_describes_every_event_by_its_type() -> None:
    schema = events_json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert schema["discriminator"]["propertyName"] == "event_type"
    expected = {
        typing.get_args(model.model_fields["event_type"].annotation)[0]: model.__name__
        for model in event_types()
    }
    assert {event_type: ref.rsplit("/", 1)[-1] for event_type, ref in mapping.items()} == expected
    assert len(schema["oneOf"]) == len(expected)
    for event_type, name in expected.items():
        definition = schema["$defs"][name]
        assert definition["properties"]["event_type"]["const"] == event_type
        assert definition["additionalProperties"] is False
        assert {"event_id", "schema_version", "occurred_at"} <= set(definition["properties"])


def test_the_json_schema_validates_the_nested_accepted_achievements_strictly() -> None:
    nested = events_json_schema()["$defs"]["AcceptedAchievement"]
    assert nested["additionalProperties"] is False
    assert set(nested["required"]) == {
        "achievement_id",
        "row_number",
        "grant_eligible",
        "release_at",
    }


def test_the_personal_data_pattern_recognises_the_learner_columns() -> None:
    # Guards the next test: the pattern must catch what it is meant to catch.
    learner_fields = [
        "learner_forename",
        "surname",
        "date_of_birth",
        "dob",
        "uln",
        "ni_number",
        "nino",
        "citb_individual_id",
        "notes",
        "name",
    ]
    assert [f for f in learner_fields if not PERSONAL_FIELD.search(f)] == []


def test_no_event_has_a_field_named_like_personal_data() -> None:
    names = schema_property_names(events_json_schema()) - NOT_PERSONAL
    assert names  # the walk found the fields
    assert sorted(n for n in names if PERSONAL_FIELD.search(n)) == []
