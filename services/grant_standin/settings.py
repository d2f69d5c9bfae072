"""Settings of the grant stand-in (environment variables prefixed `GRANT_STANDIN_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.logging import LogOutput
from services.core.settings import (
    DeploymentModeField,
    SslModeField,
    require_database_url,
    require_secret,
)
from services.grant_standin.faults import FaultConfig, FaultFields

# Development defaults, used only with DEPLOYMENT_MODE=local; required settings otherwise.
DEFAULT_DATABASE_URL = "postgresql://achievements:achievements@127.0.0.1:55432/grant_standin"
DEV_TOKEN = "dev-grant-token"  # noqa: S105
DEV_ADMIN_TOKEN = "dev-standin-admin-token"  # noqa: S105


class Settings(BaseSettings, FaultFields, SslModeField, DeploymentModeField):
    """Where the stand-in listens, its database and tokens, and the faults it starts with
    (PUT /admin/faults changes them while running).

    Outside local mode its database URL is held to the pipeline's rules, verified TLS included,
    although it is a test double that production never runs: it stores what the bridge sends
    (learners' names and notes), and a stand-in run outside local mode is on a shared network
    (a staging cluster), where that data must not cross in clear text either."""

    model_config = SettingsConfigDict(
        env_prefix="GRANT_STANDIN_", extra="ignore", hide_input_in_errors=True
    )

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # The claims API's bearer token; the admin endpoints (/admin/faults) take their own.
    token: SecretStr = SecretStr(DEV_TOKEN)
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)

    # None reads the bundled copy of the course catalogue and levy register.
    reference_dir: Path | None = None
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    db_acquire_timeout_s: float = Field(default=10.0, gt=0)
    db_command_timeout_s: float = Field(default=30.0, gt=0)
    # Requests still waiting (a slow fault) are cut off after this on SIGTERM; their claims are
    # already stored, so nothing is lost.
    shutdown_timeout_s: float = Field(default=5.0, ge=0)
    # A batch of 500 claims with long names and notes stays well under this.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    log_level: str = "INFO"
    log_output: LogOutput = Field(default_factory=LogOutput)

    @model_validator(mode="after")
    def _secrets(self) -> Settings:
        require_database_url(self, "database_url", "GRANT_STANDIN_DATABASE_URL", self.pgsslmode)
        require_secret(self, "token", "GRANT_STANDIN_TOKEN", DEV_TOKEN)
        require_secret(self, "admin_token", "GRANT_STANDIN_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
        if self.admin_token.get_secret_value() == self.token.get_secret_value():
            raise ValueError("GRANT_STANDIN_ADMIN_TOKEN must differ from GRANT_STANDIN_TOKEN")
        return self

    def fault_config(self) -> FaultConfig:
        return FaultConfig.model_validate(self.model_dump(include=set(FaultFields.model_fields)))
