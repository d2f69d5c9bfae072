"""The event contract (shared/spec/events.md): where each event goes, how it travels, what it
publishes, that no event has room for a learner's personal data, and that version 1 only ever
changes compatibly (the golden schemas in event_schemas/)."""

from __future__ import annotations

import json
import re
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from regenerate_event_schemas import COMMAND, SCHEMA_DIR, golden_path, render

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
    event_json_schemas,
    event_models,
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
NOT_PERSONAL: set[str] = set()


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


def with_fields(event: Event, **fields: Any) -> bytes:
    """The encoded event with fields added or replaced, as another producer might send it."""
    document = json.loads(encode_event(event))
    document.update(fields)
    return json.dumps(document).encode()


def test_parsing_refuses_unknown_types_and_missing_fields() -> None:
    progress = encode_event(UploadProgress(upload_id=UPLOAD_ID, rows_processed=1))
    with pytest.raises(ValidationError) as unknown:
        parse_event(progress.replace(b'"upload.progress"', b'"upload.exploded"'))
    assert {e["type"] for e in unknown.value.errors()} == {"union_tag_invalid"}
    with pytest.raises(ValidationError) as missing:
        parse_event(progress.replace(b'"rows_processed":1', b'"rows_total":1'))
    assert {e["type"] for e in missing.value.errors()} == {"missing"}


@pytest.mark.parametrize(("event", "topic_name", "key_field"), EXAMPLES, ids=EXAMPLE_IDS)
def test_a_field_added_by_a_newer_producer_is_ignored(
    event: Event, topic_name: str, key_field: str
) -> None:
    # A rolling deploy: the producer already has a field (version 1 still) the reader does not.
    parsed = parse_event(with_fields(event, priority="high", learner_surname="Quenby"))
    assert parsed == event
    assert b"Quenby" not in encode_event(parsed)  # nothing unknown is kept or passed on


def test_an_unknown_field_inside_a_nested_object_is_ignored() -> None:
    event, _, _ = EXAMPLES[EXAMPLE_IDS.index("AchievementsAccepted")]
    document = json.loads(encode_event(event))
    document["achievements"][0]["funding_stream"] = "levy"
    assert parse_event(json.dumps(document).encode()) == event


def test_an_old_upload_received_that_still_carries_the_file_name_parses() -> None:
    # Written before the file name left the event: in the outbox or on the topic at deploy time.
    event, _, _ = EXAMPLES[EXAMPLE_IDS.index("UploadReceived")]
    parsed = parse_event(with_fields(event, file_name="Ann Smith 1000000043.csv"))
    assert parsed == event
    assert b"file_name" not in encode_event(parsed)
    assert b"Ann Smith" not in encode_event(parsed)


def test_no_event_carries_the_file_name() -> None:
    # shared/spec/events.md: ATOs sometimes name a file after a learner.
    assert "file_name" not in schema_property_names(events_json_schema())
    for event, _, _ in EXAMPLES:
        assert "file_name" not in json.loads(encode_event(event))


@pytest.mark.parametrize("version", [0, 2, 3])
def test_another_major_schema_version_is_refused_as_unusable(version: int) -> None:
    event = ClaimWithdrawn(achievement_id=ACHIEVEMENT_ID, upload_id=UPLOAD_ID)
    # A ValidationError (a ValueError too): both consumers dead-letter it.
    with pytest.raises(ValidationError) as refused:
        parse_event(with_fields(event, schema_version=version))
    [error] = refused.value.errors()
    assert error["type"] == "unsupported_schema_version"
    assert error["loc"][-1] == "schema_version"
    assert f"schema_version {version} is not supported" in error["msg"]


def test_a_newer_major_version_is_refused_even_when_its_fields_changed() -> None:
    event = UploadProgress(upload_id=UPLOAD_ID, rows_processed=5)
    raw = with_fields(event, schema_version=2, rows_processed="five", rows_total=9)
    with pytest.raises(ValidationError) as refused:
        parse_event(raw)
    assert "unsupported_schema_version" in {e["type"] for e in refused.value.errors()}


def test_producers_cannot_put_a_field_on_an_event_that_the_model_lacks() -> None:
    fields: dict[str, Any] = {"upload_id": UPLOAD_ID, "rows_processed": 1, "learner_name": "x"}
    with pytest.raises(ValidationError) as refused:
        UploadProgress(**fields)
    assert {e["type"] for e in refused.value.errors()} == {"extra_forbidden"}
    with pytest.raises(ValidationError):
        UploadProgress(upload_id=UPLOAD_ID, rows_processed=1, schema_version=2)


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
        # Readers are tolerant: a field added within version 1 must not fail a schema check.
        assert definition["additionalProperties"] is True
        assert {"event_id", "schema_version", "occurred_at"} <= set(definition["properties"])


def test_the_json_schema_requires_the_nested_accepted_achievements_fields() -> None:
    nested = events_json_schema()["$defs"]["AcceptedAchievement"]
    assert nested["additionalProperties"] is True
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


# The golden schemas: version 1 as published, one file per event type. Any difference fails;
# the message says whether it may be accepted by regenerating them.
ANNOTATIONS = frozenset({"title", "description", "default", "examples"})


def inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every `$ref` replaced by its definition and annotations left out."""
    if isinstance(node, dict):
        if "$ref" in node:
            return inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: inline(v, defs) for k, v in node.items() if k not in ANNOTATIONS | {"$defs"}}
    if isinstance(node, list):
        return [inline(item, defs) for item in node]
    return node


def breaking_changes(old: Any, new: Any, where: str) -> list[str]:
    """What a reader of `old` (or a message written to `old`) could no longer rely on."""
    if "properties" in old and "properties" in new:
        problems = [
            f"{where}.{name}: removed"
            for name in old["properties"]
            if name not in new["properties"]
        ]
        for name in sorted(set(new.get("required", ())) - set(old.get("required", ()))):
            problems.append(f"{where}.{name}: newly required (messages without it stop parsing)")
        for name, field in old["properties"].items():
            if name in new["properties"]:
                problems += breaking_changes(field, new["properties"][name], f"{where}.{name}")
        return problems
    if "items" in old and "items" in new and old.keys() == new.keys():
        if any(old[key] != new[key] for key in old.keys() - {"items"}):
            return [f"{where}: type changed"]
        return breaking_changes(old["items"], new["items"], f"{where}[]")
    if old != new:
        return [f"{where}: type changed from {json.dumps(old)} to {json.dumps(new)}"]
    return []


def schema_changes(old: dict[str, Any], new: dict[str, Any], event_type: str) -> list[str]:
    return breaking_changes(
        inline(old, old.get("$defs", {})), inline(new, new.get("$defs", {})), event_type
    )


def golden(event_type: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(golden_path(event_type).read_text(encoding="utf-8"))
    return document


def test_every_event_type_has_a_golden_schema_and_none_is_gone() -> None:
    stored = {path.stem for path in SCHEMA_DIR.glob("*.json")}
    current = set(event_models())
    gone = sorted(stored - current)
    assert not gone, (
        f"event types gone from version 1: {gone}. Removing an event type is incompatible:"
        " consumers still wait for it. It needs a new major version."
    )
    new = sorted(current - stored)
    assert not new, (
        f"new event types without a golden schema: {new}. If that is meant (readers of their"
        f" topic must be deployed before the producers), run `{COMMAND}` and commit the files."
    )


@pytest.mark.parametrize("event_type", sorted(event_json_schemas()))
def test_the_event_schema_matches_its_golden_file(event_type: str) -> None:
    if not golden_path(event_type).exists():
        pytest.fail(f"no golden schema for {event_type}: run `{COMMAND}`")
    old, new = golden(event_type), event_json_schemas()[event_type]
    breaking = schema_changes(old, new, event_type)
    assert not breaking, (
        "incompatible change to a version 1 event (a field removed, retyped or newly"
        " required); readers and stored messages depend on it. Put the field back, or make"
        " the addition optional; a breaking change needs a new major version, not a new"
        " golden file:\n  " + "\n  ".join(breaking)
    )
    assert render(new) == render(old), (
        f"{event_type} changed compatibly (e.g. a new optional field). If that is meant, run"
        f" `{COMMAND}`, review the JSON diff and commit it with the change."
    )


# The checker itself, on made-up changes to the current schemas.
CURRENT = event_json_schemas()


def received_with(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(render(CURRENT["upload.received"]))
    change(schema)
    return schema


def test_the_golden_check_names_a_removed_field() -> None:
    def remove(schema: dict[str, Any]) -> None:
        del schema["properties"]["sha256"]
        schema["required"].remove("sha256")

    new = received_with(remove)
    assert schema_changes(CURRENT["upload.received"], new, "upload.received") == [
        "upload.received.sha256: removed"
    ]


def test_the_golden_check_names_a_retyped_field() -> None:
    new = received_with(lambda s: s["properties"]["size_bytes"].update(type="string"))
    [problem] = schema_changes(CURRENT["upload.received"], new, "upload.received")
    assert problem.startswith("upload.received.size_bytes: type changed")


def test_the_golden_check_names_a_new_required_field() -> None:
    def add(schema: dict[str, Any]) -> None:
        schema["properties"]["row_count"] = {"type": "integer"}
        schema["required"].append("row_count")

    assert schema_changes(CURRENT["upload.received"], received_with(add), "upload.received") == [
        "upload.received.row_count: newly required (messages without it stop parsing)"
    ]


def test_the_golden_check_reaches_nested_objects() -> None:
    schema = json.loads(render(CURRENT["achievements.accepted"]))
    schema["$defs"]["AcceptedAchievement"]["properties"]["row_number"]["type"] = "string"
    [problem] = schema_changes(CURRENT["achievements.accepted"], schema, "achievements.accepted")
    assert problem.startswith("achievements.accepted.achievements[].row_number: type changed")


def test_a_new_optional_field_is_compatible_but_still_differs_from_the_golden_file() -> None:
    new = received_with(lambda s: s["properties"].update(received_via={"type": "string"}))
    assert schema_changes(CURRENT["upload.received"], new, "upload.received") == []
    assert render(new) != render(CURRENT["upload.received"])
