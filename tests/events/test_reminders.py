"""Reminders: dsar.due_soon, dsar.overdue, breach.deadline_approaching — exactly once per
object and deadline, with two workers racing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.core.db import create_engine, create_sessionmaker
from app.events.models import OutboxEvent
from app.worker import Worker
from tests.conftest import MutableClock, spotrak_body

NOW = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)


async def _events(app: FastAPI, tenant: str) -> list[OutboxEvent]:
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.tenant == tenant).order_by(OutboxEvent.id)
        )
        return list(rows)


async def test_reminders_fire_exactly_once_across_two_workers(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    clock.pinned = NOW
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "type": "access",
            "subject": {"id": "user-1"},
            "received_at": "2027-01-31T10:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    ticket = r.json()
    due = datetime.fromisoformat(ticket["due_at"])
    r = await client.post(
        "/v1/breaches",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "title": "Lost laptop",
            "aware_at": "2027-02-10T09:00:00+00:00",
            "data_categories": ["contact_details"],
            "risk": "high_risk",
        },
    )
    assert r.status_code == 201, r.text
    incident = r.json()

    engines = [create_engine(database_url) for _ in range(2)]
    workers = [Worker(create_sessionmaker(e), app.state.settings, clock=clock) for e in engines]
    try:
        # Not yet within 7 days of the due date: nothing; the breach is due in 72 h (> 24 h).
        await asyncio.gather(*(w.run_once(NOW) for w in workers))
        assert [e.type for e in await _events(app, tenant)] == ["dsar.created", "breach.created"]

        for at in (due - timedelta(days=3), due - timedelta(days=2)):
            await asyncio.gather(*(w.run_once(at) for w in workers))
        for at in (due + timedelta(hours=1), due + timedelta(days=1)):
            await asyncio.gather(*(w.run_once(at) for w in workers))
    finally:
        for w in workers:
            await w.aclose()
        for e in engines:
            await e.dispose()

    events = await _events(app, tenant)
    kinds = [e.type for e in events]
    assert kinds.count("dsar.due_soon") == 1
    assert kinds.count("dsar.overdue") == 1
    # Authority and subjects, each once (the incident's deadline passed in the meantime).
    approaching = [e for e in events if e.type == "breach.deadline_approaching"]
    assert sorted(e.data["audience"] for e in approaching) == ["authority", "subjects"]
    assert all(e.data["id"] == incident["id"] for e in approaching)
    soon = next(e for e in events if e.type == "dsar.due_soon")
    assert soon.data["id"] == ticket["id"]
    assert soon.data["due_date"] == ticket["due_date"]
    # each reminder names the rule behind its deadline (issue 13: the regime's own law)
    assert soon.data["rule"] == "GDPR Art. 12(3)"
    assert {e.data["audience"]: e.data["rule"] for e in approaching}["authority"].startswith(
        "GDPR Art. 33(1)"
    )
    assert "user-1" not in str([e.data for e in events])


async def test_a_closed_ticket_gets_no_overdue_reminder(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI, clock: MutableClock
) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    clock.pinned = NOW
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={"policy_key": "spotrak", "type": "access", "subject": {"id": "user-2"}},
    )
    ticket = r.json()
    r = await client.post(
        f"/v1/dsars/{ticket['id']}/transitions",
        headers=auth,
        json={"to": "withdrawn"},
    )
    assert r.status_code == 200, r.text
    worker = Worker(app.state.sessionmaker, app.state.settings, clock=clock)
    await worker.run_once(NOW + timedelta(days=400))
    kinds = [e.type for e in await _events(app, tenant)]
    assert "dsar.overdue" not in kinds
    assert "dsar.due_soon" not in kinds
