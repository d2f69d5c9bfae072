"""Helpers for the tests of the ATO's pages: an injected clock, a browser's cookie jar, the
forms' CSRF tokens, signing in with an API key, and the portal whose hand-off tokens sign a
person in. The fixtures that use them are in conftest.py."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import ClientResponse, CookieJar, web
from gateway_helpers import VALID_CSV, Client

from services.core.people import Person, Role
from services.portal_standin.tokens import jwks, mint, new_signing_key
from services.upload_gateway.keys import NewKey

START = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
ISSUER = "http://127.0.0.1/portal"
AUDIENCE = "achievements-upload-gateway"
PRIYA = Person("p-0001", "Priya Shah")
TOM = Person("p-0002", "Tom Evans")


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def browser_jar(port: int) -> CookieJar:
    """A cookie jar that behaves as a browser's on a secure origin: it keeps and sends the
    pages' Secure cookies to the test server on `port`."""
    return CookieJar(unsafe=True, treat_as_secure_origin=f"http://127.0.0.1:{port}")


def hidden_csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def set_cookies(response: ClientResponse) -> dict[str, str]:
    """Each Set-Cookie header of a response, by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.getall("Set-Cookie", [])}


async def sign_in(client: Client, key: NewKey) -> ClientResponse:
    """Signs in with the API key (the pages' key sign-in turned on)."""
    form = await client.get("/ato/sign-in")
    assert form.status == 200
    csrf = hidden_csrf(await form.text())
    return await client.post(
        "/ato/sign-in",
        data={"csrf_token": csrf, "api_key": key.api_key},
        allow_redirects=False,
    )


async def session_csrf(client: Client) -> str:
    page = await client.get("/ato/submit", allow_redirects=False)
    assert page.status == 200
    return hidden_csrf(await page.text())


async def upload_by_form(client: Client, csrf: str) -> ClientResponse:
    """VALID_CSV uploaded as the form posts it without script, the terms accepted."""
    return await client.post(
        "/ato/upload",
        data={
            "csrf_token": csrf,
            "file": io.BytesIO(VALID_CSV),
            "policy": "valid_rows",
            "terms_accepted": "true",
        },
        allow_redirects=False,
    )


class Portal:
    """The portal's JWKS served over HTTP (its key can be rotated), and its tokens."""

    def __init__(self) -> None:
        self.key = new_signing_key("k1")
        self.reads = 0

    async def serve_jwks(self, request: web.Request) -> web.Response:
        self.reads += 1
        return web.json_response(jwks([self.key]))

    def token(self, person: Person, role: Role, ato_id: str, **changes: object) -> str:
        arguments: dict[str, object] = {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "person": person,
            "role": role,
            "ato_id": ato_id,
            "now": START,
            "lifetime_s": 60,
        }
        arguments.update(changes)
        return mint(self.key, **arguments)  # type: ignore[arg-type]


# make_browser(): a new browser on the gateway whose pages take the portal's hand-off.
MakeBrowser = Callable[..., Awaitable[Client]]


async def hand_off(browser: Client, token: str) -> ClientResponse:
    return await browser.post("/ato/sign-in/portal", data={"token": token}, allow_redirects=False)


async def signed_in_as(
    make_browser: MakeBrowser, portal: tuple[Portal, str], person: Person, role: Role, ato: NewKey
) -> Client:
    browser = await make_browser()
    response = await hand_off(browser, portal[0].token(person, role, ato.ato_id))
    assert response.status == 200, await response.text()
    return browser
