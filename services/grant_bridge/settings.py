"""The grant bridge's settings (env prefix `GRANT_BRIDGE_`).

The amendment window (`GRANT_BRIDGE_AMENDMENT_WINDOW_S`) keeps this prefix but is read by the
validator's settings (`ValidatorSettings.amendment_window_s`): the validator stamps `release_at`
with it; the bridge reads that column.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import (
    CommonSettings,
    DeploymentModeField,
    require_https,
    require_secret,
)

# The grant API's limit for POST /v1/claim-batches.
MAX_BATCH_SIZE = 500
# The local stack's grant token (the stand-in's default too); used only with DEPLOYMENT_MODE=local.
DEV_GRANT_TOKEN = "dev-grant-token"  # noqa: S105 (a development default, refused elsewhere)


class GrantBridgeSettings(BaseSettings, DeploymentModeField):
    model_config = SettingsConfigDict(
        env_prefix="GRANT_BRIDGE_", extra="ignore", hide_input_in_errors=True
    )

    # The local stand-in by default; outside local mode an https URL (the token and learners'
    # data go there).
    grant_api_url: str = "http://127.0.0.1:8090"
    # Required (GRANT_BRIDGE_TOKEN) unless DEPLOYMENT_MODE=local.
    token: SecretStr = SecretStr(DEV_GRANT_TOKEN)
    client_timeout_s: float = Field(default=10.0, gt=0)

    # Retries: capped exponential backoff with full jitter; Retry-After is a floor.
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)

    # Claims per POST /v1/claim-batches; batching off sends every claim alone.
    batching: bool = True
    batch_size: int = Field(default=MAX_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE)
    # Single claims in flight at once when batching is off (or a batch falls back to singles).
    single_concurrency: int = Field(default=8, ge=1)
    # Batch requests in flight at once, at most: the next batch is leased and sent while the
    # others are out. Halved on a 429, grown back slowly (in_flight.py).
    max_in_flight: int = Field(default=4, ge=1)

    # How long a leased claim is reserved for one bridge; must outlive one request.
    lease_s: float = Field(default=60.0, gt=0)
    # Claims are sent this long after `release_at`: a margin only. A withdrawal and the lease
    # exclude each other by row locks and guards whatever it is (services/core/grant_states.py).
    release_grace_s: float = Field(default=2.0, ge=0)

    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)

    # Sleep of the due-claims loop when nothing is due.
    poll_interval_s: float = Field(default=1.0, gt=0)

    # GRANT_BRIDGE_MIGRATE_ON_START: apply the migrations at start, as the local stack wants.
    # Off in production: the migration is its own step (the migrate Job, as the migration role),
    # and the bridge's runtime role may not change the schema.
    migrate_on_start: bool = True

    consumer_group: str = "grant-bridge"
    consumer_max_poll_records: int = Field(default=50, ge=1)
    consumer_poll_timeout_ms: int = Field(default=1_000, ge=1)
    # Pause before retrying a Kafka record whose database write failed.
    store_retry_s: float = Field(default=1.0, gt=0)

    # `/metrics`, `/healthz` and `/readyz` on this port (services/core/worker_http.py); off
    # when unset, so several bridges can share a machine without sharing a port.
    http_port: int | None = Field(default=None, ge=1, le=65535)

    common: CommonSettings = Field(default_factory=CommonSettings)

    @model_validator(mode="after")
    def _lease_outlives_a_request(self) -> GrantBridgeSettings:
        if self.lease_s <= self.client_timeout_s:
            raise ValueError("lease_s must be longer than client_timeout_s")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be at least backoff_base_s")
        return self

    @model_validator(mode="after")
    def _secrets_outside_local(self) -> GrantBridgeSettings:
        require_secret(self, "token", "GRANT_BRIDGE_TOKEN", DEV_GRANT_TOKEN)
        require_https(self, "grant_api_url", "GRANT_BRIDGE_GRANT_API_URL")
        return self
