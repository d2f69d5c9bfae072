"""Settings of the pages' sign-in through the portal (`GATEWAY_PORTAL_*` variables).

Without `GATEWAY_PORTAL_JWKS_URL` the portal's hand-off is refused (its page says so); with it,
the issuer is required too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import DeploymentModeField, require_https

# Asymmetric only: the gateway holds no secret that could sign a token (`none` and HS* never).
PortalAlgorithm = Literal["ES256", "RS256"]


class PortalSettings(BaseSettings, DeploymentModeField):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_PORTAL_", extra="ignore")

    # Where the portal publishes its signing keys (a JWKS); https outside local mode.
    jwks_url: str | None = None
    # The token's `iss` and `aud`, each compared exactly.
    issuer: str | None = None
    audience: str = "achievements-upload-gateway"
    algorithm: PortalAlgorithm = "ES256"
    # Where "Sign in through the portal" leads (the portal's own sign-in).
    sign_in_url: str | None = None
    # A hand-off token is short-lived: at most this long between `iat` and `exp`.
    max_token_lifetime_s: int = Field(default=300, gt=0)
    # Clock difference forgiven between the portal and the gateway.
    leeway_s: int = Field(default=30, ge=0, le=300)
    # The keys are read again this long after the last read, and on a token signed with a
    # key not among them (the portal rotated its keys), at most once per `refetch_min_interval_s`
    # so that tokens with made-up key ids cannot make the gateway hammer the portal.
    jwks_cache_s: float = Field(default=600.0, gt=0)
    jwks_refetch_min_interval_s: float = Field(default=30.0, ge=0)
    jwks_timeout_s: float = Field(default=5.0, gt=0)
    jwks_max_bytes: int = Field(default=64 * 1024, gt=0)

    @property
    def enabled(self) -> bool:
        return self.jwks_url is not None

    @model_validator(mode="after")
    def _complete(self) -> PortalSettings:
        if self.jwks_url is None:
            return self
        if not self.issuer:
            raise ValueError("GATEWAY_PORTAL_ISSUER must be set with GATEWAY_PORTAL_JWKS_URL")
        # The keys decide who may sign in: read them only from the portal itself.
        require_https(self, "jwks_url", "GATEWAY_PORTAL_JWKS_URL")
        return self
