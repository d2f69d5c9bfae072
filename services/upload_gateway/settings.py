"""The gateway's settings: `GATEWAY_*` variables plus the shared PostgreSQL/Kafka/storage groups."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.scheme.file_inspection import DEFAULT_SIZE_LIMIT_BYTES
from services.core.settings import CommonSettings, SchemeLimits
from services.upload_gateway.pages_settings import PagesSupportSettings
from services.upload_gateway.portal_settings import PortalSettings

# Free space kept on the storage volume beyond one file of the largest size.
DISK_MARGIN_BYTES = 1024 * 1024 * 1024


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    # Size of the reads from the socket while streaming a body to storage.
    read_chunk_bytes: int = Field(default=256 * 1024, gt=0)
    # Parts of one multipart upload (the file and its fields), ignored parts included.
    max_multipart_parts: int = Field(default=16, gt=0)
    # Uploads of one ATO in flight at once, per gateway process; the next one answers 429.
    max_concurrent_uploads_per_ato: int = Field(default=4, gt=0)
    upload_retry_after_s: int = Field(default=5, gt=0)
    # An upload is refused with 507 unless the storage volume has this much free space.
    min_free_disk_bytes: int = Field(default=DEFAULT_SIZE_LIMIT_BYTES + DISK_MARGIN_BYTES, ge=0)
    # A client that sends nothing of its body for this long is cut off (408).
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    # An idle keep-alive connection is closed after this long (aiohttp's default is an hour).
    keepalive_timeout_s: float = Field(default=15.0, gt=0)
    # Any body on a route other than the upload: at most this size, and well-formed JSON if JSON.
    max_json_body_bytes: int = Field(default=64 * 1024, gt=0)
    max_json_depth: int = Field(default=32, gt=0)
    # Tests that do not want Kafka turn this off; uploads still land in the outbox.
    run_outbox_relay: bool = True
    readiness_timeout_s: float = 2.0
    # How long SIGTERM waits for requests in flight (a large upload) before closing: well
    # under a cluster's default 30 s grace, so the relay and the pool still close in time.
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    # The pages' sign-in with the ATO's API key, for ATOs without the portal: off by default, as
    # each person signs in through the portal (`GATEWAY_PORTAL_*`). The API keeps its keys.
    pages_api_key_sign_in: bool = False
    # The portal's hand-off (its keys, issuer, audience): `GATEWAY_PORTAL_*` variables.
    portal: PortalSettings = Field(default_factory=PortalSettings)
    # The file size limit (FILE_03) and row limit: `SCHEME_*` variables, shared with the validator.
    limits: SchemeLimits = Field(default_factory=SchemeLimits)
    # The pages' help, contact and privacy links: `GATEWAY_PAGES_*` variables.
    pages_support: PagesSupportSettings = Field(default_factory=PagesSupportSettings)
    common: CommonSettings = Field(default_factory=CommonSettings)
