"""Signing secrets are encrypted at rest (DESIGN §16): read the tables directly and find no
`whsec_`; the 0013 migration encrypts the secrets of an older database (and deliveries still
verify with them); `python -m app rotate-secrets-key` re-encrypts under a new key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from app.core.config import ConfigurationError, Settings
from app.core.db import create_engine
from app.core.secretbox import Keyring, SecretUnreadable, is_sealed, key_id_of, load_keyring
from app.main import create_app
from app.webhooks import signing
from tests.conftest import (
    ROOT,
    TEST_SECRETS_KEY,
    MutableClock,
    auth_headers,
    create_pg_database,
    drop_pg_database,
    make_settings,
    run_alembic,
)
from tests.events.helpers import Receiver, worker_for

NEW_KEY = "the-next-secrets-key-" + "n" * 40


async def _rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


# ---- the keyring ---------------------------------------------------------------------------


def test_a_sealed_secret_opens_only_with_its_key_and_where_it_was_stored() -> None:
    ring = Keyring(TEST_SECRETS_KEY)
    sealed = ring.seal("whsec_abc", "webhook_subscription:1")
    assert is_sealed(sealed)
    assert "whsec_" not in sealed
    assert key_id_of(sealed) == ring.current_kid
    assert ring.open(sealed, "webhook_subscription:1") == "whsec_abc"
    assert ring.seal("whsec_abc", "webhook_subscription:1") != sealed  # a fresh nonce
    with pytest.raises(SecretUnreadable):
        ring.open(sealed, "webhook_subscription:2")  # moved to another row
    with pytest.raises(SecretUnreadable):
        Keyring(NEW_KEY).open(sealed, "webhook_subscription:1")  # unknown key
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretUnreadable):
        ring.open(tampered, "webhook_subscription:1")
    # during a rotation: the new key seals, the old one still opens
    both = Keyring(NEW_KEY, [TEST_SECRETS_KEY])
    assert both.open(sealed, "webhook_subscription:1") == "whsec_abc"
    resealed = both.reseal(sealed, "webhook_subscription:1")
    assert key_id_of(resealed) == both.current_kid != ring.current_kid
    assert Keyring(NEW_KEY).open(resealed, "webhook_subscription:1") == "whsec_abc"


def test_production_needs_secrets_key_and_dev_generates_it_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SECRETS_KEY"):
        Settings(
            app_env="production", auth_secret="s" * 40, auth_issuer="i", auth_audience="a"
        )
    with pytest.raises(ConfigurationError, match="32"):
        Settings(secrets_key="short")
    dev = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    first = load_keyring(dev)
    path = tmp_path / "x.db.secrets-key"
    assert path.exists()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_keyring(dev).current_kid == first.current_kid


# ---- through the API: the tables hold no plain secret ---------------------------------------


async def test_the_secrets_table_and_stored_responses_hold_no_plain_secret(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, database_url: str
) -> None:
    body = {"url": "https://hooks.example.com/at-rest", "events": ["dsar.created"]}
    headers = {**auth, "Idempotency-Key": f"at-rest-{tenant}"}
    first = await client.post("/v1/webhooks", headers=headers, json=body)
    assert first.status_code == 201, first.text
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    # the replay still shows the secret (decrypted from the stored response)
    again = await client.post("/v1/webhooks", headers=headers, json=body)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["secret"] == secret
    # a push system's secret too
    r = await client.post(
        "/v1/systems",
        headers={**auth, "Idempotency-Key": f"sys-{tenant}"},
        json={
            "key": "vendor",
            "name": "Vendor",
            "categories": [],
            "handles": ["erasure"],
            "delivery": {"mode": "push", "url": "https://jobs.example.com/in"},
        },
    )
    assert r.status_code == 201, r.text
    system_secret = r.json()["secret"]

    subs = await _rows(
        database_url,
        "SELECT * FROM webhook_subscription WHERE tenant = :t",
        t=tenant,
    )
    assert len(subs) == 2
    dump = repr(subs)
    assert "whsec_" not in dump
    assert secret.removeprefix("whsec_") not in dump
    assert system_secret.removeprefix("whsec_") not in dump
    (sealed,) = await _rows(
        database_url,
        "SELECT secret_ciphertext FROM webhook_subscription "
        "WHERE tenant = :t AND system_key IS NULL",
        t=tenant,
    )
    assert str(sealed[0]).startswith("aesgcm:")
    stored = await _rows(
        database_url,
        "SELECT operation, response_body FROM idempotency_record WHERE tenant = :t",
        t=tenant,
    )
    assert {op for op, _ in stored} == {"createWebhook", "createSystem"}
    assert "whsec_" not in repr(stored)
    for _, body_ in stored:
        doc = json.loads(body_) if isinstance(body_, str) else body_
        assert is_sealed(doc["secret"])


# ---- the migration and the key rotation command ---------------------------------------------


@pytest.fixture
async def fresh_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'secrets.db'}"
        return
    url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(url)


PLAIN = signing.new_secret()
HOOK_ID = "6f1c1d6e-2b7a-4c11-9c55-0b8f2f1a9e01"
TENANT = "at-rest"


def _rotate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m app rotate-secrets-key` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app", "rotate-secrets-key", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _exec(url: str, sql: str, **params: Any) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params)
    finally:
        await engine.dispose()


async def _ping_verifies(url: str, settings: Settings, receiver: Receiver, secret: str) -> None:
    clock = MutableClock()
    application = create_app(settings, clock=clock)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post(f"/v1/webhooks/{HOOK_ID}/ping", headers=auth_headers(TENANT))
            assert r.status_code == 200, r.text
            async with worker_for(application) as worker:
                await worker.run_once()
    got = receiver.requests[-1]
    assert got.json()["type"] == "webhook.ping"
    assert got.verifies(secret)


async def test_a_replay_whose_stored_secret_no_key_opens_is_a_503_and_writes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, database_url: str
) -> None:
    body = {"url": "https://hooks.example.com/retired-key", "events": ["dsar.created"]}
    headers = {**auth, "Idempotency-Key": f"retired-{tenant}"}
    first = await client.post("/v1/webhooks", headers=headers, json=body)
    assert first.status_code == 201, first.text
    # the service restarted under a new key, the old one dropped from SECRETS_KEY_OLD too soon
    application = create_app(
        make_settings(database_url, secrets_key=NEW_KEY, secrets_key_old=""), clock=MutableClock()
    )
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as other:
            again = await other.post("/v1/webhooks", headers=headers, json=body)
    assert again.status_code == 503, again.text
    assert again.headers["content-type"] == "application/problem+json"
    problem = again.json()
    assert problem["code"] == "service_unavailable"
    assert "SECRETS_KEY_OLD" in problem["detail"]
    assert "whsec_" not in again.text
    listed = (await client.get("/v1/webhooks", headers=auth)).json()["items"]
    assert [w["id"] for w in listed] == [first.json()["id"]]  # nothing written by the replay


async def test_migration_0013_encrypts_existing_secrets_and_rotation_reencrypts_them(
    fresh_url: str, backend: str
) -> None:
    url = fresh_url
    run_alembic(command.upgrade, url, "0008")
    async with Receiver() as rx:
        hook_id = HOOK_ID.replace("-", "") if backend == "sqlite" else HOOK_ID
        # now: the worker rounds below prune stored responses past IDEMPOTENCY_TTL_HOURS
        created = datetime.now(UTC)
        created_at = created.strftime("%Y-%m-%d %H:%M:%S.%f")
        await _exec(
            url,
            "INSERT INTO webhook_subscription (id, tenant, url, events, secret, description, "
            "created_at, created_by, system_key) VALUES (:id, :t, :u, "
            + ("CAST(:e AS jsonb)" if backend == "postgresql" else ":e")
            + ", :s, NULL, :c, 'x', NULL)",
            id=hook_id,
            t=TENANT,
            u=rx.url,
            e='["dsar.created"]',
            s=PLAIN,
            c=created if backend == "postgresql" else created_at,
        )
        stored_body = json.dumps({"id": HOOK_ID, "url": rx.url, "secret": PLAIN})
        await _exec(
            url,
            "INSERT INTO idempotency_record (tenant, operation, key, request_hash, status_code, "
            "response_body, location, created_at) VALUES (:t, 'createWebhook', 'k1', 'h', 201, "
            + ("CAST(:b AS jsonb)" if backend == "postgresql" else ":b")
            + ", :l, :c)",
            t=TENANT,
            b=stored_body,
            l=f"/v1/webhooks/{HOOK_ID}",
            c=created if backend == "postgresql" else created_at,
        )

        run_alembic(command.upgrade, url, "heads")  # with the test key (tests/conftest.py)

        rows = await _rows(url, "SELECT * FROM webhook_subscription")
        assert "whsec_" not in repr(rows)
        (sealed,) = await _rows(url, "SELECT secret_ciphertext FROM webhook_subscription")
        assert key_id_of(sealed[0]) == Keyring(TEST_SECRETS_KEY).current_kid
        (body,) = await _rows(url, "SELECT response_body FROM idempotency_record")
        assert "whsec_" not in repr(body)
        # a delivery signed with the secret the receiver has always had
        await _ping_verifies(url, make_settings(url), rx, PLAIN)

        # rotate SECRETS_KEY: the new key in SECRETS_KEY, the old one in SECRETS_KEY_OLD
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SECRETS_KEY": NEW_KEY,
            "SECRETS_KEY_OLD": TEST_SECRETS_KEY,
            "AUTH_SECRET": "x" * 40,
        }
        run = _rotate(env, "--batch", "1")
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout.strip().splitlines()[-1])
        new_kid = Keyring(NEW_KEY).current_kid
        assert report["key_id"] == new_kid
        assert report["subscriptions"] == 1
        assert report["responses"] == 1
        assert report["unreadable"] == []
        (sealed,) = await _rows(url, "SELECT secret_ciphertext FROM webhook_subscription")
        assert key_id_of(sealed[0]) == new_kid
        (body,) = await _rows(url, "SELECT response_body FROM idempotency_record")
        doc = json.loads(body[0]) if isinstance(body[0], str) else body[0]
        assert key_id_of(doc["secret"]) == new_kid
        # the new key alone now reads everything: deliveries still verify
        await _ping_verifies(
            url, make_settings(url, secrets_key=NEW_KEY, secrets_key_old=""), rx, PLAIN
        )
        # run again: nothing left to do
        again = _rotate(env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout.strip().splitlines()[-1])["subscriptions"] == 0
        # without the old key the command says which values it cannot open
        wrong = _rotate(
            {**env, "SECRETS_KEY": "yet-another-key-" + "y" * 40, "SECRETS_KEY_OLD": ""}
        )
        assert wrong.returncode == 1
        assert "SECRETS_KEY_OLD" in wrong.stderr
        # and the downgrade gives the plain secret back (with the key that sealed it)

    def _down(cfg: Any, rev: str) -> None:
        cfg.attributes["secrets_keyring"] = Keyring(NEW_KEY)
        command.downgrade(cfg, rev)

    run_alembic(_down, url, "0008")
    (plain,) = await _rows(url, "SELECT secret FROM webhook_subscription")
    assert plain[0] == PLAIN
