"""No subject identifier or e-mail ever appears in a log line (DESIGN §9), nor in an event
or audit entry: canaries go through the DSAR, consent and subject routes (valid and invalid
requests), the worker delivers, and every captured record is scanned."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.logging import JsonFormatter
from app.events.models import OutboxEvent
from tests.conftest import spotrak_body
from tests.events.helpers import Receiver, subscribe, worker_for


async def test_canary_identifiers_never_reach_logs_events_or_audit(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    canary = f"canary{uuid.uuid4().hex[:10]}"
    email = f"{canary}@mail-canary.example"
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    async with Receiver() as rx:
        hook = await subscribe(
            client, auth, rx.url, ["dsar.created", "dsar.status_changed", "consent.changed"]
        )
        r = await client.post(
            "/v1/dsars",
            headers=auth,
            json={
                "policy_key": "spotrak",
                "type": "erasure",
                "subject": {"id": canary, "email": email, "name": canary},
                "description": f"please erase {email}",
            },
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        await client.post(
            f"/v1/dsars/{tid}/transitions",
            headers=auth,
            json={"to": "rejected", "reason": f"not {canary}"},
        )
        # Invalid requests carrying the canaries (validation must not echo them either).
        r = await client.post(
            "/v1/dsars",
            headers=auth,
            json={"policy_key": "spotrak", "type": "access", "subject": {"email": f"{canary}@"}},
        )
        assert r.status_code == 422
        assert canary not in r.text
        event = {
            "policy_key": "spotrak",
            "subject_id": canary,
            "purpose": "audience_cookies",
            "action": "granted",
            "proof": {"ip": email},
        }
        assert (
            await client.post("/v1/consent-events", headers=auth, json=event)
        ).status_code == 201
        r = await client.post(
            "/v1/consent-events/batch",
            headers=auth,
            json={"events": [{**event, "action": "withdrawn"}, {**event, "purpose": canary}]},
        )
        assert r.status_code == 200
        for path in (
            f"/v1/subjects/{canary}/consents",
            f"/v1/subjects/{canary}/export",
            f"/v1/consent-events?subject_id={canary}",
            f"/v1/subjects/{email}/consents",
        ):
            assert (await client.get(path, headers=auth)).status_code == 200
        assert (await client.delete(f"/v1/subjects/{canary}", headers=auth)).status_code == 204
        assert (await client.delete(f"/v1/subjects/{canary}", headers=auth)).status_code == 404
        async with worker_for(app) as worker:
            await worker.run_once()
        assert len(rx.requests) >= 3
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)

    assert caplog.records, "nothing was logged: the scan would prove nothing"
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        assert canary not in line, line
        assert "mail-canary" not in line, line
    for got in rx.requests:
        assert canary.encode() not in got.body
        assert b"mail-canary" not in got.body
    async with app.state.sessionmaker() as session:
        events = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.tenant == tenant))
        ).all()
        audit = (await session.scalars(select(AuditEntry).where(AuditEntry.tenant == tenant))).all()
    stored = repr([e.data for e in events]) + repr([(a.data, a.object_id, a.actor) for a in audit])
    assert canary not in stored
    assert "mail-canary" not in stored
