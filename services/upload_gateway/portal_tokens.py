"""The portal's hand-off token: a short-lived JWT naming a person, their ATO and their role,
verified against the keys the portal publishes (a JWKS).

What is checked, in order: the header's algorithm is the pinned one (never `none` or HS*, which
would let the token choose how it is checked), its key id is among the portal's keys (read again
when it is not: the portal rotated them), the signature, then `iss` and `aud` exactly, `iat` and
`exp` against the gateway's clock with a small leeway and a bound on the token's lifetime, and the
claims the session needs. Whether the `jti` was used before and whether the ATO exists are the
database's to say (pages/portal_sign_in.py). Nothing here logs a token or a claim's value.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import jwt

from services.core.logging import get_logger
from services.core.people import Person, Role
from services.upload_gateway.portal_settings import PortalSettings

log = get_logger()

MAX_TOKEN_CHARS = 4096
MAX_CLAIM_CHARS = 200  # subject, display name, ATO id, token id
REQUIRED_CLAIMS = ("iss", "aud", "sub", "name", "ato", "role", "jti", "iat", "exp")
KEY_TYPES = {"ES256": "EC", "RS256": "RSA"}


class Refusal(StrEnum):
    """Why a hand-off was refused: the page's words and status follow from it (texts.py)."""

    MALFORMED = "malformed"  # not a JWT, or missing a claim the session needs
    ALGORITHM = "algorithm"  # not the pinned algorithm
    UNKNOWN_KEY = "unknown_key"  # signed with a key the portal does not publish
    SIGNATURE = "signature"  # the signature does not match
    ISSUER = "issuer"
    AUDIENCE = "audience"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"  # issued in the future
    TOO_LONG_LIVED = "too_long_lived"  # not the short-lived token a hand-off is
    REPLAYED = "replayed"  # its `jti` was used before
    UNKNOWN_ATO = "unknown_ato"
    KEYS_UNAVAILABLE = "keys_unavailable"  # the portal's keys could not be read


class HandOffRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


class KeysUnavailable(Exception):
    """The portal's JWKS could not be read or made no sense (no detail: it is logged once)."""


@dataclass(frozen=True, slots=True)
class HandOff:
    """A verified hand-off, before its `jti` is spent."""

    person: Person
    role: Role
    ato_id: str
    token_id: str  # the `jti`
    expires_at: datetime  # until when the `jti` must be remembered (its `exp` plus the leeway)


def signing_keys(document: bytes, algorithm: str) -> dict[str, jwt.PyJWK]:
    """The keys of a JWKS document that can check `algorithm`'s signatures, by key id.

    Keys for another algorithm, type or use, and keys without an id, are passed over: a portal
    may publish those for others."""
    try:
        parsed = json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeysUnavailable("the JWKS is not JSON") from None
    entries = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise KeysUnavailable("the JWKS has no key list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_CLAIM_CHARS:
            continue
        if entry.get("kty") != KEY_TYPES[algorithm] or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", algorithm) != algorithm:
            continue
        try:
            keys[kid] = jwt.PyJWK(entry, algorithm=algorithm)
        except jwt.PyJWTError:
            continue
    return keys


KeyFetch = Callable[[], Awaitable[bytes]]


class PortalKeys:
    """The portal's signing keys, read through `fetch` and kept for `cache_s`.

    A key id not among them makes one read again (the portal rotated its keys), at most once per
    `refetch_min_interval_s`; a failed read keeps the keys already held and is not retried
    before that interval either. Reads are one at a time."""

    def __init__(
        self,
        fetch: KeyFetch,
        algorithm: str,
        *,
        cache_s: float,
        refetch_min_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._algorithm = algorithm
        self._cache_s = cache_s
        self._refetch_min_interval_s = refetch_min_interval_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._read_at: float | None = None  # the last successful read
        self._tried_at: float | None = None  # the last read, successful or not
        self._lock = asyncio.Lock()

    def _due(self, kid: str) -> bool:
        now = self._clock()
        if self._tried_at is not None and now - self._tried_at < self._refetch_min_interval_s:
            return False
        stale = self._read_at is None or now - self._read_at >= self._cache_s
        return stale or kid not in self._keys

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with this id; None if the portal does not publish it. Raises
        `KeysUnavailable` only while no key has ever been read."""
        if self._due(kid):
            async with self._lock:
                if self._due(kid):  # another request may have just read them
                    await self._read()
        if not self._keys and self._read_at is None:
            raise KeysUnavailable("no keys read yet")
        return self._keys.get(kid)

    async def _read(self) -> None:
        self._tried_at = self._clock()
        try:
            keys = signing_keys(await self._fetch(), self._algorithm)
        except KeysUnavailable as problem:
            log.warning("portal_keys_unreadable", problem=str(problem), keys_held=len(self._keys))
            return
        self._keys = keys
        self._read_at = self._clock()
        log.info("portal_keys_read", keys=len(keys))


def _text_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_CLAIM_CHARS:
        raise HandOffRefused(Refusal.MALFORMED)
    return value.strip()


def _time_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HandOffRefused(Refusal.MALFORMED)
    return value


def _header(token: str, settings: PortalSettings) -> str:
    """The key id, once the header names the pinned algorithm."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise HandOffRefused(Refusal.MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise HandOffRefused(Refusal.MALFORMED) from None
    if header.get("alg") != settings.algorithm:
        raise HandOffRefused(Refusal.ALGORITHM)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise HandOffRefused(Refusal.UNKNOWN_KEY)
    return kid


def _signed_claims(token: str, key: jwt.PyJWK, settings: PortalSettings) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[settings.algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            # The times are checked below against the gateway's own (injectable) clock.
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": list(REQUIRED_CLAIMS),
            },
        )
    except jwt.InvalidSignatureError:
        raise HandOffRefused(Refusal.SIGNATURE) from None
    except jwt.InvalidIssuerError:
        raise HandOffRefused(Refusal.ISSUER) from None
    except jwt.InvalidAudienceError:
        raise HandOffRefused(Refusal.AUDIENCE) from None
    except jwt.InvalidAlgorithmError:
        raise HandOffRefused(Refusal.ALGORITHM) from None
    except jwt.PyJWTError:  # a missing claim, a body that is not JSON, ...
        raise HandOffRefused(Refusal.MALFORMED) from None
    return claims


def _check_times(claims: Mapping[str, Any], settings: PortalSettings, now: datetime) -> int:
    """The token's `exp`, once it is current and short-lived."""
    issued_at, expires = _time_claim(claims, "iat"), _time_claim(claims, "exp")
    moment = now.timestamp()
    if expires - issued_at > settings.max_token_lifetime_s or expires <= issued_at:
        raise HandOffRefused(Refusal.TOO_LONG_LIVED)
    if moment >= expires + settings.leeway_s:
        raise HandOffRefused(Refusal.EXPIRED)
    if issued_at > moment + settings.leeway_s:
        raise HandOffRefused(Refusal.NOT_YET_VALID)
    not_before = claims.get("nbf")
    if not_before is not None and _time_claim(claims, "nbf") > moment + settings.leeway_s:
        raise HandOffRefused(Refusal.NOT_YET_VALID)
    return expires


async def verify(token: str, keys: PortalKeys, settings: PortalSettings, now: datetime) -> HandOff:
    """The hand-off a token carries, or `HandOffRefused` saying why not."""
    kid = _header(token.strip(), settings)
    try:
        key = await keys.key(kid)
    except KeysUnavailable:
        raise HandOffRefused(Refusal.KEYS_UNAVAILABLE) from None
    if key is None:
        raise HandOffRefused(Refusal.UNKNOWN_KEY)
    claims = _signed_claims(token.strip(), key, settings)
    expires = _check_times(claims, settings, now)
    try:
        role = Role(claims["role"])
    except (ValueError, TypeError):
        raise HandOffRefused(Refusal.MALFORMED) from None
    return HandOff(
        person=Person(_text_claim(claims, "sub"), _text_claim(claims, "name")),
        role=role,
        ato_id=_text_claim(claims, "ato"),
        token_id=_text_claim(claims, "jti"),
        expires_at=datetime.fromtimestamp(expires + settings.leeway_s, UTC),
    )
