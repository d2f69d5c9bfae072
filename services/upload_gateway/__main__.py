"""`python -m services.upload_gateway`: serve until SIGTERM, then drain and close."""

from __future__ import annotations

import asyncio
import signal

from aiohttp import web

from services.core.events import Topics
from services.core.kafka import ensure_topics
from services.core.logging import configure_logging, get_logger
from services.upload_gateway.app import create_app, runner_options
from services.upload_gateway.settings import GatewaySettings

log = get_logger()


async def serve(settings: GatewaySettings) -> None:
    kafka = settings.common.kafka
    await ensure_topics(kafka, Topics(kafka.topic_prefix))
    runner = web.AppRunner(create_app(settings), **runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("gateway_started", host=settings.host, port=settings.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("gateway_stopping")
    # Stops accepting, waits up to shutdown_timeout for requests in flight, then runs
    # cleanup_ctx: the relay publishes what it holds, the pool closes.
    await runner.cleanup()
    log.info("gateway_stopped")


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.common.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
