"""The portal's hand-off token, checked against hand-built tokens and key sets: the pinned
algorithm, the portal's keys (and their rotation), the issuer, the audience, the times and the
claims a session needs. Spent `jti`s and unknown ATOs are the database's: the gateway's
integration tests (test_gateway_portal_sign_in.py)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.core.people import Person, Role
from services.portal_standin.tokens import SigningKey, jwks, mint, new_signing_key
from services.upload_gateway.portal_settings import PortalSettings
from services.upload_gateway.portal_tokens import (
    HandOff,
    HandOffRefused,
    PortalKeys,
    Refusal,
    signing_keys,
    verify,
)

ISSUER = "https://portal.example.test"
AUDIENCE = "achievements-upload-gateway"
NOW = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
PRIYA = Person("p-0001", "Priya Shah")
SETTINGS = PortalSettings(
    jwks_url="https://portal.example.test/.well-known/jwks.json",
    issuer=ISSUER,
    audience=AUDIENCE,
    deployment_mode="production",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PublishedKeys:
    """What the portal's JWKS URL answers, and how often it was read."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.reads = 0
        self.failing = False

    async def __call__(self) -> bytes:
        self.reads += 1
        if self.failing:
            return b"<html>bad gateway</html>"
        return json.dumps(jwks(self.keys)).encode()


def portal_keys(published: PublishedKeys, clock: Clock | None = None) -> PortalKeys:
    return PortalKeys(
        published,
        "ES256",
        cache_s=600,
        refetch_min_interval_s=30,
        clock=clock or Clock(),
    )


def token(key: SigningKey, **changes: Any) -> str:
    arguments: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "person": PRIYA,
        "role": Role.SUBMITTER,
        "ato_id": "ATO-7EC4FB26",
        "now": NOW,
        "lifetime_s": 60,
        "token_id": "jti-1",
    }
    return mint(key, **{**arguments, **changes})


async def refusal(raw: str, keys: PortalKeys, now: datetime = NOW) -> Refusal:
    with pytest.raises(HandOffRefused) as refused:
        await verify(raw, keys, SETTINGS, now)
    return refused.value.refusal


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_good_token_names_the_person_their_ato_and_role() -> None:
    key = new_signing_key("k1")
    keys = portal_keys(PublishedKeys(key))

    handed = await verify(token(key, role=Role.VIEWER), keys, SETTINGS, NOW + timedelta(seconds=5))

    assert handed == HandOff(
        person=Person("p-0001", "Priya Shah"),
        role=Role.VIEWER,
        ato_id="ATO-7EC4FB26",
        token_id="jti-1",
        # its `exp` (NOW + 60 s) plus the 30 s leeway: how long the jti is remembered
        expires_at=datetime(2026, 6, 15, 9, 1, 30, tzinfo=UTC),
    )


async def test_an_expired_token_is_refused_after_the_leeway() -> None:
    key = new_signing_key("k1")
    keys = portal_keys(PublishedKeys(key))
    raw = token(key)

    in_leeway = await verify(raw, keys, SETTINGS, NOW + timedelta(seconds=89))
    assert in_leeway.person == PRIYA
    assert await refusal(raw, keys, NOW + timedelta(seconds=90)) is Refusal.EXPIRED


async def test_a_token_from_the_future_or_living_long_is_refused() -> None:
    key = new_signing_key("k1")
    keys = portal_keys(PublishedKeys(key))

    future = token(key, now=NOW + timedelta(seconds=31))
    assert await refusal(future, keys) is Refusal.NOT_YET_VALID
    long_lived = token(key, lifetime_s=301)
    assert await refusal(long_lived, keys) is Refusal.TOO_LONG_LIVED


async def test_a_wrong_issuer_or_audience_is_refused() -> None:
    key = new_signing_key("k1")
    keys = portal_keys(PublishedKeys(key))

    assert await refusal(token(key, issuer="https://evil.test"), keys) is Refusal.ISSUER
    assert await refusal(token(key, audience="another-service"), keys) is Refusal.AUDIENCE


async def test_a_token_signed_by_another_key_under_a_published_id_is_refused() -> None:
    published = new_signing_key("k1")
    impostor = new_signing_key("k1")  # same key id, another private key
    keys = portal_keys(PublishedKeys(published))

    assert await refusal(token(impostor), keys) is Refusal.SIGNATURE


async def test_none_and_hmac_and_other_algorithms_are_refused_before_any_key_is_read() -> None:
    key = new_signing_key("k1")
    published = PublishedKeys(key)
    keys = portal_keys(published)
    claims = jwt.decode(token(key), options={"verify_signature": False})
    unsigned = f"{b64({'alg': 'none', 'kid': 'k1'})}.{b64(claims)}."
    # HS256 keyed with the portal's public key: the classic confusion of algorithms.
    public_secret = key.public_jwk()["x"].encode()
    hmac_signed = jwt.encode(claims, public_secret, algorithm="HS256", headers={"kid": "k1"})
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_signed = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "k1"})

    assert await refusal(unsigned, keys) is Refusal.ALGORITHM
    assert await refusal(hmac_signed, keys) is Refusal.ALGORITHM
    assert await refusal(rsa_signed, keys) is Refusal.ALGORITHM
    assert published.reads == 0


async def test_an_unknown_key_id_reads_the_keys_again_and_finds_the_rotated_key() -> None:
    old, new = new_signing_key("k1"), new_signing_key("k2")
    published = PublishedKeys(old)
    clock = Clock()
    keys = portal_keys(published, clock)
    assert (await verify(token(old), keys, SETTINGS, NOW)).person == PRIYA
    assert published.reads == 1

    published.keys = [new]  # the portal rotates its key
    clock.now += 31  # past the bound on reads

    handed = await verify(token(new, token_id="jti-2"), keys, SETTINGS, NOW)
    assert handed.token_id == "jti-2"
    assert published.reads == 2
    assert await refusal(token(old), keys) is Refusal.UNKNOWN_KEY  # no longer published


async def test_made_up_key_ids_read_the_keys_at_most_once_per_interval() -> None:
    key = new_signing_key("k1")
    published = PublishedKeys(key)
    clock = Clock()
    keys = portal_keys(published, clock)
    await verify(token(key), keys, SETTINGS, NOW)

    for n in range(5):
        stranger = new_signing_key(f"made-up-{n}")
        assert await refusal(token(stranger), keys) is Refusal.UNKNOWN_KEY
    assert published.reads == 1  # within 30 s of the first read: not read again

    clock.now += 30
    assert await refusal(token(new_signing_key("made-up-6")), keys) is Refusal.UNKNOWN_KEY
    assert published.reads == 2


async def test_keys_are_read_again_once_the_cache_ages() -> None:
    key = new_signing_key("k1")
    published = PublishedKeys(key)
    clock = Clock()
    keys = portal_keys(published, clock)
    await verify(token(key), keys, SETTINGS, NOW)
    clock.now += 599
    await verify(token(key), keys, SETTINGS, NOW)
    assert published.reads == 1
    clock.now += 1
    await verify(token(key), keys, SETTINGS, NOW)
    assert published.reads == 2


async def test_an_unreadable_jwks_keeps_the_keys_held_and_refuses_while_none_are() -> None:
    key = new_signing_key("k1")
    published = PublishedKeys(key)
    published.failing = True
    clock = Clock()
    keys = portal_keys(published, clock)

    assert await refusal(token(key), keys) is Refusal.KEYS_UNAVAILABLE
    published.failing = False
    assert await refusal(token(key), keys) is Refusal.KEYS_UNAVAILABLE  # not retried at once
    clock.now += 30
    assert (await verify(token(key), keys, SETTINGS, NOW)).person == PRIYA

    published.failing = True
    clock.now += 600  # stale: read again, fails, the held key still checks
    assert (await verify(token(key), keys, SETTINGS, NOW)).person == PRIYA
    assert published.reads == 3


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "admin"},
        {"sub": ""},
        {"name": "   "},
        {"ato": "A" * 201},
        {"exp": "soon"},
    ],
)
async def test_claims_a_session_cannot_use_are_refused(claims: dict[str, Any]) -> None:
    key = new_signing_key("k1")
    keys = portal_keys(PublishedKeys(key))

    assert await refusal(token(key, extra_claims=claims), keys) is Refusal.MALFORMED


async def test_a_token_missing_its_jti_or_not_a_token_is_refused() -> None:
    key = new_signing_key("k1")
    keys = portal_keys(PublishedKeys(key))
    claims = jwt.decode(token(key), options={"verify_signature": False})
    del claims["jti"]
    without_jti = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": "k1"})

    assert await refusal(without_jti, keys) is Refusal.MALFORMED
    assert await refusal("not a token", keys) is Refusal.MALFORMED
    assert await refusal("", keys) is Refusal.MALFORMED
    assert await refusal("e" * 5000, keys) is Refusal.MALFORMED


def test_only_signing_keys_for_the_pinned_algorithm_are_taken_from_a_jwks() -> None:
    ec_key = new_signing_key("ec")
    rsa_public = jwt.algorithms.RSAAlgorithm.to_jwk(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), as_dict=True
    )
    document = {
        "keys": [
            ec_key.public_jwk(),
            {**rsa_public, "kid": "rsa"},
            {**new_signing_key("enc").public_jwk(), "use": "enc"},
            {**new_signing_key("other-alg").public_jwk(), "alg": "ES384"},
            {k: v for k, v in new_signing_key("x").public_jwk().items() if k != "kid"},
            "not a key",
        ]
    }

    assert list(signing_keys(json.dumps(document).encode(), "ES256")) == ["ec"]
    assert list(signing_keys(json.dumps(document).encode(), "RS256")) == ["rsa"]


def test_the_jwks_url_must_be_https_outside_local_mode_and_needs_an_issuer() -> None:
    with pytest.raises(ValueError, match="GATEWAY_PORTAL_JWKS_URL must be an https URL"):
        PortalSettings(
            jwks_url="http://portal.test/jwks", issuer=ISSUER, deployment_mode="production"
        )
    with pytest.raises(ValueError, match="GATEWAY_PORTAL_ISSUER must be set"):
        PortalSettings(jwks_url="https://portal.test/jwks", deployment_mode="production")
    local = PortalSettings(
        jwks_url="http://127.0.0.1:8070/jwks", issuer=ISSUER, deployment_mode="local"
    )
    assert local.enabled
    assert not PortalSettings(deployment_mode="production").enabled
