"""Signing in through the portal: the portal's backend posts its hand-off token to
`POST /ato/sign-in/portal` (a form field `token`, never a URL), the gateway checks it
(portal_tokens.py), spends its `jti` and opens the pages' session for the person it names.

The session cookie is SameSite=Strict, so a browser would not send it on a redirect that a
cross-site post started: the answer is a page of the gateway's own that moves on to the pages
(a meta refresh, and a link without it), from where the cookie is sent.

The post comes from the portal's origin, so it carries no CSRF token of the pages': the
token's signature, audience, short life and single use take that place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from services.core.logging import get_logger
from services.upload_gateway.appkeys import SETTINGS, database
from services.upload_gateway.pages import sessions, texts
from services.upload_gateway.pages.site import PAGES_CLOCK, SESSION_COOKIE, render, url
from services.upload_gateway.pages.views import cookie_flags, read_form
from services.upload_gateway.portal_settings import PortalSettings
from services.upload_gateway.portal_tokens import (
    HandOffRefused,
    KeysUnavailable,
    PortalKeys,
    Refusal,
    verify,
)

log = get_logger()

PORTAL_KEYS: web.AppKey[PortalKeys] = web.AppKey("portal_keys")
TOKEN_FIELD = "token"  # noqa: S105 (the form field's name, not a secret)
# The unknown ATO is known to the portal but not here: refused as forbidden, not unauthorised.
FORBIDDEN = frozenset({Refusal.UNKNOWN_ATO})


def jwks_reader(http: aiohttp.ClientSession, settings: PortalSettings) -> PortalKeys:
    """The portal's keys, read from its JWKS URL over `http` within the settings' bounds."""
    jwks_url = settings.jwks_url
    if jwks_url is None:
        raise ValueError("the portal's JWKS URL is not set")

    async def fetch() -> bytes:
        try:
            async with http.get(
                jwks_url,
                timeout=aiohttp.ClientTimeout(total=settings.jwks_timeout_s),
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    raise KeysUnavailable(f"the JWKS URL answered {response.status}")
                body = await response.content.read(settings.jwks_max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as problem:
            raise KeysUnavailable(type(problem).__name__) from None
        if len(body) > settings.jwks_max_bytes:
            raise KeysUnavailable("the JWKS is larger than allowed")
        return body

    return PortalKeys(
        fetch,
        settings.algorithm,
        cache_s=settings.jwks_cache_s,
        refetch_min_interval_s=settings.jwks_refetch_min_interval_s,
    )


async def _portal_keys(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].portal
    if not settings.enabled or PORTAL_KEYS in app:  # off, or a test put its own keys
        yield
        return
    async with aiohttp.ClientSession() as http:
        app[PORTAL_KEYS] = jwks_reader(http, settings)
        yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_portal_keys)


def _refused(request: web.Request, refusal: Refusal) -> web.Response:
    log.info("page_portal_sign_in_refused", refusal=refusal.value)
    status = 403 if refusal in FORBIDDEN else 503 if refusal is Refusal.KEYS_UNAVAILABLE else 401
    body = [texts.PORTAL_REFUSALS.get(refusal.value, texts.PORTAL_REFUSED_DEFAULT)]
    if refusal is not Refusal.UNKNOWN_ATO:
        body.append(texts.PORTAL_SIGN_IN["again"])
    portal = request.app[SETTINGS].portal.sign_in_url
    link = {"link": (portal, texts.PORTAL_SIGN_IN["link"])} if portal else {}
    return render(
        request,
        "message.html",
        status,
        title=texts.PORTAL_SIGN_IN["refused_title"],
        body=body,
        **link,
    )


async def hand_off(request: web.Request) -> web.StreamResponse:
    """`POST /ato/sign-in/portal`: the portal's token in, the pages' session out."""
    if PORTAL_KEYS not in request.app:
        return render(
            request,
            "message.html",
            404,
            title=texts.PORTAL_SIGN_IN["refused_title"],
            body=[texts.PORTAL_SIGN_IN["not_set_up"]],
        )
    form = await read_form(request)
    now = request.app[PAGES_CLOCK]()
    try:
        handed = await verify(
            form.get(TOKEN_FIELD, ""), request.app[PORTAL_KEYS], request.app[SETTINGS].portal, now
        )
        async with database(request.app) as connection:
            token, session = await sessions.sign_in_person(connection, handed, now)
    except HandOffRefused as refused:
        return _refused(request, refused.refusal)
    # Who signed in is the audit trail's to keep; the log holds no person.
    log.info("page_signed_in", ato_id=session.ato_id, role=session.role.value, via="portal")
    next_page = url("/submit")
    response = render(
        request,
        "portal_signed_in.html",
        title=texts.PORTAL_SIGN_IN["signed_in_title"],
        name=handed.person.name,
        next_page=next_page,
    )
    response.set_cookie(SESSION_COOKIE, token, **cookie_flags())
    return response
