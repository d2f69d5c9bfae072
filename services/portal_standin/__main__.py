"""`python -m services.portal_standin`: serves the portal stand-in until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio

from services.core.logging import configure_logging
from services.core.serving import serve_until_stopped, server_tls_context
from services.core.settings import load_settings
from services.portal_standin.app import create_app
from services.portal_standin.settings import Settings
from services.portal_standin.tokens import load_or_create_key, new_signing_key


async def serve(settings: Settings) -> None:
    key = load_or_create_key(settings.key_file) if settings.key_file else new_signing_key()
    await serve_until_stopped(
        create_app(settings, [key]),
        host=settings.host,
        port=settings.port,
        ssl_context=server_tls_context(settings.tls_cert_file, settings.tls_key_file),
        shutdown_timeout_s=settings.shutdown_timeout_s,
        kid=key.kid,
    )


def main() -> None:
    settings = load_settings(Settings, "portal-standin")
    configure_logging("portal-standin", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
