"""The audit log: an entry for every change, sealed into a per-tenant hash chain by the
worker; verify recomputes it and finds a row tampered with directly in the database."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import MutableClock, auth_headers, spotrak_body
from tests.events.helpers import worker_for


async def _seal_all(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> dict[str, Any]:
    """Run the sealer until nothing is left unsealed. On PostgreSQL an entry is sealed only
    once every older transaction on the server has ended, so allow for a few rounds."""
    async with worker_for(app) as worker:
        for _ in range(50):
            await worker.run_once()
            v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
            if v["unsealed"] == 0:
                return dict(v)
            await asyncio.sleep(0.2)
    raise AssertionError(f"entries left unsealed: {v}")


async def _changes(client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    publish = {k: v for k, v in spotrak_body().items() if k != "key"}
    assert (await client.put("/v1/policies/spotrak", headers=auth, json=publish)).status_code == 201
    clock.pinned = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "type": "access",
            "subject": {"id": "audit-subject-77", "email": "audit77@example.org"},
            "received_at": "2027-02-09T10:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = await client.post(
        f"/v1/dsars/{tid}/extension", headers=auth, json={"reason": "many systems"}
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/v1/dsars/{tid}/transitions", headers=auth, json={"to": "in_progress"})
    assert r.status_code == 200, r.text
    event = {
        "policy_key": "spotrak",
        "subject_id": "audit-subject-77",
        "purpose": "audience_cookies",
        "action": "granted",
    }
    assert (await client.post("/v1/consent-events", headers=auth, json=event)).status_code == 201
    r = await client.post(
        "/v1/consent-events/batch",
        headers=auth,
        json={"events": [{**event, "action": "withdrawn"}, {**event, "purpose": "nope"}]},
    )
    assert r.status_code == 200, r.text
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
    bid = r.json()["id"]
    r = await client.patch(f"/v1/breaches/{bid}", headers=auth, json={"status": "contained"})
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/breaches/{bid}/notifications",
        headers=auth,
        json={"audience": "authority", "sent_at": "2027-02-10T11:00:00+00:00"},
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/webhooks",
        headers=auth,
        json={"url": "https://93.184.215.14/", "events": ["dsar.created"]},
    )
    assert r.status_code == 201, r.text
    assert (await client.delete(f"/v1/webhooks/{r.json()['id']}", headers=auth)).status_code == 204
    clock.pinned = None


EXPECTED = [
    "policy.created",
    "policy.published",
    "dsar.created",
    "dsar.extended",
    "dsar.status_changed",
    "consent.recorded",
    "consent.recorded",
    "breach.created",
    "breach.updated",
    "breach.notification_recorded",
    "webhook.created",
    "webhook.deleted",
]


async def test_every_change_is_audited_chained_and_verifiable(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, clock: MutableClock
) -> None:
    await _changes(client, auth, clock)
    r = await client.get("/v1/audit-events", headers=auth)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [e["action"] for e in items] == EXPECTED
    assert all(e["actor"] == "tester" for e in items)
    assert "audit-subject-77" not in r.text
    assert "audit77@example.org" not in r.text

    v = await _seal_all(app, client, auth)
    assert v == {"ok": True, "checked": len(EXPECTED), "unsealed": 0, "first_broken": None}
    items = (await client.get("/v1/audit-events", headers=auth)).json()["items"]
    assert [e["chain_seq"] for e in items] == list(range(1, len(EXPECTED) + 1))
    assert items[0]["prev_digest"] == "0" * 64
    for before, after in itertools.pairwise(items):
        assert after["prev_digest"] == before["digest"]

    # Erasing the subject touches nothing in the chain.
    r = await client.delete("/v1/subjects/audit-subject-77", headers=auth)
    assert r.status_code == 204
    v = await _seal_all(app, client, auth)
    assert v["ok"] is True
    assert v["checked"] == len(EXPECTED) + 1


async def test_list_filters_and_pagination(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    await _changes(client, auth, clock)
    r = await client.get("/v1/audit-events", headers=auth, params={"action": "consent.recorded"})
    assert [e["object_type"] for e in r.json()["items"]] == ["consent_event"] * 2
    r = await client.get(
        "/v1/audit-events", headers=auth, params={"object_type": "breach_incident"}
    )
    assert len(r.json()["items"]) == 3
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/audit-events", headers=auth, params=params)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(EXPECTED)
    assert seen == sorted(seen)
    r = await client.get("/v1/audit-events", headers=auth, params={"cursor": "garbage"})
    assert r.status_code == 422
    other = auth_headers("t-audit-other")
    assert (await client.get("/v1/audit-events", headers=other)).json()["items"] == []
    reader = auth_headers("t-audit-scope", ["dsar:read"])
    assert (await client.get("/v1/audit-events", headers=reader)).status_code == 403


async def test_a_row_tampered_in_the_database_breaks_verification(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
) -> None:
    await _changes(client, auth, clock)
    await _seal_all(app, client, auth)
    async with app.state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE audit_entry SET actor = 'mallory' WHERE tenant = :t AND chain_seq = 4"),
            {"t": tenant},
        )
    v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
    assert v["ok"] is False
    assert v["first_broken"]["seq"] == 4
    assert v["first_broken"]["reason"].startswith("digest")
    assert v["checked"] == 4


async def test_a_deleted_row_breaks_verification(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
) -> None:
    await _changes(client, auth, clock)
    await _seal_all(app, client, auth)
    async with app.state.engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM audit_entry WHERE tenant = :t AND chain_seq = 2"), {"t": tenant}
        )
    v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
    assert v["ok"] is False
    assert v["first_broken"]["seq"] == 2
