"""`python -m services.portal_standin`: serves the portal stand-in until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import ssl

from aiohttp import web

from services.core.logging import configure_logging, get_logger
from services.core.settings import load_settings
from services.portal_standin.app import create_app
from services.portal_standin.settings import Settings
from services.portal_standin.tokens import load_or_create_key, new_signing_key

log = get_logger()


def _tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def serve(settings: Settings) -> None:
    key = load_or_create_key(settings.key_file) if settings.key_file else new_signing_key()
    runner = web.AppRunner(
        create_app(settings, [key]),
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_s,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        ssl_context = _tls(settings)
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        await site.start()
        log.info(
            "server_started",
            host=settings.host,
            port=settings.port,
            tls=ssl_context is not None,
            kid=key.kid,
        )
        await stop.wait()
        log.info("server_stopping")
    finally:
        await runner.cleanup()
    log.info("server_stopped")


def main() -> None:
    settings = load_settings(Settings, "portal-standin")
    configure_logging("portal-standin", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
