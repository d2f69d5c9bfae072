"""The validator worker's settings (env prefix `VALIDATOR_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import CommonSettings


class ValidatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore")

    worker_name: str = "validator"
    group_id: str = "validator"
    batch_rows: int = 5_000
    # Stored issues per upload for the error report; counts per code stay exact beyond it.
    max_stored_issues: int = 10_000
    max_rows: int = 1_000_000
    max_upload_bytes: int = 200 * 1024 * 1024
    progress_interval_s: float = 1.0
    accepted_event_chunk: int = 1_000
    run_outbox_relay: bool = True
    # An upload whose validation raises this often is dead-lettered (a bug, not an outage).
    max_attempts: int = 3
    retry_delay_s: float = 1.0
    common: CommonSettings = Field(default_factory=CommonSettings)
