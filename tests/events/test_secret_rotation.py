"""Signing secrets rotate without downtime, and a receiver that is gone stops being sent to
(DESIGN §16): during WEBHOOK_SECRET_OVERLAP_HOURS a real delivery carries both signatures
(`v1,<new> v1,<old>`), then only the new one; a 410 Gone disables the subscription."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.secretbox import Keyring
from app.webhooks import signing
from app.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tests.conftest import MutableClock, auth_headers
from tests.events.helpers import Received, Receiver, subscribe, worker_for
from tests.fulfilment.helpers import (
    AFTER_RECEIPT,
    outbox,
    policy,
    start,
    system,
    tasks_of,
    ticket,
)


async def _dsar(client: httpx.AsyncClient, auth: dict[str, str], n: int = 0) -> dict[str, Any]:
    return await ticket(client, auth, n=n)


@pytest.fixture(autouse=True)
def _pinned(clock: MutableClock) -> None:
    """The tickets of tests/fulfilment/helpers.py are received 2027-01-31."""
    clock.pinned = AFTER_RECEIPT


def _signatures(got: Received) -> list[str]:
    return got.headers["webhook-signature"].split(" ")


async def test_a_rotated_webhook_secret_signs_beside_the_old_one_until_the_overlap_ends(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, clock: MutableClock
) -> None:
    await policy(client, auth)
    t0 = AFTER_RECEIPT
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        old = hook["secret"]
        r = await client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=auth)
        assert r.status_code == 200, r.text
        rotated = r.json()
        new = rotated["secret"]
        assert new.startswith("whsec_")
        assert new != old
        assert rotated["id"] == hook["id"]
        until = datetime.fromisoformat(rotated["previous_secret_valid_until"])
        assert until == t0 + timedelta(hours=24)

        await _dsar(client, auth, 1)
        async with worker_for(app) as worker:
            await worker.run_once()
        (during,) = rx.requests
        assert len(_signatures(during)) == 2
        assert _signatures(during)[0].startswith("v1,")
        assert during.verifies(new)  # receivers already switched
        assert during.verifies(old)  # receivers not yet switched

        clock.pinned = until + timedelta(seconds=1)
        await _dsar(client, auth, 2)
        async with worker_for(app) as worker:
            await worker.run_once()
        after = rx.requests[1]
        assert len(_signatures(after)) == 1
        assert after.verifies(new)
        assert not after.verifies(old)
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
    # audited, with no secret in the entry
    async with app.state.sessionmaker() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "webhook.secret_rotated",
                    AuditEntry.object_id == hook["id"],
                )
            )
        ).all()
    assert len(entries) == 1
    assert "whsec_" not in str(entries[0].data)


async def test_rotating_again_during_the_overlap_keeps_only_the_last_two(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await policy(client, auth)
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        first = hook["secret"]
        path = f"/v1/webhooks/{hook['id']}/rotate-secret"
        second = (await client.post(path, headers=auth)).json()
        third = (await client.post(path, headers=auth)).json()
        await _dsar(client, auth)
        async with worker_for(app) as worker:
            await worker.run_once()
        (got,) = rx.requests
        assert len(_signatures(got)) == 2
        assert got.verifies(third["secret"])
        assert got.verifies(second["secret"])
        assert not got.verifies(first)
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_a_rotation_drops_a_secret_no_key_opens_so_deliveries_go_out_at_once(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    """SECRETS_KEY lost: the stored secret opens with no configured key, and deliveries wait
    (tests/events/test_delivery.py). The cure is a rotation: the secret it replaces cannot
    sign, so it is not kept for the overlap (kept, it would hold every delivery back until
    the overlap ends)."""
    await policy(client, auth)
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        lost = Keyring("a-key-nobody-has-any-more-" + "l" * 30)
        async with app.state.sessionmaker() as session:
            sub = await session.get(WebhookSubscription, uuid.UUID(hook["id"]))
            assert sub is not None
            sub.secret_ciphertext = lost.seal(hook["secret"], signing.secret_context(sub.id))
            await session.commit()
        r = await client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["previous_secret_valid_until"] is None
        await _dsar(client, auth, 1)
        async with worker_for(app) as worker:
            await worker.run_once()
        (got,) = rx.requests
        assert len(_signatures(got)) == 1
        assert got.verifies(r.json()["secret"])
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


async def test_rotate_webhook_secret_needs_the_scope_and_the_tenants_own_webhook(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    hook = await subscribe(client, auth, "https://hooks.example.com/x", ["dsar.created"])
    path = f"/v1/webhooks/{hook['id']}/rotate-secret"
    other = await client.post(path, headers=auth_headers(f"{tenant}-other"))
    assert other.status_code == 404
    assert other.json()["code"] == "webhook_not_found"
    weak = await client.post(path, headers=auth_headers(tenant, ["dsar:read"]))
    assert weak.status_code == 403
    assert (await client.post(path)).status_code == 401


async def test_a_push_systems_rotated_secret_signs_its_jobs_beside_the_old_one(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, clock: MutableClock
) -> None:
    await policy(client, auth)
    t0 = AFTER_RECEIPT
    async with Receiver() as rx:
        vendor = await system(client, auth, "vendor", delivery={"mode": "push", "url": rx.url})
        r = await client.post("/v1/systems/vendor/rotate-secret", headers=auth)
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["key"] == "vendor"
        assert datetime.fromisoformat(rotated["previous_secret_valid_until"]) == t0 + timedelta(
            hours=24
        )
        t = await ticket(client, auth)
        await start(client, auth, t["id"])
        async with worker_for(app) as worker:
            await worker.run_once()
        (job,) = rx.requests
        assert job.json()["type"] == "task.created"
        assert len(_signatures(job)) == 2
        assert job.verifies(rotated["secret"])
        assert job.verifies(vendor["secret"])


async def test_a_receiver_answering_410_disables_its_subscription_and_an_event_says_so(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, tenant: str
) -> None:
    await policy(client, auth)
    async with Receiver(default=410) as gone, Receiver() as monitor:
        hook = await subscribe(client, auth, gone.url, ["dsar.created", "dsar.status_changed"])
        watcher = await subscribe(client, auth, monitor.url, ["webhook.disabled"])
        first = await _dsar(client, auth, 1)
        # a second event queued for the same receiver before the 410 is seen: stopped
        await start(client, auth, first["id"])
        async with worker_for(app) as worker:
            await worker.run_once()
            await worker.run_once()  # fans the webhook.disabled event out and delivers it
        assert 1 <= len(gone.requests) <= 2
        listed = (await client.get("/v1/webhooks", headers=auth)).json()["items"]
        state = {h["id"]: h["disabled_at"] for h in listed}
        assert state[hook["id"]] is not None
        assert state[watcher["id"]] is None
        deliveries = (
            await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        ).json()["items"]
        assert {d["status"] for d in deliveries} == {"failed"}
        assert any(d["last_status_code"] == 410 for d in deliveries)
        # the tenant's other subscription hears of it
        (note,) = [g for g in monitor.requests if g.json()["type"] == "webhook.disabled"]
        assert note.verifies(watcher["secret"])
        assert note.json()["data"]["webhook_id"] == hook["id"]
        assert note.json()["data"]["system"] is None
        assert note.json()["data"]["status_code"] == 410
        # nothing more is sent to it
        sent = len(gone.requests)
        await _dsar(client, auth, 2)
        async with worker_for(app) as worker:
            await worker.run_once()
        assert len(gone.requests) == sent
        ping = await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=auth)
        assert ping.status_code == 409
        assert ping.json()["code"] == "webhook_disabled"
        await client.delete(f"/v1/webhooks/{watcher['id']}", headers=auth)
    async with app.state.sessionmaker() as session:
        entries = (
            await session.scalars(
                select(AuditEntry).where(
                    AuditEntry.tenant == tenant, AuditEntry.action == "webhook.disabled"
                )
            )
        ).all()
        pending = (
            await session.scalars(
                select(WebhookDelivery).where(
                    WebhookDelivery.tenant == tenant,
                    WebhookDelivery.status == DeliveryStatus.pending,
                    WebhookDelivery.event_type != "webhook.disabled",
                )
            )
        ).all()
    assert [e.actor for e in entries] == ["worker"]
    assert entries[0].data["host"] == "127.0.0.1"
    assert pending == []


async def test_a_push_endpoint_answering_410_is_disabled_until_the_system_gets_a_url_again(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, tenant: str
) -> None:
    await policy(client, auth)
    async with Receiver(default=410) as gone, Receiver() as fresh:
        vendor = await system(client, auth, "vendor", delivery={"mode": "push", "url": gone.url})
        t = await ticket(client, auth)
        await start(client, auth, t["id"])
        async with worker_for(app) as worker:
            await worker.run_once()
        assert len(gone.requests) == 1
        read = (await client.get("/v1/systems/vendor", headers=auth)).json()
        assert read["delivery"]["disabled_at"] is not None
        assert read["active"] is True  # tasks are still created and wait: nothing skipped
        (task,) = await tasks_of(client, auth, t["id"])
        assert task["status"] == "pending"
        # tasks created meanwhile, by a request and by a retention sweep, are there to see,
        # but no job is written for them: nothing would send it
        t2 = await ticket(client, auth, n=2)
        await start(client, auth, t2["id"])
        (task2,) = await tasks_of(client, auth, t2["id"])
        assert task2["status"] == "pending"
        r = await client.patch(
            "/v1/systems/vendor",
            headers=auth,
            json={"categories": ["business_data", "technical_logs"]},
        )
        assert r.status_code == 200, r.text
        r = await client.post("/v1/retention/sweeps/run", headers=auth, json={})
        assert r.status_code == 200, r.text
        (sweep,) = r.json()["items"]
        assert sweep["system"] == "vendor"
        assert sweep["status"] == "pending"
        async with worker_for(app) as worker:
            await worker.run_once()
        assert len(gone.requests) == 1

        async def jobs() -> list[WebhookDelivery]:
            async with app.state.sessionmaker() as session:
                return list(
                    await session.scalars(
                        select(WebhookDelivery).where(
                            WebhookDelivery.tenant == tenant,
                            WebhookDelivery.event_type == "task.created",
                        )
                    )
                )

        (first,) = await jobs()  # the one the receiver answered 410 to
        assert (first.status, first.last_status_code) == (DeliveryStatus.failed, 410)
        addressed = await outbox(app.state.sessionmaker, tenant, "task.created")
        assert [e["task_id"] for e in addressed if "task_id" in e] == [task["id"]]
        # a new URL re-enables the endpoint and sends every open task's job, those of the
        # tasks created while it was disabled included
        r = await client.patch(
            "/v1/systems/vendor",
            headers=auth,
            json={"delivery": {"mode": "push", "url": fresh.url}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["delivery"]["disabled_at"] is None
        async with worker_for(app) as worker:
            await worker.run_once()
        sent = sorted(j.json()["data"]["task"]["id"] for j in fresh.requests)
        assert sent == sorted([task["id"], task2["id"], sweep["task_id"]])
        assert all(j.verifies(vendor["secret"]) for j in fresh.requests)
        assert len(gone.requests) == 1
        assert {j.status for j in await jobs()} == {DeliveryStatus.failed, DeliveryStatus.succeeded}


async def test_two_rotations_at_once_keep_both_new_secrets_signing(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    await policy(client, auth)
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        path = f"/v1/webhooks/{hook['id']}/rotate-secret"
        a, b = await asyncio.gather(
            client.post(path, headers=auth), client.post(path, headers=auth)
        )
        assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
        await _dsar(client, auth)
        async with worker_for(app) as worker:
            await worker.run_once()
        (got,) = rx.requests
        # one rotation followed the other: the last secret and the one it replaced sign
        assert got.verifies(a.json()["secret"])
        assert got.verifies(b.json()["secret"])
        assert not got.verifies(hook["secret"])
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
