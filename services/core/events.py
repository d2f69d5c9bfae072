"""The events on Kafka (shared/spec/events.md): pure models, no I/O.

Events carry identifiers, codes and counts only; never a learner's personal data.

Producers are strict and readers tolerant. A model refuses a field it does not declare, so a
producer can only emit what the contract says; `parse_event` ignores fields it does not know, so
a message from a newer producer of the same major version (one that added an optional field)
still reads during a rolling deploy. A message of another major `schema_version` is refused.
The golden schemas in tests/unit/core/event_schemas/ hold version 1 to its compatibility rules
(docs/operations.md, "Changing an event").
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic_core import PydanticCustomError

# The major version: fields may be added (optional) within it, never removed or retyped.
SCHEMA_VERSION = 1


class Topics:
    """Topic names are part of the contract; the prefix only isolates whole pipelines."""

    def __init__(self, prefix: str = "") -> None:
        self.uploads = f"{prefix}achievements.uploads.v1"
        self.upload_status = f"{prefix}achievements.upload-status.v1"
        self.accepted = f"{prefix}achievements.accepted.v1"
        self.grant_claims = f"{prefix}achievements.grant-claims.v1"
        self.dead_letter = f"{prefix}achievements.dead-letter.v1"

    def all(self) -> list[str]:
        return [
            self.uploads,
            self.upload_status,
            self.accepted,
            self.grant_claims,
            self.dead_letter,
        ]


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    # "forbid" holds the producers to the model; `parse_event` reads with "ignore".
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=_now)

    @field_validator("schema_version")
    @classmethod
    def _same_major_version(cls, version: int) -> int:
        """Another major version may have removed or retyped fields: nothing here can read it."""
        if version != SCHEMA_VERSION:
            raise PydanticCustomError(
                "unsupported_schema_version",
                "schema_version {version} is not supported; this reader understands {supported}",
                {"version": version, "supported": SCHEMA_VERSION},
            )
        return version


class UploadReceived(Event):
    event_type: Literal["upload.received"] = "upload.received"
    upload_id: uuid.UUID
    ato_id: str
    # Never the file name: ATOs sometimes name a file after a learner (it stays in `uploads`).
    size_bytes: int
    sha256: str
    policy: str
    storage_key: str
    upload_date: date


class UploadWithdrawn(Event):
    event_type: Literal["upload.withdrawn"] = "upload.withdrawn"
    upload_id: uuid.UUID
    ato_id: str
    achievements_withdrawn: int


class ValidationStarted(Event):
    event_type: Literal["upload.validation_started"] = "upload.validation_started"
    upload_id: uuid.UUID
    ato_id: str


class UploadProgress(Event):
    event_type: Literal["upload.progress"] = "upload.progress"
    upload_id: uuid.UUID
    rows_processed: int


class UploadValidated(Event):
    event_type: Literal["upload.validated"] = "upload.validated"
    upload_id: uuid.UUID
    ato_id: str
    status: str
    encoding: str | None
    rows_total: int
    rows_valid: int
    rows_invalid: int
    rows_warned: int
    counts_by_code: dict[str, int]
    file_error_code: str | None = None


class AcceptedAchievement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    achievement_id: uuid.UUID
    row_number: int
    grant_eligible: bool
    release_at: datetime


class AchievementsAccepted(Event):
    event_type: Literal["achievements.accepted"] = "achievements.accepted"
    upload_id: uuid.UUID
    ato_id: str
    achievements: list[AcceptedAchievement]


class ClaimSubmitted(Event):
    event_type: Literal["claim.submitted"] = "claim.submitted"
    achievement_id: uuid.UUID
    upload_id: uuid.UUID
    claim_id: uuid.UUID


class ClaimAccepted(Event):
    event_type: Literal["claim.accepted"] = "claim.accepted"
    achievement_id: uuid.UUID
    upload_id: uuid.UUID
    claim_id: uuid.UUID
    grant_amount_pence: int


class ClaimRefused(Event):
    event_type: Literal["claim.refused"] = "claim.refused"
    achievement_id: uuid.UUID
    upload_id: uuid.UUID
    claim_id: uuid.UUID
    code: str


class ClaimWithdrawn(Event):
    event_type: Literal["claim.withdrawn"] = "claim.withdrawn"
    achievement_id: uuid.UUID
    upload_id: uuid.UUID


AnyEvent = Annotated[
    UploadReceived
    | UploadWithdrawn
    | ValidationStarted
    | UploadProgress
    | UploadValidated
    | AchievementsAccepted
    | ClaimSubmitted
    | ClaimAccepted
    | ClaimRefused
    | ClaimWithdrawn,
    Field(discriminator="event_type"),
]
EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def parse_event(raw: bytes) -> AnyEvent:
    """The one way to read an event. Unknown fields are ignored, nested ones included; an
    unknown event type, a missing or mistyped field, or another major `schema_version` raises
    `pydantic.ValidationError` (the latter with error type "unsupported_schema_version"), which
    consumers dead-letter."""
    return EVENT_ADAPTER.validate_json(raw, extra="ignore")


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


def _allow_additional_properties(node: Any) -> Any:
    """The schema as readers must apply it: an object may carry fields added later in the same
    major version (`additionalProperties: false` comes from the producers' "forbid")."""
    if isinstance(node, dict):
        return {
            key: True
            if key == "additionalProperties" and value is False
            else _allow_additional_properties(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_allow_additional_properties(item) for item in node]
    return node


def events_json_schema() -> dict[str, Any]:
    """JSON Schema of every event, as the gateway publishes it."""
    schema: dict[str, Any] = _allow_additional_properties(EVENT_ADAPTER.json_schema())
    return schema


def event_models() -> dict[str, type[Event]]:
    """Every event model by its `event_type`."""
    union = get_args(get_args(AnyEvent)[0])
    return {model.model_fields["event_type"].default: model for model in union}


def event_json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each event type on its own (what the golden schemas hold)."""
    return {
        event_type: _allow_additional_properties(model.model_json_schema())
        for event_type, model in event_models().items()
    }


def topic_for(event: Event, topics: Topics) -> tuple[str, str]:
    """(topic, key): an upload's events share a partition; claim events key by achievement."""
    match event:
        case UploadReceived() | UploadWithdrawn():
            return topics.uploads, str(event.upload_id)
        case ValidationStarted() | UploadProgress() | UploadValidated():
            return topics.upload_status, str(event.upload_id)
        case AchievementsAccepted():
            return topics.accepted, str(event.upload_id)
        case ClaimSubmitted() | ClaimAccepted() | ClaimRefused() | ClaimWithdrawn():
            return topics.grant_claims, str(event.achievement_id)
    raise TypeError(f"no topic for {type(event).__name__}")
