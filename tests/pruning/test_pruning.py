"""The service keeps its own promises (DESIGN §14): each kind of its own data is deleted at
its boundary and not a microsecond before, pending work never, every batch audited, the
audit chain still verifies, and two workers never prune a row twice or deadlock."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.breaches.models import BreachEvent, BreachIncident, BreachNotification
from app.core.db import create_engine, create_sessionmaker
from app.core.idempotency import IdempotencyRecord
from app.dsar.models import DsarEvent, DsarTicket
from app.events.models import OutboxEvent
from app.fulfilment.models import FulfilmentTask
from app.webhooks.delivery import DISABLED_ERROR
from app.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.conftest import MutableClock, make_settings, spotrak_body
from tests.events.helpers import Receiver, subscribe, worker_for
from tests.fulfilment.helpers import system, system_auth, tasks_of
from tests.pruning.helpers import (
    MICRO,
    assert_no_scan,
    assert_reads,
    explained,
    prune,
    pruned_entries,
    seal,
)

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)


async def _count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def _policy(client: httpx.AsyncClient, auth: dict[str, str], **over: Any) -> None:
    body = copy.deepcopy(spotrak_body())
    body.update(over)
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text


async def _dsar(
    client: httpx.AsyncClient, auth: dict[str, str], key: str | None = None, n: int = 0
) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await client.post(
        "/v1/dsars",
        headers=headers,
        json={"policy_key": "spotrak", "type": "access", "subject": {"id": f"user-{n}"}},
    )


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# ---- idempotency ------------------------------------------------------------------------


async def test_a_replay_after_the_ttl_is_a_new_request_even_before_pruning(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = T0
    await _policy(client, auth)
    first = await _dsar(client, auth, "k-1")
    assert first.status_code == 201, first.text
    clock.pinned = T0 + timedelta(hours=24) - MICRO
    again = await _dsar(client, auth, "k-1")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    clock.pinned = T0 + timedelta(hours=24)
    fresh = await _dsar(client, auth, "k-1")
    assert fresh.status_code == 201, fresh.text
    assert "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["id"] != first.json()["id"]
    # the key now remembers the new request (replayed), and another body is refused again
    assert (await _dsar(client, auth, "k-1")).json()["id"] == fresh.json()["id"]
    assert (await _dsar(client, auth, "k-1", n=2)).status_code == 422
    # after the window another body is simply a new request
    clock.pinned = T0 + timedelta(hours=48)
    assert (await _dsar(client, auth, "k-1", n=2)).status_code == 201


async def test_expired_idempotency_records_are_pruned_at_the_ttl_and_audited(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = T0
    await _policy(client, auth)
    assert (await _dsar(client, auth, "k-1")).status_code == 201
    mine = (IdempotencyRecord.tenant == tenant,)
    await prune(app, T0 + timedelta(hours=24) - MICRO)
    assert await _count(app, IdempotencyRecord, *mine) == 1
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, T0 + timedelta(hours=24), sessionmaker=sessionmaker)
    assert await _count(app, IdempotencyRecord, *mine) == 0
    assert_no_scan(plans, "ix_idempotency_record_created_at")
    (entry,) = await pruned_entries(client, auth, "idempotency_record")
    assert entry["actor"] == "worker"
    assert entry["data"] == {
        "kind": "idempotency_record",
        "table": "idempotency_record",
        "count": 1,
        "cutoff": _iso(T0),
        "rule": "IDEMPOTENCY_TTL_HOURS=24",
    }


# ---- the outbox ---------------------------------------------------------------------------


async def test_finished_deliveries_and_events_go_after_the_keep_days_pending_ones_never(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = T0
    await _policy(client, auth)
    async with Receiver() as good, Receiver(default=500) as bad:
        await subscribe(client, auth, good.url, ["dsar.created"])
        await subscribe(client, auth, bad.url, ["breach.created"])
        t = (await _dsar(client, auth)).json()
        # dsar.status_changed: nobody subscribed, dispatched with no delivery
        r = await client.post(
            f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "in_progress"}
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            "/v1/breaches",
            headers=auth,
            json={
                "policy_key": "spotrak",
                "title": "Lost laptop",
                "aware_at": _iso(T0 - timedelta(hours=1)),
                "data_categories": ["contact_details"],
                "risk": "high_risk",
            },
        )
        assert r.status_code == 201, r.text
        async with worker_for(app) as worker:
            await worker.run_once(T0)
        assert len(good.requests) == 1
        assert len(bad.requests) == 1
    deliveries = (WebhookDelivery.tenant == tenant,)
    events = (OutboxEvent.tenant == tenant,)
    assert await _count(app, WebhookDelivery, *deliveries) == 2
    assert await _count(app, WebhookAttempt, WebhookAttempt.tenant == tenant) == 2
    assert await _count(app, OutboxEvent, *events) == 3

    await prune(app, T0 + timedelta(days=30) - MICRO)
    assert await _count(app, WebhookDelivery, *deliveries) == 2
    assert await _count(app, OutboxEvent, *events) == 3

    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, T0 + timedelta(days=30), sessionmaker=sessionmaker)
    assert_no_scan(plans, "ix_webhook_delivery_kept_from", "ix_outbox_event_dispatched")
    assert_reads(plans, "webhook_delivery", "ix_webhook_delivery_kept_from")
    (pending,) = await _rows(
        app, select(WebhookDelivery.status, WebhookDelivery.event_type), *deliveries
    )
    assert tuple(pending) == ("pending", "breach.created")
    # its one failed attempt stays with it; the delivered one's attempt is gone
    assert await _count(app, WebhookAttempt, WebhookAttempt.tenant == tenant) == 1
    (left,) = await _rows(app, select(OutboxEvent.type), *events)
    assert left[0] == "breach.created"

    # pending work is never pruned, however old
    await prune(app, T0 + timedelta(days=3650))
    assert await _count(app, WebhookDelivery, *deliveries) == 1
    assert await _count(app, OutboxEvent, *events) == 1

    (d,) = await pruned_entries(client, auth, "webhook_delivery")
    assert d["data"]["count"] == 1
    assert d["data"]["attempts"] == 1
    assert d["data"]["cutoff"] == _iso(T0)
    (e,) = await pruned_entries(client, auth, "outbox_event")
    assert e["data"]["count"] == 2
    assert e["data"]["rule"] == "OUTBOX_KEEP_DAYS=30"


# ---- deliveries that finished without an attempt ----------------------------------------------

# Queued after the worker's round read its clock (T0): the round's claim finds it not yet due,
# sends only the delivery queued before it, to which the receiver answers 410 Gone, and the
# subscription's disabling stops it unsent (app/webhooks/delivery.py `disable`).
QUEUED = T0 + timedelta(hours=1)


async def _queue_after_the_round_started(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, kind: str, url: str
) -> tuple[str, str | None]:
    """Two deliveries to `url`, the first at T0, the second at QUEUED: a webhook's event and
    then a ping, or a push system's job for one ticket and then another's. Returns the
    second's event type, and where the API lists them (a webhook's)."""
    if kind == "webhook":
        hook = await subscribe(client, auth, url, ["dsar.created"])
        assert (await _dsar(client, auth)).status_code == 201
        clock.pinned = QUEUED
        r = await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=auth)
        assert r.status_code == 200, r.text
        return "webhook.ping", f"/v1/webhooks/{hook['id']}/deliveries"
    await system(client, auth, "vendor", delivery={"mode": "push", "url": url})
    for n, at in enumerate((T0, QUEUED)):
        clock.pinned = at
        t = (await _dsar(client, auth, n=n)).json()
        r = await client.post(
            f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "in_progress"}
        )
        assert r.status_code == 200, r.text
    return "task.created", None


@pytest.mark.parametrize("kind", ["webhook", "push_system"])
async def test_a_delivery_stopped_unsent_goes_keep_days_after_it_was_queued(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
    kind: str,
) -> None:
    clock.pinned = T0
    await _policy(client, auth)
    async with Receiver(default=410) as gone:
        event_type, listed = await _queue_after_the_round_started(
            client, auth, clock, kind, gone.url
        )
        async with worker_for(app) as worker:
            await worker.run_once(T0)
        assert len(gone.requests) == 1
    mine = (WebhookDelivery.tenant == tenant, WebhookDelivery.event_type != "webhook.disabled")
    columns = (
        WebhookDelivery.event_type,
        WebhookDelivery.status,
        WebhookDelivery.attempts,
        WebhookDelivery.last_attempt_at,
        WebhookDelivery.created_at,
        WebhookDelivery.last_error,
    )
    rows = await _rows(app, select(*columns).order_by(WebhookDelivery.created_at), *mine)
    sent, stopped = (tuple(r) for r in rows)
    assert sent[1:4] == ("failed", 1, T0)
    # never attempted, and it says so: no attempt, no attempt time
    assert stopped == (event_type, "failed", 0, None, QUEUED, DISABLED_ERROR)
    if listed is not None:
        r = await client.get(listed, headers=auth)
        assert r.status_code == 200, r.text
        shown = {d["event_type"]: d for d in r.json()["items"]}[event_type]
        assert (shown["status"], shown["attempt_count"], shown["attempts"]) == ("failed", 0, [])
        assert shown["delivered_at"] is None

    # the one sent goes OUTBOX_KEEP_DAYS after its attempt, the one never sent after it was
    # queued: not a microsecond before
    await prune(app, T0 + timedelta(days=30))
    assert [r[0] for r in await _rows(app, select(*columns), *mine)] == [event_type]
    await prune(app, QUEUED + timedelta(days=30) - MICRO)
    assert await _count(app, WebhookDelivery, *mine) == 1
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, QUEUED + timedelta(days=30), sessionmaker=sessionmaker)
    assert await _count(app, WebhookDelivery, *mine) == 0
    assert_no_scan(plans, "ix_webhook_delivery_kept_from")
    assert_reads(plans, "webhook_delivery", "ix_webhook_delivery_kept_from")
    first, second = sorted(
        (e["data"] for e in await pruned_entries(client, auth, "webhook_delivery")),
        key=lambda d: str(d["cutoff"]),
    )
    assert (first["count"], first["attempts"], first["cutoff"]) == (1, 1, _iso(T0))
    assert (second["count"], second["attempts"], second["cutoff"]) == (1, 0, _iso(QUEUED))


async def _rows(app: FastAPI, stmt: Any, *where: Any) -> list[Any]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(stmt.where(*where))).all())


# ---- task data, tickets ---------------------------------------------------------------------

CLOSED = datetime(2031, 1, 20, 10, 0, tzinfo=UTC)  # 11:00 in Paris


async def _closed_ticket_with_a_task(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, clock: MutableClock
) -> dict[str, Any]:
    clock.pinned = CLOSED - timedelta(days=5)
    await _policy(client, auth, fulfilment={"keep_results_for": {"value": 2, "unit": "days"}})
    await system(client, auth, "crm")
    t = (await _dsar(client, auth)).json()
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "in_progress"}
    )
    assert r.status_code == 200, r.text
    (task,) = await tasks_of(client, auth, t["id"])
    r = await client.post(
        f"/v1/tasks/{task['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 3, "data": {"orders": ["o-1"]}},
    )
    assert r.status_code == 200, r.text
    clock.pinned = CLOSED
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "completed"}
    )
    assert r.status_code == 200, r.text
    return {**t, "task": task}


async def test_task_data_goes_at_keep_results_for_leaving_counts_and_digest(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    t = await _closed_ticket_with_a_task(client, auth, tenant, clock)
    # closed Monday 2031-01-20 in Paris: + 2 days → the end of Wednesday 2031-01-22, Paris
    boundary = datetime(2031, 1, 22, 22, 59, 59, 999_999, tzinfo=UTC)
    await prune(app, boundary - MICRO)
    r = await client.get(f"/v1/tasks/{t['task']['id']}", headers=auth)
    assert r.json()["has_data"] is True
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, boundary, sessionmaker=sessionmaker)
    assert_no_scan(plans, "ix_fulfilment_task_purge")
    kept = (await client.get(f"/v1/tasks/{t['task']['id']}", headers=auth)).json()
    assert kept["has_data"] is False
    assert (kept["status"], kept["records_affected"]) == ("completed", 3)
    assert kept["result_digest"]
    (entry,) = await pruned_entries(client, auth, "fulfilment_task")
    assert entry["data"]["kind"] == "task_data"
    assert entry["data"]["ids"] == [t["task"]["id"]]


async def test_a_closed_ticket_goes_with_its_dependants_at_dsar_kept_for(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    t = await _closed_ticket_with_a_task(client, auth, tenant, clock)
    open_one = (await _dsar(client, auth, n=9)).json()
    # the worker gives the closed ticket its deletion instant, and says so
    await prune(app, CLOSED)
    read = (await client.get(f"/v1/dsars/{t['id']}", headers=auth)).json()
    step = read["explanation"][-1]
    assert step["rule"] == "11 CCR §7101"
    assert "24 months after it closed" in step["detail"]
    assert "2033-01-20 11:00 Europe/Paris" in step["detail"]
    boundary = datetime(2033, 1, 20, 10, 0, tzinfo=UTC)
    mine = (DsarTicket.tenant == tenant,)

    await prune(app, boundary - MICRO)
    assert (await client.get(f"/v1/dsars/{t['id']}", headers=auth)).status_code == 200
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, boundary, sessionmaker=sessionmaker)
    assert_no_scan(plans, "ix_dsar_ticket_delete_after")
    assert (await client.get(f"/v1/dsars/{t['id']}", headers=auth)).status_code == 404
    assert await _count(app, DsarEvent, DsarEvent.ticket_id == uuid.UUID(t["id"])) == 0
    assert await _count(app, FulfilmentTask, FulfilmentTask.tenant == tenant) == 0
    # an open ticket is never deleted
    await prune(app, boundary + timedelta(days=3650))
    assert await _count(app, DsarTicket, *mine) == 1
    assert (await client.get(f"/v1/dsars/{open_one['id']}", headers=auth)).status_code == 200

    (entry,) = await pruned_entries(client, auth, "dsar_ticket")
    assert entry["data"]["ids"] == [t["id"]]
    assert entry["data"]["count"] == 1
    assert entry["data"]["tasks"] == 1
    assert entry["data"]["events"] >= 3  # created, in_progress, completed
    assert "user-0" not in str(entry)
    # the ticket's own audit entries stay, and the chain still verifies
    r = await client.get(f"/v1/audit-events?object_id={t['id']}", headers=auth)
    assert r.json()["items"]
    await seal(app, boundary + timedelta(days=3650))
    v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
    assert v["ok"] is True
    assert v["first_broken"] is None
    assert v["unsealed"] == 0


async def test_the_policy_sets_how_long_closed_tickets_are_kept(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, clock: MutableClock
) -> None:
    clock.pinned = T0
    await _policy(client, auth, records={"dsar_kept_for": {"value": 3, "unit": "months"}})
    t = (await _dsar(client, auth)).json()
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "withdrawn"}
    )
    assert r.status_code == 200, r.text
    await prune(app, T0)
    step = (await client.get(f"/v1/dsars/{t['id']}", headers=auth)).json()["explanation"][-1]
    assert step["rule"] == "policy promise"
    assert step["source"] is None
    # 10:00 in Paris (winter time) + 3 months = 10:00 in Paris (summer time), 08:00 UTC
    boundary = datetime(2031, 6, 3, 8, 0, tzinfo=UTC)
    await prune(app, boundary - MICRO)
    assert (await client.get(f"/v1/dsars/{t['id']}", headers=auth)).status_code == 200
    await prune(app, boundary)
    assert (await client.get(f"/v1/dsars/{t['id']}", headers=auth)).status_code == 404


async def test_the_records_block_is_read_back_with_its_default_and_validated(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.json()["records"] == {"dsar_kept_for": {"value": 24, "unit": "months"}}
    for bad, loc in (
        ({"dsar_kept_for": {"value": 1, "unit": "fortnights"}}, ["dsar_kept_for", "unit"]),
        ({"dsar_kept_for": {"value": -1, "unit": "days"}}, ["dsar_kept_for", "value"]),
        ({"surprise": 1}, ["surprise"]),
    ):
        body = {**spotrak_body("other"), "records": bad}
        r = await client.post("/v1/policies", headers=auth, json=body)
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["body", "records", *loc]


# ---- breach incidents -------------------------------------------------------------------------


async def test_a_closed_incident_goes_at_keep_until_an_open_one_or_one_without_a_period_never(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = T0
    await _policy(client, auth, breach={"records_kept_for": {"value": 1, "unit": "years"}})
    await _policy(client, auth, key="plain")  # GDPR: no record period

    async def incident(policy_key: str) -> dict[str, Any]:
        r = await client.post(
            "/v1/breaches",
            headers=auth,
            json={
                "policy_key": policy_key,
                "title": "Lost laptop",
                "aware_at": _iso(T0 - timedelta(hours=2)),
                "data_categories": ["contact_details"],
                "risk": "high_risk",
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    kept, closed_late, no_period = (
        await incident("spotrak"),
        await incident("spotrak"),
        await incident("plain"),
    )
    boundary = datetime.fromisoformat(kept["keep_until"])
    assert boundary == T0 - timedelta(hours=2) + timedelta(days=366)  # 2032 is a leap year
    assert no_period["keep_until"] is None
    r = await client.post(
        f"/v1/breaches/{kept['id']}/notifications",
        headers=auth,
        json={"audience": "authority", "sent_at": _iso(T0)},
    )
    assert r.status_code == 201, r.text
    for b in (kept, no_period):
        r = await client.patch(
            f"/v1/breaches/{b['id']}",
            headers=auth,
            json={"status": "closed", "reason": "Contained; people told by phone"},
        )
        assert r.status_code == 200, r.text

    await prune(app, boundary - MICRO)
    assert (await client.get(f"/v1/breaches/{kept['id']}", headers=auth)).status_code == 200
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, boundary, sessionmaker=sessionmaker)
    assert_no_scan(plans, "ix_breach_incident_prunable")
    assert (await client.get(f"/v1/breaches/{kept['id']}", headers=auth)).status_code == 404
    incident_id = uuid.UUID(kept["id"])
    assert await _count(app, BreachNotification, BreachNotification.incident_id == incident_id) == 0
    assert await _count(app, BreachEvent, BreachEvent.incident_id == incident_id) == 0
    # still open past its period: kept; closed later, it goes at the next round
    await prune(app, boundary + timedelta(days=1))
    assert (await client.get(f"/v1/breaches/{closed_late['id']}", headers=auth)).status_code == 200
    clock.pinned = boundary + timedelta(days=2)
    r = await client.patch(
        f"/v1/breaches/{closed_late['id']}",
        headers=auth,
        json={"status": "closed", "reason": "Done"},
    )
    assert r.status_code == 200, r.text
    await prune(app, boundary + timedelta(days=2))
    assert (await client.get(f"/v1/breaches/{closed_late['id']}", headers=auth)).status_code == 404
    # no period set: the register keeps it
    await prune(app, boundary + timedelta(days=36500))
    assert await _count(app, BreachIncident, BreachIncident.tenant == tenant) == 1

    entries = await pruned_entries(client, auth, "breach_incident")
    assert sorted(i for e in entries for i in e["data"]["ids"]) == sorted(
        [kept["id"], closed_late["id"]]
    )
    first = next(e for e in entries if e["data"]["ids"] == [kept["id"]])
    assert first["data"]["notifications"] == 1
    assert first["data"]["rule"] == "breach.records_kept_for"
    await seal(app, boundary + timedelta(days=36500))
    v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
    assert (v["ok"], v["first_broken"]) == (True, None)


# ---- the worker, and two of them --------------------------------------------------------------


async def test_the_worker_round_prunes_and_counts_it(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI, clock: MutableClock
) -> None:
    clock.pinned = T0
    await _policy(client, auth)
    assert (await _dsar(client, auth, "k-1")).status_code == 201
    async with worker_for(app) as worker:
        for _ in range(10_000):
            stats = await worker.run_once(T0 + timedelta(days=1))
            assert not stats.errors
            if not stats.pruned:
                break
    assert await _count(app, IdempotencyRecord, IdempotencyRecord.tenant == tenant) == 0


async def test_two_workers_share_the_batches_never_prune_a_row_twice_nor_deadlock(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = T0
    await _policy(client, auth)
    ids = []
    for n in range(12):
        r = await _dsar(client, auth, f"k-{n}", n=n)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
        r = await client.post(
            f"/v1/dsars/{ids[-1]}/transitions", headers=auth, json={"to": "withdrawn"}
        )
        assert r.status_code == 200, r.text
    small = make_settings(database_url, prune_batch_size=3)
    engines = [create_engine(database_url) for _ in range(2)]
    try:
        makers = [create_sessionmaker(e) for e in engines]
        await asyncio.gather(*(prune(app, T0, small, m) for m in makers))
        later = T0 + timedelta(days=800)
        await asyncio.gather(*(prune(app, later, small, m) for m in makers))
    finally:
        for e in engines:
            await e.dispose()
    assert await _count(app, DsarTicket, DsarTicket.tenant == tenant) == 0
    assert await _count(app, IdempotencyRecord, IdempotencyRecord.tenant == tenant) == 0
    tickets = await pruned_entries(client, auth, "dsar_ticket")
    assert sum(e["data"]["count"] for e in tickets) == 12
    pruned_ids = [i for e in tickets for i in e["data"]["ids"]]
    assert sorted(pruned_ids) == sorted(ids)  # each once
    assert all(e["data"]["count"] <= 3 for e in tickets)
    keys = await pruned_entries(client, auth, "idempotency_record")
    assert sum(e["data"]["count"] for e in keys) == 12


async def test_a_ticket_deleted_within_the_idempotency_window_is_never_replayed(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, clock: MutableClock
) -> None:
    clock.pinned = T0
    await _policy(client, auth, records={"dsar_kept_for": {"value": 0, "unit": "hours"}})
    first = (await _dsar(client, auth, "k-1")).json()
    r = await client.post(
        f"/v1/dsars/{first['id']}/transitions", headers=auth, json={"to": "withdrawn"}
    )
    assert r.status_code == 200, r.text
    await prune(app, T0)
    assert (await client.get(f"/v1/dsars/{first['id']}", headers=auth)).status_code == 404
    again = await _dsar(client, auth, "k-1")
    assert again.status_code == 201, again.text
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["id"] != first["id"]
