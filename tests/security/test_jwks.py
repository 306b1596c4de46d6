"""AUTH_JWKS_FILE (DESIGN §16): several public keys, the token's `kid` choosing one, the
algorithm fixed by the key; the file re-read when it changes, under a running app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jose import jwt

from app.core.config import ConfigurationError, Settings
from app.core.errors import Unauthorized
from app.core.security import JwksKeys, load_key_config, mint_token, verify_token
from app.main import create_app
from tests.conftest import make_settings

ISSUER = "https://issuer.example"
AUDIENCE = "privacy-api"


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _pem(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    pub = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _b64(pub.n),
        "e": _b64(pub.e),
    }


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    pub = key.public_key().public_numbers()
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name]
    size = (key.curve.key_size + 7) // 8

    def coord(v: int) -> str:
        return base64.urlsafe_b64encode(v.to_bytes(size, "big")).decode().rstrip("=")

    return {"kty": "EC", "kid": kid, "crv": crv, "x": coord(pub.x), "y": coord(pub.y)}


def write_jwks(path: Path, *keys: dict[str, Any]) -> None:
    """As an operator should: written aside, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"keys": list(keys)}))
    os.replace(tmp, path)


def token(key: Any, alg: str, kid: str | None, tenant: str = "acme", **over: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": "u1",
        "tenant": tenant,
        "scope": "policies:read",
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        **over,
    }
    headers = {"kid": kid} if kid is not None else None
    return str(jwt.encode(claims, _pem(key), algorithm=alg, headers=headers))


def hs256_forged_with(secret: str, kid: str) -> str:
    """An HS256 token whose HMAC key is the RSA public key's PEM (python-jose refuses to
    make one: it is made by hand, as an attacker would)."""

    def part(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "sub": "u",
        "tenant": "acme",
        "scope": "policies:read",
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}"
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ec384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


# ---- a running app, its file rotated under it ------------------------------------------------


@pytest.fixture
async def jwks_app(
    database_url: str, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[tuple[FastAPI, Path]]:
    path = tmp_path / "jwks.json"
    write_jwks(path, rsa_jwk(rsa_key, "rsa-2026"))
    settings = make_settings(
        database_url,
        auth_secret=None,
        auth_jwks_file=path,
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
    )
    application = create_app(settings)
    async with LifespanManager(application):
        yield application, path


async def _status(app: FastAPI, bearer: str) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/v1/policies", headers={"Authorization": f"Bearer {bearer}"})
        return r.status_code


async def test_keys_rotate_in_the_jwks_file_without_a_restart(
    jwks_app: tuple[FastAPI, Path],
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    app, path = jwks_app
    old = token(rsa_key, "RS256", "rsa-2026")
    new = token(ec_key, "ES256", "ec-2027")
    assert await _status(app, old) == 200
    assert await _status(app, new) == 401  # not published yet
    # while a single key is published, a token without kid is its
    assert await _status(app, token(rsa_key, "RS256", None)) == 200

    # 1. publish the new key beside the old one: both accepted
    write_jwks(path, rsa_jwk(rsa_key, "rsa-2026"), ec_jwk(ec_key, "ec-2027"))
    assert await _status(app, new) == 200
    assert await _status(app, old) == 200
    # several keys: a token must say which
    assert await _status(app, token(rsa_key, "RS256", None)) == 401
    assert await _status(app, token(rsa_key, "RS256", "no-such-kid")) == 401
    # the key fixes the algorithm, never the token: the RSA key's kid on an EC token, and
    # an HS256 token "signed" with the RSA public key, are refused
    assert await _status(app, token(ec_key, "ES256", "rsa-2026")) == 401
    public_pem = (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert await _status(app, hs256_forged_with(public_pem, "rsa-2026")) == 401

    # 2. retire the old key: its tokens stop at once (even those verified before)
    write_jwks(path, ec_jwk(ec_key, "ec-2027"))
    assert await _status(app, old) == 401
    assert await _status(app, new) == 200

    # 3. a broken file keeps the keys last read (and the log says so)
    path.write_text("{not json")
    assert await _status(app, new) == 200
    assert await _status(app, old) == 401


# ---- the file itself -------------------------------------------------------------------------


def _keys(path: Path) -> JwksKeys:
    return JwksKeys(path, ISSUER, AUDIENCE)


def test_each_key_gets_its_own_algorithm(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
    ec384_key: ec.EllipticCurvePrivateKey,
) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(
        path,
        rsa_jwk(rsa_key, "r"),
        ec_jwk(ec_key, "e256"),
        ec_jwk(ec384_key, "e384"),
        {**ec_jwk(ec_key, "enc-only"), "use": "enc"},  # not a signing key: ignored
    )
    keys = _keys(path)
    assert {k: v.algorithm for k, v in keys.current().keys.items()} == {
        "r": "RS256",
        "e256": "ES256",
        "e384": "ES384",
    }
    assert verify_token(keys, token(ec384_key, "ES384", "e384")).tenant == "acme"
    with pytest.raises(Unauthorized):
        verify_token(keys, token(ec384_key, "ES256", "e256"))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"keys": []}, "no signing key"),
        ([], "expected"),
        ({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}, "private or symmetric"),
        ({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}, "needs a `kid`"),
        ({"keys": [{"kty": "EC", "kid": "e", "crv": "secp256k1", "x": "AA", "y": "AA"}]}, "curve"),
        ({"keys": [{"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"}]}, "point"),
        ({"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AA"}]}, "ValueError"),
    ],
)
def test_an_unusable_file_stops_the_service_at_start(
    tmp_path: Path, doc: Any, message: str
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match=message):
        _keys(path)


def test_private_keys_and_duplicate_kids_are_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    priv = rsa_key.private_numbers()
    write_jwks(path, {**rsa_jwk(rsa_key, "r"), "d": _b64(priv.d)})
    with pytest.raises(ConfigurationError, match="private"):
        _keys(path)
    write_jwks(path, rsa_jwk(rsa_key, "r"), rsa_jwk(rsa_key, "r"))
    with pytest.raises(ConfigurationError, match="twice"):
        _keys(path)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        _keys(tmp_path / "missing.json")


def test_jwks_replaces_the_single_key_settings_and_the_token_command_signs_for_it(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, ec_jwk(ec_key, "ec-1"))
    with pytest.raises(ConfigurationError, match="AUTH_JWKS_FILE replaces"):
        Settings(auth_jwks_file=path, auth_secret="s" * 40)
    settings = Settings(
        auth_jwks_file=path,
        auth_private_key=_pem(ec_key),
        auth_key_id="ec-1",
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
    )
    signer = load_key_config(settings)
    assert signer.algorithm == "ES256"
    minted = mint_token(signer, tenant="acme", scopes=["policies:read"])
    assert jwt.get_unverified_header(minted)["kid"] == "ec-1"
    assert verify_token(_keys(path), minted).tenant == "acme"
