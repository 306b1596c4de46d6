"""Tasks: created with the ticket's move to in_progress, due dates from the rules module,
push jobs through the outbox delivery, pull claims with leases (DESIGN §13)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import MutableClock, auth_headers
from tests.events.helpers import Receiver, subscribe, worker_for
from tests.fulfilment.helpers import (
    AFTER_RECEIPT,
    outbox,
    policy,
    start,
    system,
    system_auth,
    tasks_of,
    ticket,
)


async def test_entering_in_progress_creates_one_task_per_active_system_handling_the_type(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, tenant: str
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm", task_within={"value": 5, "unit": "business_days"})
    await system(client, auth, "billing", handles=["erasure"])
    await system(client, auth, "old", active=False)
    t = await ticket(client, auth, "access")
    assert t["tasks_summary"] == {"total": 0, "open": 0, "done": 0, "failed": 0, "refused": 0}
    assert await tasks_of(client, auth, t["id"]) == []  # none before in_progress
    moved = await start(client, auth, t["id"])
    assert moved["tasks_summary"] == {"total": 1, "open": 1, "done": 0, "failed": 0, "refused": 0}
    assert any("1 task(s) created" in s["detail"] for s in moved["explanation"])
    (task,) = await tasks_of(client, auth, t["id"])
    assert task["system"] == "crm"
    assert task["type"] == "access"
    assert task["status"] == "pending"
    assert task["attempts"] == 0
    assert task["subject"] == {"id": "user-0", "email": "person0@example.com", "name": "Jane"}
    # Ticket due Monday 2027-03-01 (Paris); less 2 business days → Thursday 2027-02-25; the
    # system's 5 business days from the clock start (Sunday 2027-01-31) → Friday 2027-02-05,
    # the earlier: the end of that day in Paris.
    assert task["due_at"] == "2027-02-05T22:59:59.999999Z"
    details = " ".join(s["detail"] for s in task["explanation"])
    assert "2027-02-25" in details
    assert "2027-02-05" in details
    assert task["explanation"][-1]["rule"] == "earlier of the two"
    created = [e for e in await outbox(app.state.sessionmaker, tenant, "task.created") if "id" in e]
    assert [e["id"] for e in created] == [task["id"]]
    assert "user-0" not in str(created)
    assert "example.com" not in str(created)


async def test_without_task_within_the_buffer_sets_the_due_instant(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth, fulfilment={"buffer": {"value": 3, "unit": "days"}})
    await system(client, auth, "crm")
    t = await ticket(client, auth)
    await start(client, auth, t["id"])
    (task,) = await tasks_of(client, auth, t["id"])
    # 2027-03-01 less 3 days → 2027-02-26, end of day in Paris (UTC+1).
    assert task["due_at"] == "2027-02-26T22:59:59.999999Z"


async def test_no_system_handles_the_type_the_explanation_says_so_and_it_completes_by_hand(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    await system(client, auth, "billing", handles=["erasure"])
    t = await ticket(client, auth, "rectification")
    moved = await start(client, auth, t["id"])
    assert any("no active system handles" in s["detail"] for s in moved["explanation"])
    assert moved["tasks_summary"]["total"] == 0
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "completed"}
    )
    assert r.status_code == 200, r.text


async def test_a_push_system_gets_a_signed_task_created_job(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, tenant: str
) -> None:
    await policy(client, auth)
    async with Receiver() as rx, Receiver() as hooks:
        vendor = await system(client, auth, "vendor", delivery={"mode": "push", "url": rx.url})
        hook = await subscribe(client, auth, hooks.url, ["task.created"])
        t = await ticket(client, auth)
        await start(client, auth, t["id"])
        (task,) = await tasks_of(client, auth, t["id"])
        async with worker_for(app) as worker:
            await worker.run_once()
        (job,) = rx.requests
        assert job.verifies(vendor["secret"])
        body = job.json()
        assert body["type"] == "task.created"
        assert body["data"]["task"]["id"] == task["id"]
        assert body["data"]["task"]["subject"]["id"] == "user-0"  # the system needs it
        assert body["data"]["report_url"] == f"/v1/tasks/{task['id']}/result"
        # The outbox keeps ids only: the job's body is read from the task when it is sent.
        stored = await outbox(app.state.sessionmaker, tenant, "task.created")
        assert "user-0" not in str(stored)
        assert "example.com" not in str(stored)
        # The tenant's webhook gets the event with ids only.
        (event,) = hooks.requests
        assert event.verifies(hook["secret"])
        assert event.json()["data"]["id"] == task["id"]
        assert b"user-0" not in event.body
        assert b"example.com" not in event.body


async def test_a_push_job_is_retried_like_a_webhook(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, clock: MutableClock
) -> None:
    await policy(client, auth)
    async with Receiver(statuses=[503]) as rx:
        vendor = await system(client, auth, "vendor", delivery={"mode": "push", "url": rx.url})
        t = await ticket(client, auth)
        await start(client, auth, t["id"])
        async with worker_for(app, rng=lambda: 0.0) as worker:
            await worker.run_once()
            assert len(rx.requests) == 1
            later = clock() + timedelta(hours=1)
            await worker.run_once(later)
        assert len(rx.requests) == 2
        first, second = rx.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert second.verifies(vendor["secret"])


async def test_claim_leases_tasks_and_an_expired_lease_makes_them_claimable_again(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, clock: MutableClock
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    for n in range(3):
        t = await ticket(client, auth, n=n)
        await start(client, auth, t["id"])
    crm = system_auth(tenant, "crm")
    r = await client.post("/v1/tasks/claim", headers=crm, json={"limit": 2, "lease_seconds": 30})
    assert r.status_code == 200, r.text
    first = r.json()["items"]
    assert len(first) == 2
    assert all(x["status"] == "in_progress" and x["lease_until"] for x in first)
    # A claimed task reads the same as the task itself (PostgreSQL claims on the bare pool).
    r = await client.get(f"/v1/tasks/{first[0]['id']}", headers=crm)
    assert r.json() == first[0]
    r = await client.post("/v1/tasks/claim", headers=crm, json={"limit": 10, "lease_seconds": 30})
    rest = r.json()["items"]
    assert len(rest) == 1
    r = await client.post("/v1/tasks/claim", headers=crm, json={"limit": 10, "lease_seconds": 30})
    assert r.json()["items"] == []
    clock.pinned = AFTER_RECEIPT + timedelta(seconds=31)
    r = await client.post("/v1/tasks/claim", headers=crm, json={"limit": 10, "lease_seconds": 60})
    again = r.json()["items"]
    assert sorted(x["id"] for x in again) == sorted(x["id"] for x in [*first, *rest])
    for bad in ({"limit": 0}, {"limit": 101}, {"lease_seconds": 29}, {"lease_seconds": 3601}):
        r = await client.post("/v1/tasks/claim", headers=crm, json=bad)
        assert r.status_code == 422, bad
    r = await client.post("/v1/tasks/claim", headers=system_auth(tenant, "ghost"), json={})
    assert r.status_code == 404


async def test_concurrent_claimers_never_hold_the_same_task(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    ids: set[str] = set()
    for n in range(24):
        t = await ticket(client, auth, n=n)
        await start(client, auth, t["id"])
    crm = system_auth(tenant, "crm")

    async def claim() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while True:
            r = await client.post(
                "/v1/tasks/claim", headers=crm, json={"limit": 3, "lease_seconds": 600}
            )
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            if not items:
                return got
            got.extend(items)

    results = await asyncio.gather(*(claim() for _ in range(4)))
    claimed = [x["id"] for batch in results for x in batch]
    ids = set(claimed)
    assert len(claimed) == len(ids) == 24  # none lost, none leased twice


async def test_a_retired_system_gets_no_new_tasks_and_another_tenant_sees_none(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    r = await client.patch("/v1/systems/crm", headers=auth, json={"active": False})
    assert r.status_code == 200
    t = await ticket(client, auth)
    await start(client, auth, t["id"])
    assert await tasks_of(client, auth, t["id"]) == []
    r = await client.get(f"/v1/dsars/{t['id']}/tasks", headers=auth_headers("t-other"))
    assert r.status_code == 404


async def test_an_extension_moves_the_open_tasks_due_instants(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    t = await ticket(client, auth)
    await start(client, auth, t["id"])
    (before,) = await tasks_of(client, auth, t["id"])
    assert before["due_at"] == "2027-02-25T22:59:59.999999Z"
    r = await client.post(
        f"/v1/dsars/{t['id']}/extension", headers=auth, json={"reason": "Complex request"}
    )
    assert r.status_code == 200, r.text
    assert [s["rule"] for s in r.json()["explanation"]][-1] == "fulfilment"  # the note stays
    # Extended due Friday 2027-04-30; 2 business days before → Wednesday 2027-04-28 (CEST).
    (after,) = await tasks_of(client, auth, t["id"])
    assert after["due_at"] == "2027-04-28T21:59:59.999999Z"
    assert any("2027-04-28" in s["detail"] for s in after["explanation"])
