"""The portal stand-in: its JWKS, its sign-in form of named people, and the page that posts a
person's token to the gateway's hand-off, checked here with the gateway's own verification."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from services.core.people import Person, Role
from services.portal_standin.app import create_app
from services.portal_standin.settings import Settings
from services.portal_standin.tokens import load_or_create_key, new_signing_key
from services.upload_gateway.portal_settings import PortalSettings
from services.upload_gateway.portal_tokens import PortalKeys, verify

HAND_OFF = "http://127.0.0.1:8080/ato/sign-in/portal"


def stand_in_settings() -> Settings:
    return Settings(ato_id="ATO-7EC4FB26", hand_off_url=HAND_OFF)


async def test_a_person_chosen_on_the_form_is_handed_off_in_a_form_post_the_gateway_accepts() -> (
    None
):
    key = new_signing_key("k1")
    settings = stand_in_settings()
    async with TestClient(TestServer(create_app(settings, [key]))) as client:
        form = await (await client.get("/sign-in")).text()
        jwks_body = await (await client.get("/.well-known/jwks.json")).read()
        answer = await client.post(
            "/sign-in", data={"person": "portal-user-1002", "ato": "ATO-7EC4FB26"}
        )
        page = await answer.text()

    assert re.findall(r"<label for=\"person-\d\">([^<]+)</label>", form) == [
        "Priya Shah (submitter)",
        "Tom Evans (viewer)",
        "Ruth Okafor (submitter)",
    ]
    assert 'value="ATO-7EC4FB26"' in form
    assert answer.status == 200
    assert f'<form id="hand-off" method="post" action="{HAND_OFF}">' in page
    assert '<script src="/static/auto_post.js"></script>' in page
    assert "form-action 'self' http://127.0.0.1:8080" in answer.headers["Content-Security-Policy"]
    token_field = re.search(r'<input type="hidden" name="token" value="([^"]+)">', page)
    assert token_field is not None
    token = html.unescape(token_field.group(1))

    async def published() -> bytes:
        return jwks_body

    gateway = PortalSettings(
        jwks_url="http://127.0.0.1:8070/.well-known/jwks.json",
        issuer=settings.issuer,
        audience=settings.audience,
        deployment_mode="local",
    )
    keys = PortalKeys(published, "ES256", cache_s=600, refetch_min_interval_s=30)
    handed = await verify(token, keys, gateway, datetime.now(UTC))
    assert (handed.person, handed.role, handed.ato_id) == (
        Person("portal-user-1002", "Tom Evans"),
        Role.VIEWER,
        "ATO-7EC4FB26",
    )


async def test_an_unknown_person_or_no_organisation_mints_nothing() -> None:
    async with TestClient(TestServer(create_app(stand_in_settings(), [new_signing_key()]))) as c:
        stranger = await c.post("/sign-in", data={"person": "nobody", "ato": "ATO-1"})
        no_ato = await c.post("/sign-in", data={"person": "portal-user-1001", "ato": " "})
        stranger_page = await stranger.text()

    assert (stranger.status, no_ato.status) == (400, 400)
    assert "token" not in stranger_page


def test_a_key_kept_in_a_file_keeps_its_id_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "portal" / "signing-key.pem"

    first = load_or_create_key(path)
    again = load_or_create_key(path)

    assert first.kid == again.kid
    assert first.public_jwk() == again.public_jwk()
    assert path.stat().st_mode & 0o077 == 0
