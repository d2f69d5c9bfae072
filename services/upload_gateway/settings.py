"""The gateway's settings: `GATEWAY_*` variables plus the shared PostgreSQL/Kafka/storage groups."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import CommonSettings

DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # the scheme's FILE_03 limit (200 MB)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, gt=0)
    # Size of the reads from the socket while streaming a body to storage.
    read_chunk_bytes: int = Field(default=256 * 1024, gt=0)
    # Tests that do not want Kafka turn this off; uploads still land in the outbox.
    run_outbox_relay: bool = True
    readiness_timeout_s: float = 2.0
    # How long SIGTERM waits for requests in flight (a large upload) before closing.
    shutdown_timeout_s: float = 60.0
    common: CommonSettings = Field(default_factory=CommonSettings)
