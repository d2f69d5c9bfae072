"""The events on Kafka (shared/spec/events.md): pure models, no I/O.

Events carry identifiers, codes and counts only; never a learner's personal data.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

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
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=_now)


class UploadReceived(Event):
    event_type: Literal["upload.received"] = "upload.received"
    upload_id: uuid.UUID
    ato_id: str
    file_name: str
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
    return EVENT_ADAPTER.validate_json(raw)


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()


def events_json_schema() -> dict[str, Any]:
    """JSON Schema of every event, as the gateway publishes it."""
    return EVENT_ADAPTER.json_schema()


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
