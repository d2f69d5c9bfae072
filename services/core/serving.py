"""A web application served as a process of its own (the stand-ins' `python -m` entry points):
on HOST:PORT, over TLS when a certificate and its key are given, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path

from aiohttp import web
from aiohttp.log import access_logger

from services.core.logging import get_logger

log = get_logger()


def server_tls_context(cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext | None:
    """The server side of TLS 1.2 or later with this certificate, or None (plain HTTP) unless
    both files are given."""
    if cert_file is None or key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve_until_stopped(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    shutdown_timeout_s: float,
    access_log: bool = True,
    **started: object,
) -> None:
    """Serves `app` until SIGTERM or SIGINT, then stops accepting, lets in-flight requests end
    (up to `shutdown_timeout_s`) and runs the app's cleanup. `access_log=False` for an app that
    logs its requests itself; `started` adds to the `server_started` line."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout_s,
        access_log=access_logger if access_log else None,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        log.info("server_started", host=host, port=port, tls=ssl_context is not None, **started)
        await stop.wait()
        log.info("server_stopping")
    finally:
        await runner.cleanup()
    log.info("server_stopped")
