"""Signing keys and hand-off tokens as the portal makes them (ES256 JWTs, keys as a JWKS).

The gateway's tests build their tokens with these too, so what they check is what the stand-in
sends.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from services.core.people import Person, Role

ALGORITHM = "ES256"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def new_signing_key(kid: str | None = None) -> SigningKey:
    return SigningKey(
        kid or f"portal-{secrets.token_hex(4)}", ec.generate_private_key(ec.SECP256R1())
    )


def load_or_create_key(path: Path) -> SigningKey:
    """The key kept in `path` (PEM, mode 600), made there the first time: tokens the gateway
    holds keys for stay valid across the stand-in's restarts."""
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        kid = (
            "portal-"
            + jwt.utils.base64url_encode(
                loaded.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
                )[-6:]
            ).decode()
        )
        return SigningKey(kid, loaded)
    key = new_signing_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return load_or_create_key(path)


def jwks(keys: list[SigningKey]) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def mint(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    person: Person,
    role: Role,
    ato_id: str,
    now: datetime,
    lifetime_s: int = 60,
    token_id: str | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A hand-off token for `person` of `ato_id`, valid `lifetime_s` from `now`."""
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": person.subject,
        "name": person.name,
        "ato": ato_id,
        "role": role.value,
        "jti": token_id or str(uuid.uuid4()),
        "iat": issued_at,
        "exp": issued_at + lifetime_s,
        **(extra_claims or {}),
    }
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
