"""The stand-in served over https: a certificate and its key (`GRANT_STANDIN_TLS_CERT_FILE`,
`GRANT_STANDIN_TLS_KEY_FILE`), as the real grant API is. Plain HTTP when neither is set (the
local stack and the tests)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.serving import server_tls_context


class TlsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRANT_STANDIN_TLS_", extra="ignore")

    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "GRANT_STANDIN_TLS_CERT_FILE and GRANT_STANDIN_TLS_KEY_FILE go together"
            )
        return self

    def server_context(self) -> ssl.SSLContext | None:
        """The server side of TLS 1.2 or later, or None for plain HTTP."""
        return server_tls_context(self.cert_file, self.key_file)
