"""The simulator's side of CDP JWT auth: verify a token against the known public keys.

Written with PyJWT directly, not with trader.coinbase.auth, so a bug in how the daemon signs
cannot hide by being mirrored here. Rules (PROTOCOL.md 3.5): header `alg` ES256 and `kid` a
known key name; claims `sub == kid`, `iss == "cdp"`, `nbf <= now + skew`, `exp >= now`,
`exp - nbf <= 120`; REST tokens also `uri == "METHOD host[:port]/path"`. A failure raises
`Unauthorized`; the server answers it with HTTP 401 `Unauthorized` (REST) or the
`authentication failure` error frame (websocket).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

MAX_LIFETIME_S = 120
CLOCK_SKEW_S = 5

PublicKey = ec.EllipticCurvePublicKey


class Unauthorized(Exception):
    """A token the exchange would refuse; `reason` says why (for logs and tests only)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def public_key(pem: str | bytes) -> PublicKey:
    """An EC P-256 public key from its PEM."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("not an EC P-256 public key")
    return key


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <jwt>` header, or Unauthorized."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("no bearer token")
    return token.strip()


class JwtVerifier:
    """Checks CDP tokens signed by any of `keys` (key name -> public key or its PEM)."""

    def __init__(self, keys: Mapping[str, PublicKey | str | bytes],
                 skew_s: float = CLOCK_SKEW_S) -> None:
        self._keys = {name: key if isinstance(key, ec.EllipticCurvePublicKey)
                      else public_key(key) for name, key in keys.items()}
        self._skew_s = skew_s

    def verify_rest(self, token: str, method: str, host: str, path: str,
                    now_s: float | None = None) -> str:
        """The key name of a valid token for `METHOD host/path` (host as in the Host header)."""
        name, claims = self._verify(token, now_s)
        expected = f"{method.upper()} {host}{path}"
        if claims.get("uri") != expected:
            raise Unauthorized(f"uri claim {claims.get('uri')!r} is not {expected!r}")
        return name

    def verify_ws(self, token: str, now_s: float | None = None) -> str:
        """The key name of a valid websocket (subscribe) token."""
        return self._verify(token, now_s)[0]

    def _verify(self, token: str, now_s: float | None) -> tuple[str, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("malformed token") from None
        if header.get("alg") != "ES256":
            raise Unauthorized(f"alg {header.get('alg')!r} is not ES256")
        name = header.get("kid")
        if not isinstance(name, str) or (key := self._keys.get(name)) is None:
            raise Unauthorized(f"unknown key {name!r}")
        try:
            claims = jwt.decode(token, key, algorithms=["ES256"], options={
                "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                "verify_aud": False, "require": ["sub", "iss", "nbf", "exp"]})
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"rejected: {exc}") from None
        self._check_claims(name, claims, time.time() if now_s is None else now_s)
        return name, claims

    def _check_claims(self, name: str, claims: dict[str, Any], now_s: float) -> None:
        if claims["sub"] != name:
            raise Unauthorized(f"sub {claims['sub']!r} is not the kid {name!r}")
        if claims["iss"] != "cdp":
            raise Unauthorized(f"iss {claims['iss']!r} is not 'cdp'")
        nbf, exp = claims["nbf"], claims["exp"]
        if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (nbf, exp)):
            raise Unauthorized("nbf and exp must be numbers")
        if exp < now_s:
            raise Unauthorized(f"expired {now_s - exp:.0f} s ago")
        if nbf > now_s + self._skew_s:
            raise Unauthorized(f"not valid for another {nbf - now_s:.0f} s")
        if exp - nbf > MAX_LIFETIME_S:
            raise Unauthorized(f"lifetime {exp - nbf} s is over {MAX_LIFETIME_S} s")
