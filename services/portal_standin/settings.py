"""Settings of the portal stand-in (environment variables prefixed `PORTAL_STANDIN_`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the stand-in listens, what its tokens say, and whose people sign in.

    The gateway must be configured to match: `GATEWAY_PORTAL_JWKS_URL` is this stand-in's
    `/.well-known/jwks.json`, `GATEWAY_PORTAL_ISSUER` its `issuer`, `GATEWAY_PORTAL_AUDIENCE`
    its `audience`."""

    model_config = SettingsConfigDict(env_prefix="PORTAL_STANDIN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8070, ge=0, le=65535)
    issuer: str = "http://127.0.0.1:8070"
    audience: str = "achievements-upload-gateway"
    # The gateway's hand-off, where the signed-in person's browser posts the token.
    hand_off_url: str = "http://127.0.0.1:8080/ato/sign-in/portal"
    # The ATO whose people the sign-in form lists (the form lets another be typed in).
    ato_id: str = ""
    # The signing key (PEM), made there on first start; none: a new key at every start.
    key_file: Path | None = None
    token_lifetime_s: int = Field(default=60, gt=0, le=300)
    # Served over https when both are set (a gateway outside local mode reads keys only so).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    shutdown_timeout_s: float = Field(default=5.0, ge=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "PORTAL_STANDIN_TLS_CERT_FILE and PORTAL_STANDIN_TLS_KEY_FILE go together"
            )
        return self
