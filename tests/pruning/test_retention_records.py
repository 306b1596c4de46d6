"""Retention's own records are pruned too (DESIGN §14): a finished sweep, a subject expiry with
its erasure tasks, and the trigger event with the last of its expiries go `records.dsar_kept_for`
after they finished — at that instant and not a microsecond before — while held, pending or
retried work, an expiry not yet acted on and an event still governing a kept expiry stay.
Every batch is audited, reads an index, and two workers never prune a row twice nor leave an
event without its expiries behind."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.db import create_engine, create_sessionmaker
from app.fulfilment.models import FulfilmentTask
from app.retention.models import RetentionEvent, RetentionExpiry
from tests.conftest import MutableClock, make_settings
from tests.pruning.helpers import MICRO, assert_no_scan, explained, prune, pruned_entries, seal
from tests.retention.helpers import policy, policy_body, sweeps, system, system_auth, worker

# 31 March 2027, 10:00 in Paris (CEST)
T0 = datetime(2027, 3, 31, 8, 0, tzinfo=UTC)
# 2 February 2027, 10:00 in Paris (CET); a contract that ended three years before
NOW = datetime(2027, 2, 2, 9, 0, tzinfo=UTC)
THREE_YEARS_BACK = "2024-01-31T10:00:00+01:00"


async def _count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def _ids(app: FastAPI, column: Any, *where: Any) -> list[uuid.UUID]:
    async with app.state.sessionmaker() as session:
        return list(await session.scalars(select(column).where(*where)))


async def _report(
    client: httpx.AsyncClient, tenant: str, task: dict[str, Any], status: str, **more: Any
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/tasks/{task['id']}/result",
        headers=system_auth(tenant, task["system"]),
        json={"status": status, **more},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _task(client: httpx.AsyncClient, auth: dict[str, str], task_id: str) -> httpx.Response:
    return await client.get(f"/v1/tasks/{task_id}", headers=auth)


async def _record(
    client: httpx.AsyncClient, auth: dict[str, str], subject: str, event: str, at: str
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/subjects/{subject}/retention-events",
        headers=auth,
        json={"policy_key": "spotrak", "event": event, "occurred_at": at},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# ---- sweeps --------------------------------------------------------------------------------


async def test_a_finished_sweep_goes_with_its_task_at_dsar_kept_for_a_pending_one_never(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = T0
    await policy(client, auth)
    await system(client, auth, "crm", ["technical_logs"])
    await system(client, auth, "ads", ["marketing_profile"])
    run = (await client.post("/v1/retention/sweeps/run", headers=auth)).json()
    by = {s["system"]: s for s in run["items"]}
    done, pending = by["crm"], by["ads"]
    finished = T0 + timedelta(hours=1)  # 11:00 in Paris
    clock.pinned = finished
    await _report(client, tenant, {"id": done["task_id"], "system": "crm"}, "completed")

    # the worker gives the finished task its deletion instant, and says so
    await prune(app, finished)
    step = (await _task(client, auth, done["task_id"])).json()["explanation"][-1]
    assert step["rule"] == "records.dsar_kept_for"
    assert step["source"] is None
    assert "24 months after it finished" in step["detail"]
    assert "2027-03-31 11:00 Europe/Paris" in step["detail"]
    assert "deleted at 2029-03-31 11:00 Europe/Paris" in step["detail"]
    boundary = datetime(2029, 3, 31, 9, 0, tzinfo=UTC)

    await prune(app, boundary - MICRO)
    assert {s["id"] for s in await sweeps(client, auth)} == {done["id"], pending["id"]}
    assert (await _task(client, auth, done["task_id"])).status_code == 200
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, boundary, sessionmaker=sessionmaker)
    assert_no_scan(plans, "ix_fulfilment_task_delete_after", "ix_fulfilment_task_unscheduled")
    assert [s["id"] for s in await sweeps(client, auth)] == [pending["id"]]
    assert (await _task(client, auth, done["task_id"])).status_code == 404

    # a sweep its system never answered is kept, however old
    await prune(app, boundary + timedelta(days=3650))
    assert [s["id"] for s in await sweeps(client, auth)] == [pending["id"]]
    assert (await _task(client, auth, pending["task_id"])).json()["status"] == "pending"

    (entry,) = await pruned_entries(client, auth, "retention_sweep")
    assert entry["actor"] == "worker"
    assert entry["data"] == {
        "kind": "retention_sweep",
        "table": "retention_sweep",
        "count": 1,
        "cutoff": _iso(boundary),
        "rule": "records.dsar_kept_for",
        "ids": [done["id"]],
        "tasks": 1,
    }
    # the sweep's own audit entries stay, and the chain still verifies
    r = await client.get(f"/v1/audit-events?object_id={done['id']}", headers=auth)
    assert [e["action"] for e in r.json()["items"]] == ["retention.sweep_created"]
    await seal(app, boundary + timedelta(days=3650))
    v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
    assert (v["ok"], v["first_broken"], v["unsealed"]) == (True, None, 0)


async def test_a_retried_task_is_kept_from_when_it_finished_again(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI, clock: MutableClock
) -> None:
    clock.pinned = T0
    await policy(client, auth)
    await system(client, auth, "crm", ["technical_logs"])
    (sweep,) = (await client.post("/v1/retention/sweeps/run", headers=auth)).json()["items"]
    task = {"id": sweep["task_id"], "system": "crm"}
    await _report(client, tenant, task, "refused", reason="the logs are on tape")
    await prune(app, T0)  # refused is final: scheduled for T0 + 24 months
    first = datetime(2029, 3, 31, 8, 0, tzinfo=UTC)

    clock.pinned = T0 + timedelta(days=30)
    r = await client.post(f"/v1/tasks/{sweep['task_id']}/retry", headers=auth)
    assert r.status_code == 200, r.text
    await prune(app, first + timedelta(days=1))  # reopened: no deletion instant any more
    assert (await _task(client, auth, sweep["task_id"])).json()["status"] == "pending"
    assert await sweeps(client, auth) != []

    again = datetime(2028, 1, 10, 9, 0, tzinfo=UTC)  # 10:00 in Paris (CET)
    clock.pinned = again
    await _report(client, tenant, task, "completed", records_affected=5)
    await prune(app, again)
    step = (await _task(client, auth, sweep["task_id"])).json()["explanation"][-1]
    assert "deleted at 2030-01-10 10:00 Europe/Paris" in step["detail"]
    boundary = datetime(2030, 1, 10, 9, 0, tzinfo=UTC)
    await prune(app, boundary - MICRO)
    assert (await _task(client, auth, sweep["task_id"])).status_code == 200
    await prune(app, boundary)
    assert (await _task(client, auth, sweep["task_id"])).status_code == 404
    assert await sweeps(client, auth) == []


# ---- subject expiries, their erasure tasks and events --------------------------------------


def _body_with_invoices() -> dict[str, Any]:
    """The retention tests' policy, and invoices kept ten years after the contract ended
    (one event, two expiries)."""
    body = copy.deepcopy(policy_body())
    body["retention"].append(
        {
            "category": "invoices",
            "keep_for": {"value": 10, "unit": "years"},
            "starts_at": "contract_ended",
            "then": "delete",
        }
    )
    body["retention"].append(
        {
            "category": "contracts",
            "keep_for": None,
            "starts_at": "contract_signed",
            "then": "review",
        }
    )
    return body


async def test_an_expiry_goes_with_its_tasks_once_all_finished_and_the_event_with_the_last(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = NOW
    r = await client.post("/v1/policies", headers=auth, json=_body_with_invoices())
    assert r.status_code == 201, r.text
    await system(client, auth, "crm", ["business_data"])
    await system(client, auth, "billing", ["business_data"])
    await system(client, auth, "archive", ["invoices"])
    event = await _record(client, auth, "user-7", "contract_ended", THREE_YEARS_BACK)
    mine = (RetentionExpiry.tenant == tenant,)
    (business,) = await _ids(
        app, RetentionExpiry.id, *mine, RetentionExpiry.category == "business_data"
    )
    async with worker(app) as w:
        await w.run_once(NOW)
    tasks = (await client.get("/v1/tasks", headers=auth)).json()["items"]
    by = {t["system"]: t for t in tasks}
    assert set(by) == {"crm", "billing"}  # invoices run for ten years
    clock.pinned = NOW + timedelta(hours=1)
    await _report(client, tenant, by["crm"], "completed", records_affected=3)
    last = NOW + timedelta(days=2)  # 4 February, 10:00 in Paris
    clock.pinned = last
    await _report(client, tenant, by["billing"], "not_found")

    # scheduled: the expiry from when it was acted on, each task from when it finished; the
    # expiry waits for the last of its tasks
    await prune(app, last)
    await prune(app, datetime(2029, 2, 2, 9, 0, tzinfo=UTC))  # the expiry's own instant
    assert await _count(app, RetentionExpiry, *mine) == 2
    boundary = datetime(2029, 2, 4, 9, 0, tzinfo=UTC)
    await prune(app, boundary - MICRO)
    assert await _count(app, RetentionExpiry, *mine) == 2
    assert await _count(app, FulfilmentTask, FulfilmentTask.tenant == tenant) == 2
    async with explained(database_url) as (sessionmaker, plans):
        await prune(app, boundary, sessionmaker=sessionmaker)
    assert_no_scan(plans, "ix_retention_expiry_delete_after", "ix_retention_expiry_unscheduled")
    assert await _ids(app, RetentionExpiry.category, *mine) == ["invoices"]
    assert await _count(app, FulfilmentTask, FulfilmentTask.tenant == tenant) == 0
    # the event stays while its invoices' expiry runs: the subject's state still reads it
    assert await _count(app, RetentionEvent, RetentionEvent.tenant == tenant) == 1
    r = await client.get("/v1/subjects/user-7/retention", headers=auth)
    state = {i["category"]: i["state"] for i in r.json()["items"]}
    assert (state["business_data"], state["invoices"]) == ("expired", "running")
    (entry,) = await pruned_entries(client, auth, "retention_expiry")
    assert entry["data"] == {
        "kind": "retention_expiry",
        "table": "retention_expiry",
        "count": 1,
        "cutoff": _iso(boundary),
        "rule": "records.dsar_kept_for",
        "ids": [str(business)],
        "tasks": 2,
        "events": 0,
    }
    assert await pruned_entries(client, auth, "retention_event") == []

    # ten years after the contract ended, the invoices go too; 24 months later, with the event
    invoices_due = datetime(2034, 1, 31, 9, 0, 1, tzinfo=UTC)
    async with worker(app) as w:
        await w.run_once(invoices_due)
    (archive,) = (await client.get("/v1/tasks", headers=auth)).json()["items"]
    clock.pinned = invoices_due
    await _report(client, tenant, archive, "completed", records_affected=12)
    await prune(app, invoices_due)
    end = datetime(2036, 1, 31, 9, 0, 1, tzinfo=UTC)
    await prune(app, end - MICRO)
    assert await _count(app, RetentionEvent, RetentionEvent.tenant == tenant) == 1
    await prune(app, end)
    assert await _count(app, RetentionEvent, RetentionEvent.tenant == tenant) == 0
    assert await _count(app, RetentionExpiry, *mine) == 0
    (gone,) = await pruned_entries(client, auth, "retention_event")
    assert gone["data"]["ids"] == [event["id"]]
    assert "user-7" not in str(await pruned_entries(client, auth, "retention_expiry"))
    # the service no longer knows of the trigger
    r = await client.get("/v1/subjects/user-7/retention", headers=auth)
    state = {i["category"]: i["state"] for i in r.json()["items"]}
    assert (state["business_data"], state["invoices"]) == ("not_started", "not_started")


async def test_held_pending_unacted_and_indefinite_records_stay_and_hold_up_no_other(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = NOW
    r = await client.post("/v1/policies", headers=auth, json=_body_with_invoices())
    assert r.status_code == 201, r.text
    await system(client, auth, "crm", ["business_data"])
    await system(client, auth, "desk", ["support_tickets"])
    r = await client.post(
        "/v1/holds",
        headers=auth,
        json={"subject_id": "user-5", "categories": ["business_data"], "reason": "Litigation"},
    )
    assert r.status_code == 201, r.text
    await _record(client, auth, "user-5", "contract_ended", THREE_YEARS_BACK)  # held
    await _record(client, auth, "user-6", "account_closed", THREE_YEARS_BACK)  # never answered
    async with worker(app) as w:
        await w.run_once(NOW)
    listed = (await client.get("/v1/tasks", headers=auth)).json()["items"]
    assert sorted(t["status"] for t in listed) == ["held", "pending"]
    # recorded after the worker's round: passed, but not acted on yet
    replaced = await _record(client, auth, "user-8", "account_closed", THREE_YEARS_BACK)
    # the rules keep contracts indefinitely: the event has no expiry
    await _record(client, auth, "user-9", "contract_signed", THREE_YEARS_BACK)
    # a day later user-8's closing is corrected: the first expiry is superseded, prunable
    # after those held up by their tasks
    clock.pinned = NOW + timedelta(days=1)
    await _record(client, auth, "user-8", "account_closed", "2026-12-01T12:00:00+01:00")

    # one row per batch: the expiries held up by their tasks come first, and are not taken
    one = make_settings(database_url, prune_batch_size=1)
    await prune(app, NOW + timedelta(days=3650), one)
    assert await _count(app, RetentionEvent, RetentionEvent.tenant == tenant) == 4
    # user-5's two (business data held, invoices running), user-6's and user-8's later one
    assert await _count(app, RetentionExpiry, RetentionExpiry.tenant == tenant) == 4
    assert await _count(app, FulfilmentTask, FulfilmentTask.tenant == tenant) == 2
    (entry,) = await pruned_entries(client, auth, "retention_event")
    assert entry["data"]["ids"] == [replaced["id"]]


async def test_a_superseded_expiry_goes_with_its_event_the_later_occurrence_stays(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI, clock: MutableClock
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    first = await _record(client, auth, "user-9", "account_closed", "2026-01-01T12:00:00+01:00")
    # a correction, before the worker acted on the first: the first expiry is superseded now
    later = await _record(client, auth, "user-9", "account_closed", "2026-12-01T12:00:00+01:00")
    await prune(app, NOW)
    boundary = datetime(2029, 2, 2, 9, 0, tzinfo=UTC)
    await prune(app, boundary - MICRO)
    assert await _count(app, RetentionEvent, RetentionEvent.tenant == tenant) == 2
    await prune(app, boundary)
    assert await _ids(app, RetentionEvent.id, RetentionEvent.tenant == tenant) == [
        uuid.UUID(later["id"])
    ]
    (entry,) = await pruned_entries(client, auth, "retention_event")
    assert entry["data"]["ids"] == [first["id"]]
    (expiry,) = await pruned_entries(client, auth, "retention_expiry")
    assert (expiry["data"]["count"], expiry["data"]["tasks"], expiry["data"]["events"]) == (1, 0, 1)


async def test_two_workers_prune_each_expiry_once_and_leave_no_event_behind(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    database_url: str,
) -> None:
    clock.pinned = NOW
    body = _body_with_invoices()
    body["retention"][-2]["keep_for"] = {"value": 1, "unit": "years"}  # invoices: passed too
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text
    events = [
        (await _record(client, auth, f"user-{n}", "contract_ended", THREE_YEARS_BACK))["id"]
        for n in range(6)
    ]
    async with worker(app) as w:  # no system holds them: acted on with no task
        await w.run_once(NOW)
    expiries = await _ids(app, RetentionExpiry.id, RetentionExpiry.tenant == tenant)
    assert len(expiries) == 12
    small = make_settings(database_url, prune_batch_size=1)
    engines = [create_engine(database_url) for _ in range(2)]
    later = NOW + timedelta(days=800)
    try:
        makers = [create_sessionmaker(e) for e in engines]
        await asyncio.gather(*(prune(app, later, small, m) for m in makers))
        # a batch that found its event held by the other worker left it to a later round
        await prune(app, later, small)
    finally:
        for e in engines:
            await e.dispose()
    assert await _count(app, RetentionExpiry, RetentionExpiry.tenant == tenant) == 0
    assert await _count(app, RetentionEvent, RetentionEvent.tenant == tenant) == 0
    pruned = await pruned_entries(client, auth, "retention_expiry")
    assert sorted(i for e in pruned for i in e["data"]["ids"]) == sorted(map(str, expiries))
    assert all(e["data"]["count"] == 1 for e in pruned)
    gone = await pruned_entries(client, auth, "retention_event")
    assert sorted(i for e in gone for i in e["data"]["ids"]) == sorted(events)
    assert sum(e["data"]["events"] for e in pruned) == 6
