"""CDP API keys, and a fresh JWT per REST request and per user-channel subscribe.

The key comes from the first of these that is set:

1. `coinbase.key_file`: the portal's JSON download `{"name": ..., "privateKey": ...}` ("id" is
   accepted for "name"). Refused when group or others have any access to it (`chmod 600`).
2. Environment `COINBASE_API_KEY` (the key name) and `COINBASE_API_SECRET` (the PEM; one-line
   secrets may spell newlines as `\\n`).
3. systemd credentials: `$CREDENTIALS_DIRECTORY/coinbase_key.json`, the same JSON, e.g. from
   `LoadCredential=coinbase_key.json:/etc/trader/coinbase_key.json` in the unit.

Only ES256 keys (ECDSA P-256, `-----BEGIN EC PRIVATE KEY-----`) are supported; Ed25519 keys are
refused with a clear error. Errors name the source, never the key material, and a
`Credentials` shows only its key name.

Tokens come from coinbase-advanced-py's `jwt_generator`. The REST `uri` claim is
`METHOD host[:port]/path` with the host of the URL actually requested (the SDK's
`format_jwt_uri` hard-codes api.coinbase.com), so the simulator on http://127.0.0.1:PORT
verifies the very tokens the daemon would send to Coinbase.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from trader.errors import TraderError

CREDENTIAL_NAME = "coinbase_key.json"
ENV_KEY = "COINBASE_API_KEY"
ENV_SECRET = "COINBASE_API_SECRET"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class AuthError(TraderError):
    """A key that cannot be loaded or used; the message never holds key material."""


class Credentials:
    """A CDP key name and its private key; repr and str show the name and source only."""

    __slots__ = ("_pem", "name", "source")

    def __init__(self, name: str, pem: str, source: str) -> None:
        self.name = name
        self.source = source
        self._pem = pem

    def __repr__(self) -> str:
        return f"Credentials(name={self.name!r}, source={self.source!r})"

    __str__ = __repr__


def load_credentials(key_file: str,
                     environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The key from `key_file`, the environment or systemd credentials; None when none is set.

    Raises AuthError when a source is set but unusable (missing, too open, malformed, Ed25519).
    """
    env = os.environ if environ is None else environ
    if key_file:
        return _from_file(Path(key_file).expanduser(), f"key file {key_file}")
    if env.get(ENV_KEY) or env.get(ENV_SECRET):
        return _from_env(env)
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / CREDENTIAL_NAME).exists():
        path = Path(directory) / CREDENTIAL_NAME
        return _from_file(path, f"systemd credential {path}")
    return None


def rest_jwt(creds: Credentials, method: str, url: str) -> str:
    """A fresh token (valid 120 s) for one REST request to `url` (query string ignored)."""
    return _sign(creds, jwt_uri(method, url))


def ws_jwt(creds: Credentials) -> str:
    """A fresh token (valid 120 s, no `uri` claim) for one websocket subscribe."""
    return _sign(creds, None)


def jwt_uri(method: str, url: str) -> str:
    """The `uri` claim for a request: `GET api.coinbase.com/api/v3/brokerage/accounts`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise AuthError(f"no host in the REST URL {url!r}")
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return f"{method.upper()} {host}{parts.path or '/'}"


def _sign(creds: Credentials, uri: str | None) -> str:
    # imported here, as the key checks below: a paper daemon never signs (9 MiB less RSS)
    from coinbase import jwt_generator

    try:
        if uri is None:
            return jwt_generator.build_ws_jwt(creds.name, creds._pem)
        return jwt_generator.build_rest_jwt(uri, creds.name, creds._pem)
    except Exception as exc:
        # The SDK's message may quote the key; keep only the type.
        raise AuthError(f"cannot sign a JWT with {creds!r}: {type(exc).__name__}") from None


def _from_file(path: Path, source: str) -> Credentials:
    try:
        with path.open("rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            if mode & 0o077:
                raise AuthError(
                    f"{source}: mode {mode:04o} gives group or others access to it; "
                    f"run `chmod 600 {path}`")
            raw = file.read(1_000_000)
    except OSError as exc:
        raise AuthError(f"{source}: cannot read it ({exc.strerror or type(exc).__name__})"
                        ) from None
    return _from_json(raw, source)


def _from_json(raw: bytes, source: str) -> Credentials:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"{source}: not valid JSON") from None
    if not isinstance(body, dict):
        raise AuthError(f"{source}: expected a JSON object with name and privateKey")
    name = body.get("name") or body.get("id")
    secret = body.get("privateKey")
    if not isinstance(name, str) or not name:
        raise AuthError(f"{source}: no key name (\"name\")")
    if not isinstance(secret, str) or not secret:
        raise AuthError(f"{source}: no private key (\"privateKey\")")
    return Credentials(name, _checked_pem(secret, source), source)


def _from_env(env: Mapping[str, str]) -> Credentials:
    name, secret = env.get(ENV_KEY, ""), env.get(ENV_SECRET, "")
    missing = [var for var, value in ((ENV_KEY, name), (ENV_SECRET, secret)) if not value]
    if missing:
        raise AuthError(f"environment: {ENV_KEY} and {ENV_SECRET} must both be set; "
                        f"{' and '.join(missing)} is empty")
    return Credentials(name, _checked_pem(secret, "environment"),
                       f"environment {ENV_KEY}/{ENV_SECRET}")


def _checked_pem(secret: str, source: str) -> str:
    """The secret as a PEM the SDK can sign ES256 with, or AuthError naming what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    pem = secret.replace("\\n", "\n").strip() + "\n"
    if not pem.startswith("-----BEGIN"):
        if _is_ed25519_seed(secret):
            raise AuthError(_ed25519_message(source))
        raise AuthError(f"{source}: the private key is not a PEM EC private key")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise AuthError(f"{source}: the private key PEM cannot be parsed "
                        "(or it is encrypted)") from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and kin
        raise AuthError(f"{source}: unsupported private key ({type(exc).__name__})") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise AuthError(_ed25519_message(source))
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise AuthError(f"{source}: the private key is not an EC P-256 key (ES256)")
    return pem


def _is_ed25519_seed(secret: str) -> bool:
    try:
        raw = base64.b64decode("".join(secret.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) in (32, 64)


def _ed25519_message(source: str) -> str:
    return (f"{source}: this is an Ed25519 key; only ES256 (ECDSA P-256) CDP keys are "
            "supported. Create the API key with the ECDSA signature algorithm.")


TOKEN_MAX_AGE_S = 60.0  # a pre-minted token is used at most this long after minting (of 120)
TOKEN_REFILL_DELAY_S = 0.05  # mint the next one after the request has gone out

class PremintedTokens:
    """The JWT of the next POST to one URL (the create-order endpoint), minted ahead of time.

    Signing costs 100-400 µs, on the path from a bar close to the order, so the token is
    made while nothing is waiting. Each token still serves exactly one request, and one older
    than TOKEN_MAX_AGE_S is replaced by a fresh one, well inside its 120 s lifetime.
    """

    def __init__(self, credentials: Credentials,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._credentials = credentials
        self._monotonic = monotonic
        self._ready: tuple[str, str, float] | None = None  # url, token, minted at

    @property
    def minted(self) -> bool:
        """Whether a token waits for the next request."""
        return self._ready is not None

    def take(self, url: str) -> str:
        ready, self._ready = self._ready, None
        if ready is not None and ready[0] == url and (
                self._monotonic() - ready[2] < TOKEN_MAX_AGE_S):
            token = ready[1]
        else:
            token = rest_jwt(self._credentials, "POST", url)
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to mint ahead for
            asyncio.get_running_loop().call_later(TOKEN_REFILL_DELAY_S, self.refill, url)
        return token

    def refill(self, url: str) -> None:
        if self._ready is None:
            self._ready = (url, rest_jwt(self._credentials, "POST", url),
                           self._monotonic())
