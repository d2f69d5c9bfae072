"""The portal stand-in's routes: its JWKS, and a sign-in form that hands a person over.

- `GET /.well-known/jwks.json`: the public signing key(s), as the gateway reads them.
- `GET /sign-in`: the demo ATO's named people (`?ato=` names another ATO).
- `POST /sign-in`: mints the chosen person's token and answers the page that posts it to the
  gateway's hand-off in a form (a hidden field, sent by a tiny script or the button): the token
  never appears in a URL.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from importlib import resources
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from services.core.logging import get_logger
from services.portal_standin.people import BY_SUBJECT, PEOPLE
from services.portal_standin.settings import Settings
from services.portal_standin.tokens import SigningKey, jwks, mint

log = get_logger()

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
KEYS: web.AppKey[list[SigningKey]] = web.AppKey("keys")
MAX_FORM_BYTES: Final = 2048
MAX_ATO_ID_CHARS: Final = 64
SCRIPT: Final = (
    resources.files("services.portal_standin").joinpath("static/auto_post.js").read_bytes()
)


def _page(title: str, body: str, settings: Settings) -> web.Response:
    gateway = urlsplit(settings.hand_off_url)
    response = web.Response(
        text=(
            '<!DOCTYPE html>\n<html lang="en-GB">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)} – CITB portal (stand-in)</title>\n</head>\n<body>\n"
            f"<main>\n<h1>{html.escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
        ),
        content_type="text/html",
        charset="utf-8",
    )
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; base-uri 'none';"
        f" form-action 'self' {gateway.scheme}://{gateway.netloc}; frame-ancestors 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def serve_jwks(request: web.Request) -> web.Response:
    return web.json_response(jwks(request.app[KEYS]), headers={"Cache-Control": "max-age=60"})


async def sign_in_form(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    ato_id = request.query.get("ato", settings.ato_id)[:MAX_ATO_ID_CHARS]
    choices = "\n".join(
        f'<div><input type="radio" name="person" id="person-{n}" value="{person.subject}"'
        f"{' checked' if n == 0 else ''}>"
        f' <label for="person-{n}">{html.escape(person.name)} ({role.value})</label></div>'
        for n, (person, role) in enumerate(PEOPLE)
    )
    body = (
        '<form method="post" action="/sign-in">\n'
        f"<fieldset>\n<legend>Sign in as</legend>\n{choices}\n</fieldset>\n"
        '<p><label for="ato">Organisation (ATO id)</label>\n'
        f'<input id="ato" name="ato" value="{html.escape(ato_id)}" required></p>\n'
        '<p><button type="submit">Sign in</button></p>\n</form>'
    )
    return _page("Sign in to the CITB portal", body, settings)


async def sign_in(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    raw = await request.content.read(MAX_FORM_BYTES + 1)
    form = dict(parse_qsl(raw[:MAX_FORM_BYTES].decode("utf-8", errors="replace")))
    chosen = BY_SUBJECT.get(form.get("person", ""))
    ato_id = form.get("ato", "").strip()
    if chosen is None or not ato_id or len(ato_id) > MAX_ATO_ID_CHARS:
        return web.Response(status=400, text="Choose a person and an organisation.")
    person, role = chosen
    token = mint(
        request.app[KEYS][0],
        issuer=settings.issuer,
        audience=settings.audience,
        person=person,
        role=role,
        ato_id=ato_id,
        now=datetime.now(UTC),
        lifetime_s=settings.token_lifetime_s,
    )
    log.info("portal_standin_signed_in", ato_id=ato_id, role=role.value)
    body = (
        f'<form id="hand-off" method="post" action="{html.escape(settings.hand_off_url)}">\n'
        f'<input type="hidden" name="token" value="{html.escape(token)}">\n'
        "<p>Taking you to Submit Bulk Achievements…</p>\n"
        '<p><button type="submit">Continue</button></p>\n</form>\n'
        '<script src="/static/auto_post.js"></script>'
    )
    return _page("Signing you in", body, settings)


async def home(request: web.Request) -> web.Response:
    return web.Response(status=303, headers={"Location": "/sign-in"})


async def auto_post_script(request: web.Request) -> web.Response:
    return web.Response(body=SCRIPT, content_type="text/javascript")


def create_app(settings: Settings, keys: list[SigningKey]) -> web.Application:
    app = web.Application(client_max_size=MAX_FORM_BYTES)
    app[SETTINGS] = settings
    app[KEYS] = keys
    app.router.add_get("/.well-known/jwks.json", serve_jwks)
    app.router.add_get("/sign-in", sign_in_form)
    app.router.add_post("/sign-in", sign_in)
    app.router.add_get("/static/auto_post.js", auto_post_script)
    app.router.add_get("/", home)
    return app
