"""Tokens: what is accepted, and every way a forged one is refused with the same 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt

from app.core.config import ConfigurationError, Settings
from app.core.errors import Forbidden, Unauthorized
from app.core.security import KeyConfig, load_key_config, mint_token, verify_token
from tests.conftest import ROOT, TEST_SECRET, auth_headers, token_for

HS = KeyConfig("HS256", TEST_SECRET, TEST_SECRET, None, "https://issuer.example", "privacy-api")


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "u1",
        "tenant": "acme",
        "scope": "policies:read",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "iss": "https://issuer.example",
        "aud": "privacy-api",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_valid_token_gives_tenant_sub_and_scopes() -> None:
    p = verify_token(HS, jwt.encode(_claims(scope="dsar:read dsar:write"), TEST_SECRET, "HS256"))
    assert (p.tenant, p.sub, p.scopes) == ("acme", "u1", frozenset({"dsar:read", "dsar:write"}))


def _rsa_keys() -> tuple[rsa.RSAPrivateKey, str, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, pem.decode(), der


def _forged() -> dict[str, str]:
    header_none = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    good = jwt.encode(_claims(), TEST_SECRET, "HS256")
    h, _, s = good.split(".")
    tampered_payload = _b64(json.dumps(_claims(tenant="other")).encode())
    return {
        "alg-none": f"{header_none}.{_b64(json.dumps(_claims()).encode())}.",
        "wrong-secret": jwt.encode(_claims(), "another-secret-" + "y" * 40, "HS256"),
        "expired": jwt.encode(_claims(exp=int(time.time()) - 10), TEST_SECRET, "HS256"),
        "nbf-future": jwt.encode(_claims(nbf=int(time.time()) + 3600), TEST_SECRET, "HS256"),
        "iat-future": jwt.encode(_claims(iat=int(time.time()) + 3600), TEST_SECRET, "HS256"),
        "wrong-iss": jwt.encode(_claims(iss="https://evil.example"), TEST_SECRET, "HS256"),
        "wrong-aud": jwt.encode(_claims(aud="someone-else"), TEST_SECRET, "HS256"),
        "no-aud": jwt.encode(_claims(aud=None), TEST_SECRET, "HS256"),
        "no-exp": jwt.encode(_claims(exp=None), TEST_SECRET, "HS256"),
        "no-tenant": jwt.encode(_claims(tenant=None), TEST_SECRET, "HS256"),
        "tampered-payload": f"{h}.{tampered_payload}.{s}",
        "garbage": "not.a.jwt",
        "oversized": jwt.encode(_claims(pad="x" * 9000), TEST_SECRET, "HS256"),
        "hs512-same-secret": jwt.encode(_claims(), TEST_SECRET, "HS512"),
    }


@pytest.mark.parametrize("name", sorted(_forged()))
def test_forged_or_expired_tokens_are_refused(name: str) -> None:
    with pytest.raises(Unauthorized) as err:
        verify_token(HS, _forged()[name])
    assert err.value.detail == (
        "The bearer token is missing, malformed, expired or not signed by this service"
    )


def _hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


@pytest.mark.parametrize("form", ["pem", "der"])
def test_hs256_signed_with_the_rsa_public_key_is_refused(form: str) -> None:
    private, pem, der = _rsa_keys()
    keys = KeyConfig("RS256", pem, None, None, None, None)
    secret = pem.encode() if form == "pem" else der
    # python-jose itself refuses to HMAC-sign with a PEM key, so forge the token by hand.
    forged = _hs256_by_hand(_claims(iss=None, aud=None), secret)
    with pytest.raises(Unauthorized):
        verify_token(keys, forged)
    real = jwt.encode(_claims(iss=None, aud=None), private, "RS256")
    assert verify_token(keys, real).tenant == "acme"


def test_es256_key_selects_es256_only() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    keys = load_key_config(Settings(auth_public_key=pem))
    assert keys.algorithm == "ES256"
    assert verify_token(keys, jwt.encode(_claims(iss=None, aud=None), private, "ES256")).sub == "u1"


def test_kid_must_match_when_configured() -> None:
    keys = KeyConfig("HS256", TEST_SECRET, TEST_SECRET, "k1", None, None)
    good = mint_token(keys, tenant="acme", scopes=["policies:read"])
    assert verify_token(keys, good).tenant == "acme"
    other = jwt.encode(_claims(iss=None, aud=None), TEST_SECRET, "HS256", headers={"kid": "k2"})
    with pytest.raises(Unauthorized):
        verify_token(keys, other)


def test_missing_scope_is_forbidden() -> None:
    p = verify_token(HS, jwt.encode(_claims(), TEST_SECRET, "HS256"))
    with pytest.raises(Forbidden):
        p.require("policies:write")


def test_production_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ConfigurationError):
        Settings(app_env="production")
    with pytest.raises(ConfigurationError):
        Settings(app_env="production", auth_secret="s" * 40)  # no issuer/audience
    with pytest.raises(ConfigurationError, match="SECRETS_KEY"):
        Settings(app_env="production", auth_secret="s" * 40, auth_issuer="i", auth_audience="a")
    ok = Settings(
        app_env="production",
        auth_secret="s" * 40,
        auth_issuer="i",
        auth_audience="a",
        secrets_key="k" * 40,
    )
    assert load_key_config(ok).algorithm == "HS256"


def test_dev_mode_generates_the_secret_once_beside_the_sqlite_file(tmp_path: Any) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    first = load_key_config(settings).verify_key
    assert (tmp_path / "x.db.jwt-secret").exists()
    assert oct((tmp_path / "x.db.jwt-secret").stat().st_mode & 0o777) == "0o600"
    assert load_key_config(settings).verify_key == first


def test_token_command_prints_a_token_the_running_configuration_accepts() -> None:
    env = {
        **os.environ,
        "AUTH_SECRET": TEST_SECRET,
        "AUTH_ISSUER": "iss-x",
        "AUTH_AUDIENCE": "aud-x",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "token",
            "--tenant",
            "acme",
            "--scopes",
            "dsar:read consent:read",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    keys = KeyConfig("HS256", TEST_SECRET, TEST_SECRET, None, "iss-x", "aud-x")
    p = verify_token(keys, out)
    assert p.tenant == "acme"
    assert p.scopes == frozenset({"dsar:read", "consent:read"})
    bad = subprocess.run(
        [sys.executable, "-m", "app", "token", "--tenant", "acme", "--scopes", "root:all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "unknown scope" in bad.stderr


async def test_api_answers_401_problem_without_or_with_bad_token(client: httpx.AsyncClient) -> None:
    bodies = []
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = await client.get("/v1/policies", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["www-authenticate"].startswith("Bearer")
        bodies.append(r.json()["code"])
    assert set(bodies) == {"invalid_token"}


async def test_api_answers_403_for_a_missing_scope(client: httpx.AsyncClient, tenant: str) -> None:
    r = await client.get("/v1/policies", headers=auth_headers(tenant, ["dsar:read"]))
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    r = await client.get("/v1/policies", headers={"Authorization": f"Bearer {token_for(tenant)}"})
    assert r.status_code == 200


def test_a_cached_token_is_still_refused_once_it_expires() -> None:
    keys = KeyConfig("HS256", TEST_SECRET, TEST_SECRET, None, None, None)
    token = mint_token(keys, tenant="acme", scopes=["policies:read"], ttl_seconds=60)
    assert verify_token(keys, token).tenant == "acme"  # verified, then served from the cache
    assert verify_token(keys, token).tenant == "acme"
    with pytest.raises(Unauthorized):
        verify_token(keys, token, now=time.time() + 120)
