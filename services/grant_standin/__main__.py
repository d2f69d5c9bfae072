"""`python -m services.grant_standin`: serves the stand-in on HOST:PORT until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio

from services.core.logging import configure_logging
from services.core.serving import serve_until_stopped
from services.core.settings import load_settings
from services.grant_standin.app import create_app
from services.grant_standin.settings import Settings
from services.grant_standin.tls import TlsSettings


async def serve(settings: Settings, tls: TlsSettings | None = None) -> None:
    await serve_until_stopped(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=tls.server_context() if tls is not None else None,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        access_log=False,  # `request_handled` lines replace it
        faults=settings.fault_config().model_dump(mode="json"),
    )


def main() -> None:
    settings = load_settings(Settings, "grant-standin")
    tls = load_settings(TlsSettings, "grant-standin")
    configure_logging("grant-standin", settings.log_level, settings.log_output)
    asyncio.run(serve(settings, tls))


if __name__ == "__main__":
    main()
