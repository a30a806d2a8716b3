"""CDP keys from file, env and systemd credentials; SDK-signed JWTs checked by the simulator.

Keys are generated at test time; none is committed.
"""

from __future__ import annotations

import base64
import json
import time
import traceback
from pathlib import Path

import jwt
import pytest
from coinbase import jwt_generator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trader.coinbase.auth import (
    CREDENTIAL_NAME,
    AuthError,
    Credentials,
    jwt_uri,
    load_credentials,
    rest_jwt,
    ws_jwt,
)
from trader.simulator.auth import JwtVerifier, Unauthorized, bearer_token, public_key

NAME = "organizations/0f3a/apiKeys/5b1c"
ORDERS = "/api/v3/brokerage/orders"


def ec_pem(curve: ec.EllipticCurve | None = None) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    return pem, key


@pytest.fixture
def key() -> tuple[str, ec.EllipticCurvePrivateKey]:
    return ec_pem()


def write_key(path: Path, body: object, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(body))
    path.chmod(mode)
    return path


def secret_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM: none of them may appear anywhere in output."""
    return [line for line in pem.strip().splitlines() if not line.startswith("-----")]


def assert_no_secret(exc: BaseException, secret: str) -> None:
    shown = "".join(traceback.format_exception(exc)) + repr(exc)
    pieces = secret_lines(secret) if "-----BEGIN" in secret else [secret]
    for piece in pieces:
        assert piece not in shown


def verifier_for(key: ec.EllipticCurvePrivateKey, name: str = NAME) -> JwtVerifier:
    return JwtVerifier({name: key.public_key()})


# -- sources --------------------------------------------------------------------------------

def test_a_0600_key_file_is_loaded(tmp_path, key):
    pem, _ = key
    path = write_key(tmp_path / "key.json", {"name": NAME, "privateKey": pem})
    creds = load_credentials(str(path), environ={})
    assert creds.name == NAME and str(path) in creds.source


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_open_to_group_or_others_is_refused(tmp_path, key, mode):
    pem, _ = key
    path = write_key(tmp_path / "key.json", {"name": NAME, "privateKey": pem}, mode)
    with pytest.raises(AuthError) as caught:
        load_credentials(str(path), environ={})
    message = str(caught.value)
    assert str(path) in message and f"{mode:04o}" in message and "chmod 600" in message
    assert_no_secret(caught.value, pem)


def test_the_key_file_wins_over_the_environment(tmp_path, key):
    pem, _ = key
    path = write_key(tmp_path / "key.json", {"id": NAME, "privateKey": pem})
    creds = load_credentials(str(path), environ={"COINBASE_API_KEY": "other",
                                                 "COINBASE_API_SECRET": pem})
    assert creds.name == NAME


def test_the_environment_with_escaped_newlines(key):
    pem, private = key
    creds = load_credentials("", environ={"COINBASE_API_KEY": NAME,
                                          "COINBASE_API_SECRET": pem.replace("\n", "\\n")})
    assert creds.name == NAME and "environment" in creds.source
    assert verifier_for(private).verify_ws(ws_jwt(creds)) == NAME


def test_half_an_environment_is_an_error(key):
    pem, _ = key
    with pytest.raises(AuthError, match="COINBASE_API_KEY is empty") as caught:
        load_credentials("", environ={"COINBASE_API_SECRET": pem})
    assert_no_secret(caught.value, pem)
    with pytest.raises(AuthError, match="COINBASE_API_SECRET is empty"):
        load_credentials("", environ={"COINBASE_API_KEY": NAME})


def test_systemd_credentials_directory(tmp_path, key):
    pem, private = key
    write_key(tmp_path / CREDENTIAL_NAME, {"name": NAME, "privateKey": pem}, 0o400)
    creds = load_credentials("", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds.name == NAME and "systemd credential" in creds.source
    assert verifier_for(private).verify_ws(ws_jwt(creds)) == NAME


def test_no_source_is_none(tmp_path):
    assert load_credentials("", environ={}) is None
    assert load_credentials("", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None


def test_a_configured_key_file_that_is_missing_is_an_error(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(AuthError, match="cannot read it") as caught:
        load_credentials(str(path), environ={})
    assert str(path) in str(caught.value)


# -- bad keys: clear errors, no key material ---------------------------------------------------

def ed25519_secrets() -> list[str]:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()
    return [base64.b64encode(seed).decode(), base64.b64encode(seed + public).decode(), pkcs8]


@pytest.mark.parametrize("secret", ed25519_secrets(), ids=["seed", "seed-and-public", "pkcs8"])
def test_an_ed25519_key_is_refused_clearly(tmp_path, secret):
    path = write_key(tmp_path / "key.json", {"name": NAME, "privateKey": secret})
    with pytest.raises(AuthError, match=r"Ed25519.*only ES256") as caught:
        load_credentials(str(path), environ={})
    assert_no_secret(caught.value, secret)


def bad_secrets() -> list[tuple[str, str]]:
    p384, _ = ec_pem(ec.SECP384R1())
    good, _ = ec_pem()
    body = "".join(secret_lines(good))
    truncated = "\n".join([*good.splitlines()[:3], "-----END EC PRIVATE KEY-----"])
    return [(p384, "not an EC P-256 key"), (body, "not a PEM"),
            (truncated, "cannot be parsed"), ("hunter2-secret-value", "not a PEM")]


@pytest.mark.parametrize(("secret", "words"), bad_secrets())
def test_a_bad_key_is_refused_without_showing_it(tmp_path, secret, words):
    path = write_key(tmp_path / "key.json", {"name": NAME, "privateKey": secret})
    with pytest.raises(AuthError, match=words) as caught:
        load_credentials(str(path), environ={})
    assert_no_secret(caught.value, secret)
    with pytest.raises(AuthError, match=words) as caught:
        load_credentials("", environ={"COINBASE_API_KEY": NAME, "COINBASE_API_SECRET": secret})
    assert_no_secret(caught.value, secret)


@pytest.mark.parametrize(("body", "words"), [
    ('{"name": "x", "privateKey": "abc"', "not valid JSON"),
    ('["x"]', "JSON object"),
    ('{"privateKey": "abc"}', "no key name"),
    ('{"name": "x"}', "no private key"),
])
def test_a_malformed_key_file_is_refused(tmp_path, body, words):
    path = tmp_path / "key.json"
    path.write_text(body)
    path.chmod(0o600)
    with pytest.raises(AuthError, match=words) as caught:
        load_credentials(str(path), environ={})
    assert "abc" not in str(caught.value)


def test_the_secret_is_absent_from_repr_and_str(tmp_path, key):
    pem, _ = key
    path = write_key(tmp_path / "key.json", {"name": NAME, "privateKey": pem})
    creds = load_credentials(str(path), environ={})
    for shown in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert NAME in shown
        assert all(line not in shown for line in secret_lines(pem))
        assert "PRIVATE" not in shown


def test_a_signing_failure_hides_the_key():
    creds = Credentials(NAME, "-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0\n", "test")
    with pytest.raises(AuthError, match="cannot sign") as caught:
        rest_jwt(creds, "GET", "https://api.coinbase.com/api/v3/brokerage/accounts")
    assert_no_secret(caught.value, "c2VjcmV0")


# -- tokens: signed by the SDK, verified by the simulator ----------------------------------------

@pytest.mark.parametrize(("method", "url", "uri"), [
    ("GET", "https://api.coinbase.com/api/v3/brokerage/accounts?limit=5",
     "GET api.coinbase.com/api/v3/brokerage/accounts"),
    ("post", "https://api.coinbase.com:443/api/v3/brokerage/orders",
     "POST api.coinbase.com/api/v3/brokerage/orders"),
    ("GET", "http://127.0.0.1:8123/api/v3/brokerage/orders/historical/batch",
     "GET 127.0.0.1:8123/api/v3/brokerage/orders/historical/batch"),
    ("GET", "http://[::1]:8123/x", "GET [::1]:8123/x"),
])
def test_the_uri_claim_is_method_host_port_path(method, url, uri):
    assert jwt_uri(method, url) == uri


def test_the_uri_for_coinbase_matches_the_sdk():
    assert jwt_uri("GET", f"https://api.coinbase.com{ORDERS}") == jwt_generator.format_jwt_uri(
        "GET", ORDERS)


def creds_for(key: tuple[str, ec.EllipticCurvePrivateKey]) -> Credentials:
    return load_credentials("", environ={"COINBASE_API_KEY": NAME,
                                         "COINBASE_API_SECRET": key[0]})


def test_a_rest_token_round_trips_through_the_simulator(key):
    creds = creds_for(key)
    token = rest_jwt(creds, "POST", f"http://127.0.0.1:8123{ORDERS}")
    verifier = verifier_for(key[1])
    assert verifier.verify_rest(token, "POST", "127.0.0.1:8123", ORDERS) == NAME
    header, claims = jwt.get_unverified_header(token), jwt.decode(
        token, options={"verify_signature": False})
    assert header["kid"] == NAME and header["alg"] == "ES256" and len(header["nonce"]) == 64
    assert claims["exp"] - claims["nbf"] == 120 and claims["iss"] == "cdp"
    assert rest_jwt(creds, "POST", f"http://127.0.0.1:8123{ORDERS}") != token  # fresh each time


def test_a_ws_token_round_trips_and_has_no_uri(key):
    token = ws_jwt(creds_for(key))
    assert verifier_for(key[1]).verify_ws(token) == NAME
    assert "uri" not in jwt.decode(token, options={"verify_signature": False})


def test_a_public_key_pem_is_accepted(key):
    pem = key[1].public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    verifier = JwtVerifier({NAME: pem.decode()})
    assert verifier.verify_ws(ws_jwt(creds_for(key))) == NAME
    assert public_key(pem).public_numbers() == key[1].public_key().public_numbers()


def forged(private: ec.EllipticCurvePrivateKey, **changes) -> str:
    now = int(time.time())
    claims = {"sub": NAME, "iss": "cdp", "nbf": now, "exp": now + 120,
              "uri": f"GET 127.0.0.1:8123{ORDERS}"}
    headers = {"kid": changes.pop("kid", NAME), "nonce": "00" * 32}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, private,
                      algorithm="ES256", headers=headers)


def test_a_hand_made_good_token_is_accepted(key):
    assert verifier_for(key[1]).verify_rest(forged(key[1]), "GET", "127.0.0.1:8123",
                                            ORDERS) == NAME


def _other_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def now() -> int:
    """Read when a test runs, not at import: a parallel run may reach it minutes later."""
    return int(time.time())


# label: (how the request or token differs from a good one, what the reason says)
REJECTIONS = {
    "bad signature": (lambda k: {"token": forged(_other_key())}, "rejected"),
    "expired": (lambda k: {"now_s": time.time() + 121}, "expired"),
    "expired claim": (lambda k: {"token": forged(k, nbf=now() - 200, exp=now() - 80)}, "expired"),
    "not yet valid": (lambda k: {"token": forged(k, nbf=now() + 60, exp=now() + 120)},
                      "not valid"),
    "too long a lifetime": (lambda k: {"token": forged(k, exp=now() + 3600)}, "lifetime"),
    "wrong method": (lambda k: {"method": "POST"}, "uri claim"),
    "wrong host": (lambda k: {"host": "api.coinbase.com"}, "uri claim"),
    "wrong port": (lambda k: {"host": "127.0.0.1:8124"}, "uri claim"),
    "wrong path": (lambda k: {"path": "/api/v3/brokerage/accounts"}, "uri claim"),
    "no uri": (lambda k: {"token": forged(k, uri=None)}, "uri claim"),
    "unknown key": (lambda k: {"token": forged(k, kid="organizations/x/apiKeys/y")},
                    "unknown key"),
    "sub is not kid": (lambda k: {"token": forged(k, sub="someone")}, "sub"),
    "wrong iss": (lambda k: {"token": forged(k, iss="coinbase-cloud")}, "iss"),
    "no exp": (lambda k: {"token": forged(k, exp=None)}, "rejected"),
    "garbage": (lambda k: {"token": "not.a.jwt"}, "malformed"),
    "hs256": (lambda k: {"token": jwt.encode({"sub": NAME}, "k" * 64, algorithm="HS256",
                                             headers={"kid": NAME})}, "alg"),
    "alg none": (lambda k: {"token": jwt.encode({"sub": NAME}, None, algorithm="none",
                                                headers={"kid": NAME})}, "alg"),
}


@pytest.mark.parametrize("label", list(REJECTIONS))
def test_bad_tokens_are_rejected(key, label):
    private = key[1]
    changes, words = REJECTIONS[label]
    request = {"token": forged(private), "method": "GET", "host": "127.0.0.1:8123",
               "path": ORDERS, "now_s": None, **changes(private)}
    with pytest.raises(Unauthorized, match=words):
        verifier_for(private).verify_rest(**request)


@pytest.mark.parametrize(("header", "token"), [("Bearer a.b.c", "a.b.c"),
                                                ("bearer  a.b.c ", "a.b.c")])
def test_bearer_token(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic a.b.c"])
def test_a_missing_bearer_token_is_unauthorized(header):
    with pytest.raises(Unauthorized):
        bearer_token(header)
