"""Delivery: outbox → subscriptions → signed POSTs to a real receiver on 127.0.0.1, retries
with backoff, failure after the limit, and two workers racing (each attempt exactly once)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.db import create_engine, create_sessionmaker
from app.core.logging import JsonFormatter
from app.core.secretbox import Keyring
from app.webhooks.delivery import DISABLED_ERROR, UNREADABLE_ERROR, UNREADABLE_RETRY
from app.webhooks.models import WebhookAttempt, WebhookSubscription
from app.worker import Worker
from tests.conftest import TEST_SECRETS_KEY, spotrak_body
from tests.events.helpers import Receiver, now, subscribe, worker_for

NEW_KEY = "a-secrets-key-that-replaced-the-old-one-" + "r" * 20


async def _policy(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text


async def _dsar(client: httpx.AsyncClient, auth: dict[str, str], n: int = 0) -> dict[str, Any]:
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "type": "access",
            "subject": {"id": f"user-{n}", "email": f"person{n}@example.com"},
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_events_are_delivered_signed_with_the_standard_headers_and_body(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await _policy(client, auth)
    async with Receiver() as rx:
        hook = await subscribe(
            client, auth, rx.url, ["dsar.created", "dsar.status_changed", "consent.changed"]
        )
        ticket = await _dsar(client, auth)
        r = await client.post(
            f"/v1/dsars/{ticket['id']}/transitions", headers=auth, json={"to": "in_progress"}
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            "/v1/consent-events",
            headers=auth,
            json={
                "policy_key": "spotrak",
                "subject_id": "user-0",
                "purpose": "audience_cookies",
                "action": "granted",
            },
        )
        assert r.status_code == 201, r.text
        async with worker_for(app) as worker:
            stats = await worker.run_once()
        assert stats.succeeded >= 3
        assert len(rx.requests) == 3
        for got in rx.requests:
            assert got.verifies(hook["secret"]), got.headers
            assert got.headers["content-type"] == "application/json"
            assert got.headers["webhook-id"].startswith("msg_")
            assert abs(int(got.headers["webhook-timestamp"]) - now().timestamp()) < 60
            assert got.headers["webhook-signature"].startswith("v1,")
            assert set(got.json()) == {"type", "timestamp", "data"}
            assert got.json()["timestamp"].endswith("Z")
            # Never an e-mail; the subject's identifier only where the receiver needs it.
            assert b"example.com" not in got.body
            if got.json()["type"] != "consent.changed":
                assert b"user-0" not in got.body
        types = [g.json()["type"] for g in rx.requests]
        assert sorted(types) == ["consent.changed", "dsar.created", "dsar.status_changed"]
        created = next(g.json() for g in rx.requests if g.json()["type"] == "dsar.created")
        assert created["data"]["id"] == ticket["id"]
        assert created["data"]["due_date"] == ticket["due_date"]
        changed = next(g.json() for g in rx.requests if g.json()["type"] == "dsar.status_changed")
        assert changed["data"]["from"] == "received"
        assert changed["data"]["to"] == "in_progress"
        consent = next(g.json() for g in rx.requests if g.json()["type"] == "consent.changed")
        assert consent["data"]["state"] == "granted"
        assert consent["data"]["purpose"] == "audience_cookies"
        assert consent["data"]["subject_id"] == "user-0"
        assert consent["data"]["policy_key"] == "spotrak"
        # A tampered body does not verify.
        forged = rx.requests[0]
        forged.body = forged.body.replace(b"}", b" }", 1)
        assert not forged.verifies(hook["secret"])
        # Nothing more to send.
        async with worker_for(app) as worker:
            await worker.run_once()
        assert len(rx.requests) == 3
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_unsubscribed_types_and_other_tenants_events_are_not_sent(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await _policy(client, auth)
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["breach.created"])
        await _dsar(client, auth)
        async with worker_for(app) as worker:
            await worker.run_once()
        assert rx.requests == []
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_a_failing_receiver_is_retried_with_backoff_then_succeeds(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await _policy(client, auth)
    async with Receiver(statuses=[500, 503]) as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        await _dsar(client, auth)
        t0 = now()
        async with worker_for(app, rng=lambda: 0.0) as worker:
            await worker.run_once(t0)
            assert len(rx.requests) == 1
            await worker.run_once(t0 + timedelta(seconds=5))  # not due yet: base 30 s times 0.5
            assert len(rx.requests) == 1
            await worker.run_once(t0 + timedelta(seconds=16))
            assert len(rx.requests) == 2
            await worker.run_once(t0 + timedelta(seconds=16 + 31))
            assert len(rx.requests) == 3
        assert len(set(rx.ids())) == 1  # the same webhook-id on every retry
        r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        [d] = r.json()["items"]
        assert d["status"] == "succeeded"
        assert d["attempt_count"] == 3
        assert [a["status_code"] for a in d["attempts"]] == [500, 503, 200]
        assert [a["attempt"] for a in d["attempts"]] == [1, 2, 3]
        assert d["message_id"] == rx.ids()[0]
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_delivery_fails_for_good_after_the_attempt_limit(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await _policy(client, auth)
    limit = app.state.settings.webhook_max_attempts
    async with Receiver(default=500) as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        await _dsar(client, auth)
        at = now()
        async with worker_for(app) as worker:
            for _ in range(limit + 2):
                await worker.run_once(at)
                at += timedelta(days=1)
        assert len(rx.requests) == limit
        r = await client.get(
            f"/v1/webhooks/{hook['id']}/deliveries", headers=auth, params={"status": "failed"}
        )
        [d] = r.json()["items"]
        assert d["attempt_count"] == limit
        assert d["next_attempt_at"] is None
        assert len(d["attempts"]) == limit
        metrics = (await client.get("/metrics")).text
        assert "webhook_delivery_failures" in metrics
        assert "outbox_backlog" in metrics
        assert "dsar_overdue_tickets" in metrics
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_an_unreachable_receiver_is_an_attempt_with_an_error(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await _policy(client, auth)
    async with Receiver() as rx:
        url = rx.url
    hook = await subscribe(client, auth, url, ["dsar.created"])  # nobody listens any more
    await _dsar(client, auth)
    async with worker_for(app) as worker:
        await worker.run_once()
    r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
    [d] = r.json()["items"]
    assert d["status"] == "pending"
    assert d["attempts"][0]["status_code"] is None
    assert d["attempts"][0]["error"].startswith("connection error")
    await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_two_workers_racing_deliver_each_attempt_exactly_once(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, database_url: str
) -> None:
    await _policy(client, auth)
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        async with Receiver(statuses=[500] * 4) as rx:
            hook = await subscribe(client, auth, rx.url, ["dsar.created"])
            tickets = [await _dsar(client, auth, n) for n in range(12)]
            workers = [
                Worker(create_sessionmaker(e), app.state.settings, rng=lambda: 0.0) for e in engines
            ]
            at = now()
            for _ in range(3):
                await asyncio.gather(*(w.run_once(at) for w in workers))
                at += timedelta(hours=1)
            for w in workers:
                await w.aclose()
            # 12 events; 4 first attempts failed and were retried once each.
            assert len(rx.requests) == 16
            per_id = Counter(rx.ids())
            assert len(per_id) == len(tickets)
            assert sorted(per_id.values()) == [1] * 8 + [2] * 4
            async with app.state.sessionmaker() as session:
                attempts = await session.scalar(
                    select(func.count())
                    .select_from(WebhookAttempt)
                    .where(WebhookAttempt.tenant == _tenant(auth, app))
                )
            assert attempts == 16
            r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
            items = r.json()["items"]
            assert len(items) == 12
            assert all(d["status"] == "succeeded" for d in items)
            assert sum(d["attempt_count"] for d in items) == 16
            await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
    finally:
        for e in engines:
            await e.dispose()


def _tenant(auth: dict[str, str], app: FastAPI) -> str:
    from app.core.security import verify_token

    return verify_token(app.state.keys, auth["Authorization"].split()[1]).tenant


async def test_an_outcome_recorded_after_the_lease_passed_to_another_attempt_is_ignored(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    """Worker A claims attempt 1 and stalls past its lease; worker B claims attempt 2 and
    records a failure. A's late success must not overwrite B's outcome (one UPDATE for the
    whole round, each row guarded by its attempt number)."""
    from app.webhooks import delivery
    from app.webhooks.models import DeliveryStatus, WebhookDelivery

    await _policy(client, auth)
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        await _dsar(client, auth)
        t0 = now()
        lease = timedelta(seconds=60)
        async with app.state.sessionmaker() as session:
            await delivery.fan_out(session, t0)
        async with app.state.sessionmaker() as session:
            taken = await delivery.claim(session, t0, lease, app.state.secrets)
            [first] = [c for c in taken if c.url == rx.url]
        later = t0 + lease + timedelta(seconds=1)
        async with app.state.sessionmaker() as session:
            taken = await delivery.claim(session, later, lease, app.state.secrets)
            [second] = [c for c in taken if c.url == rx.url]
        assert (first.attempt, second.attempt) == (1, 2)
        failed = delivery.Outcome(status_code=500, error=None, duration_ms=3)
        succeeded = delivery.Outcome(status_code=200, error=None, duration_ms=3)
        async with app.state.sessionmaker() as session:
            await delivery.record(
                session, [(second, failed, timedelta(seconds=30))], later, max_attempts=12
            )
        async with app.state.sessionmaker() as session:
            await delivery.record(
                session, [(first, succeeded, timedelta(seconds=30))], later, max_attempts=12
            )
        async with app.state.sessionmaker() as session:
            row = await session.get(WebhookDelivery, first.delivery_id)
            assert row is not None
            assert row.status == DeliveryStatus.pending
            assert row.last_status_code == 500
            assert row.delivered_at is None
            assert row.next_attempt_at == later + timedelta(seconds=30)
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_a_secret_no_key_opens_holds_the_delivery_back_without_charging_the_receiver(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    app: FastAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SECRETS_KEY replaced without the old key in SECRETS_KEY_OLD: the service's
    configuration is at fault, not the receiver. The delivery is not sent, no attempt is
    counted however many rounds pass, it waits UNREADABLE_RETRY between tries, an error line
    (and the counter) says why; once the old key is back in the keyring it goes out as its
    first attempt."""
    caplog.set_level(logging.INFO, logger="app.webhooks")
    await _policy(client, auth)
    held_before = await _held_back(client)
    settings = app.state.settings.model_copy(update={"webhook_max_attempts": 2})
    # sealed under TEST_SECRETS_KEY by the API; this keyring has only the new key
    new_key_only = Keyring(NEW_KEY)
    held: list[int] = []
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        await _dsar(client, auth, n=7)
        at = now()
        async with Worker(
            app.state.sessionmaker,
            settings,
            keyring=new_key_only,
            clock=app.state.clock,
            on_secret_unreadable=held.append,
        ) as worker:
            for _ in range(settings.webhook_max_attempts + 2):
                await worker.run_once(at)
                # not claimed again before its retry instant
                await worker.run_once(at + UNREADABLE_RETRY - timedelta(seconds=1))
                at += UNREADABLE_RETRY
        assert rx.requests == []
        r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        [d] = r.json()["items"]
        assert d["status"] == "pending"
        assert d["attempt_count"] == 0
        assert d["attempts"] == []
        assert d["last_error"] == UNREADABLE_ERROR
        assert d["last_status_code"] is None
        assert datetime.fromisoformat(d["next_attempt_at"]) == at
        lines = [r for r in caplog.records if getattr(r, "subscription_id", None) == hook["id"]]
        assert len(lines) == settings.webhook_max_attempts + 2  # one per try, none between
        for line in lines:
            assert line.levelno == logging.ERROR
            assert "SECRETS_KEY_OLD" in line.getMessage()
            assert line.deliveries == 1  # type: ignore[attr-defined]
            formatted = JsonFormatter().format(line)
            assert "user-7" not in formatted
            assert "person7@" not in formatted
            assert "whsec_" not in formatted
        assert sum(held) >= len(lines)
        # read from the database: shown by every replica, whichever process ran the worker
        assert await _held_back(client) == held_before + 1

        # the old key in SECRETS_KEY_OLD: the delivery goes out, as its first attempt
        async with worker_for(app, keyring=Keyring(NEW_KEY, [TEST_SECRETS_KEY])) as worker:
            await worker.run_once(at)
        [got] = rx.requests
        assert got.verifies(hook["secret"])
        r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        [d] = r.json()["items"]
        assert (d["status"], d["attempt_count"]) == ("succeeded", 1)
        assert [a["attempt"] for a in d["attempts"]] == [1]
        assert await _held_back(client) == held_before
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def _held_back(client: httpx.AsyncClient) -> float:
    """GET /metrics: webhook_deliveries_secret_unreadable."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("webhook_deliveries_secret_unreadable "):
            return float(line.split()[1])
    raise AssertionError("webhook_deliveries_secret_unreadable not in /metrics")


async def test_a_delivery_found_disabled_at_claim_is_stopped_without_an_attempt(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    """A delivery queued while its receiver was being disabled (410 Gone) slips past
    disable(): the claim finds the subscription disabled and stops it, unsent, and gives the
    attempt it took back (nothing was attempted)."""
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        r = await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=auth)
        assert r.status_code == 200, r.text
        # the race: disabled after the ping was queued, without disable() stopping it
        async with app.state.sessionmaker() as session:
            sub = await session.get(WebhookSubscription, uuid.UUID(hook["id"]))
            assert sub is not None
            sub.disabled_at = now()
            await session.commit()
        async with worker_for(app) as worker:
            await worker.run_once(now())
        assert rx.requests == []
        r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        [d] = r.json()["items"]
        assert (d["status"], d["attempt_count"], d["attempts"]) == ("failed", 0, [])
        assert d["last_error"] == DISABLED_ERROR
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
