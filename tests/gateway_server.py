"""The gateway's app served in a test as production serves it, for the tests that send it
requests (the gateway's own and those of the pipeline on each storage backend)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.upload_gateway.app import runner_options
from services.upload_gateway.appkeys import SETTINGS


async def start_gateway(app: web.Application) -> TestClient[web.Request, web.Application]:
    """A client of `app` served on a free port with the runner's options (timeouts, body
    decoding); the caller closes it."""
    server = TestServer(app)
    await server.start_server(**runner_options(app[SETTINGS]))
    client: TestClient[web.Request, web.Application] = TestClient(server)
    await client.start_server()
    return client
