"""`python -m services.grant_standin`: serves the stand-in on HOST:PORT until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from services.core.logging import configure_logging, get_logger
from services.core.settings import load_settings
from services.grant_standin.app import create_app
from services.grant_standin.settings import Settings
from services.grant_standin.tls import TlsSettings

log = get_logger()


async def serve(settings: Settings, tls: TlsSettings | None = None) -> None:
    runner = web.AppRunner(
        create_app(settings),
        access_log=None,  # `request_handled` lines replace it
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_s,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        ssl_context = tls.server_context() if tls is not None else None
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=ssl_context)
        await site.start()
        log.info(
            "server_started",
            host=settings.host,
            port=settings.port,
            tls=ssl_context is not None,
            faults=settings.fault_config().model_dump(mode="json"),
        )
        await stop.wait()
        log.info("server_stopping")
    finally:
        # Stops accepting, lets in-flight requests end (up to shutdown_timeout_s), closes the pool.
        await runner.cleanup()
    log.info("server_stopped")


def main() -> None:
    settings = load_settings(Settings, "grant-standin")
    tls = load_settings(TlsSettings, "grant-standin")
    configure_logging("grant-standin", settings.log_level, settings.log_output)
    asyncio.run(serve(settings, tls))


if __name__ == "__main__":
    main()
