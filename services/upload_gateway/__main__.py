"""`python -m services.upload_gateway`: serve until SIGTERM, then drain and close.

The drain fits a cluster's default 30 s grace: new connections are refused at once, requests in
flight get `GATEWAY_SHUTDOWN_TIMEOUT_S` (20 s) to finish, then the relay publishes what it holds
and the pool closes. Exits 0.

The wait for requests in flight is done here, before `runner.cleanup()`: aiohttp's own shutdown
closes every connection first and from then on drops what arrives on it, so an upload whose
body was still streaming in could never finish; its `shutdown_timeout` is left for the handlers
still running at the bound (cancelled after `CANCEL_AFTER_S`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from services.core.logging import configure_logging, get_logger
from services.core.settings import load_settings
from services.core.storage import start_storage
from services.upload_gateway.app import create_app, runner_options
from services.upload_gateway.settings import GatewaySettings

log = get_logger()

# Once the bound for requests in flight is over, what still runs gets this long, then is cancelled.
CANCEL_AFTER_S = 1.0


class InFlight:
    """Counts requests being handled; while draining, each answer closes its connection."""

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.count += 1
        self._idle.clear()
        try:
            response = await handler(request)
            if self.draining:
                response.force_close()  # no keep-alive: the connection ends with this answer
            return response
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True


async def serve(settings: GatewaySettings) -> None:
    # Neither Kafka nor PostgreSQL is waited for here: the relay connects (and creates the
    # topics) in the background, and the pool connects on first use. Storage settings that
    # cannot work (wrong credentials, a missing bucket) end the process here, with one line.
    storage = await start_storage(settings.common.storage, "gateway")
    app = create_app(settings, storage)
    in_flight = InFlight()
    app.middlewares.insert(0, in_flight.middleware)  # outermost: counts every request whole
    options = {**runner_options(settings), "shutdown_timeout": CANCEL_AFTER_S}
    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("gateway_started", host=settings.host, port=settings.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("gateway_stopping", shutdown_timeout_s=settings.shutdown_timeout_s)
    start = time.monotonic()
    in_flight.draining = True
    await site.stop()  # no new connections
    if not await in_flight.wait_idle(settings.shutdown_timeout_s):
        log.warning("gateway_requests_cut_off", requests=in_flight.count)
    # Closes the idle connections, cancels what still runs after CANCEL_AFTER_S, then runs
    # cleanup_ctx: the relay publishes what it holds, the pool closes.
    await runner.cleanup()
    log.info("gateway_stopped", drain_took_s=round(time.monotonic() - start, 2))


def main() -> None:
    settings = load_settings(GatewaySettings, "gateway")
    configure_logging("gateway", settings.common.log_level, settings.common.log_output)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
