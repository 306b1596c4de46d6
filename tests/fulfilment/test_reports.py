"""Reports, the operator's levers, the ticket waiting for its systems, events and proof
(DESIGN §13)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import MutableClock
from tests.events.helpers import worker_for
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


async def _one_task(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    type: str = "access",
    fulfilment: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    await policy(client, auth, fulfilment)
    await system(client, auth, "crm")
    t = await ticket(client, auth, type)
    await start(client, auth, t["id"])
    (task,) = await tasks_of(client, auth, t["id"])
    return t, task


async def _report(
    client: httpx.AsyncClient, tenant: str, task_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/v1/tasks/{task_id}/result", headers=system_auth(tenant, "crm"), json=body
    )


async def test_a_completed_report_with_data_is_recorded_and_replays(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    _, task = await _one_task(client, auth)
    body = {
        "status": "completed",
        "records_affected": 2,
        "data": {"orders": [{"id": "o-1"}, {"id": "o-2"}]},
        "proof": {"job": "export-77"},
    }
    r = await _report(client, tenant, task["id"], body)
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed"
    assert done["records_affected"] == 2
    assert done["has_data"] is True
    assert done["proof"] == {"job": "export-77"}
    assert done["attempts"] == 1
    assert done["reported_at"]
    assert "data" not in done  # the data is read through the access package only
    again = await _report(client, tenant, task["id"], body)
    assert again.status_code == 200
    assert again.json() == done  # idempotent: the same report answers the same
    other = await _report(client, tenant, task["id"], {**body, "records_affected": 3})
    assert other.status_code == 409
    assert other.json()["code"] == "task_already_reported"
    # A pull system need not claim before it reports: this one never claimed.


async def test_report_validation(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    _, task = await _one_task(client, auth, "erasure")
    r = await _report(client, tenant, task["id"], {"status": "completed", "data": {"a": 1}})
    assert r.status_code == 422
    assert r.json()["code"] == "task_data_not_allowed"
    assert r.json()["errors"][0]["loc"] == ["body", "data"]
    for status in ("failed", "refused"):
        r = await _report(client, tenant, task["id"], {"status": status})
        assert r.status_code == 422
        assert r.json()["code"] == "task_reason_required"
    r = await _report(client, tenant, task["id"], {"status": "waived"})
    assert r.status_code == 422
    r = await _report(client, tenant, task["id"], {"status": "completed", "records_affected": -1})
    assert r.status_code == 422
    (fresh,) = await tasks_of(client, auth, task["dsar_id"])
    assert fresh["status"] == "pending"
    assert fresh["attempts"] == 0


async def test_data_above_the_cap_is_413(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    _, task = await _one_task(client, auth, "portability")
    cap = app.state.settings.task_data_max_bytes
    big = {"blob": "x" * cap}
    r = await _report(client, tenant, task["id"], {"status": "completed", "data": big})
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "task_data_too_large"
    r = await _report(
        client, tenant, task["id"], {"status": "completed", "data": {"blob": "x" * 1000}}
    )
    assert r.status_code == 200


async def test_a_failed_task_is_retried_after_backoff_until_max_attempts(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
) -> None:
    t, task = await _one_task(client, auth, fulfilment={"max_attempts": 2})
    failed = {"status": "failed", "reason": "database timeout"}
    r = await _report(client, tenant, task["id"], failed)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed"
    assert r.json()["attempts"] == 1
    r = await _report(client, tenant, task["id"], failed)  # the same report: a replay
    assert r.status_code == 200
    assert r.json()["attempts"] == 1
    crm = system_auth(tenant, "crm")
    r = await client.post("/v1/tasks/claim", headers=crm, json={})
    assert r.json()["items"] == []  # not before the backoff
    async with worker_for(app) as worker:
        clock.pinned = AFTER_RECEIPT + timedelta(hours=7)  # past any backoff (cap 6 h)
        await worker.run_once()
    r = await client.get(f"/v1/tasks/{task['id']}", headers=auth)
    assert r.json()["status"] == "pending"
    r = await client.post("/v1/tasks/claim", headers=crm, json={})
    assert [x["id"] for x in r.json()["items"]] == [task["id"]]
    r = await _report(client, tenant, task["id"], {**failed, "reason": "still down"})
    assert r.json()["status"] == "failed"
    assert r.json()["attempts"] == 2
    async with worker_for(app) as worker:
        clock.pinned = AFTER_RECEIPT + timedelta(hours=20)
        await worker.run_once()
    r = await client.get(f"/v1/tasks/{task['id']}", headers=auth)
    assert r.json()["status"] == "failed"  # max_attempts reached: it stays failed
    r = await _report(client, tenant, task["id"], {"status": "completed"})
    assert r.status_code == 409
    assert r.json()["code"] == "task_already_reported"
    # The ticket cannot complete with a failed task.
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "completed"}
    )
    assert r.status_code == 409
    assert r.json()["code"] == "dsar_tasks_open"
    assert r.json()["open_tasks"] == [{"id": task["id"], "system": "crm", "status": "failed"}]
    # The operator retries: a fresh round.
    r = await client.post(f"/v1/tasks/{task['id']}/retry", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    assert r.json()["attempts"] == 0
    r = await _report(client, tenant, task["id"], {"status": "not_found"})
    assert r.status_code == 200
    assert r.json()["status"] == "not_found"
    r = await client.post(f"/v1/tasks/{task['id']}/retry", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "task_not_retryable"


async def test_the_ticket_waits_for_its_systems(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    await system(client, auth, "billing")
    await system(client, auth, "vendor")
    t = await ticket(client, auth, "erasure")
    await start(client, auth, t["id"])
    tasks = {x["system"]: x for x in await tasks_of(client, auth, t["id"])}
    complete = {"to": "completed"}
    r = await client.post(f"/v1/dsars/{t['id']}/transitions", headers=auth, json=complete)
    assert r.status_code == 409
    assert r.json()["code"] == "dsar_tasks_open"
    assert sorted(x["system"] for x in r.json()["open_tasks"]) == ["billing", "crm", "vendor"]
    r = await client.post(
        f"/v1/tasks/{tasks['crm']['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 4},
    )
    assert r.status_code == 200
    r = await client.post(
        f"/v1/tasks/{tasks['billing']['id']}/result",
        headers=system_auth(tenant, "billing"),
        json={"status": "refused", "reason": "invoices kept 10 years (tax law)"},
    )
    assert r.status_code == 200
    r = await client.post(
        f"/v1/tasks/{tasks['vendor']['id']}/waive", headers=auth, json={"reason": "offboarded"}
    )
    assert r.status_code == 200
    assert r.json()["status"] == "waived"
    r = await client.post(
        f"/v1/tasks/{tasks['vendor']['id']}/waive", headers=auth, json={"reason": "again"}
    )
    assert r.status_code == 409
    r = await client.get(f"/v1/dsars/{t['id']}", headers=auth)
    assert r.json()["tasks_summary"] == {
        "total": 3,
        "open": 0,
        "done": 2,
        "failed": 0,
        "refused": 1,
    }
    # A refused task needs the completion's reason.
    r = await client.post(f"/v1/dsars/{t['id']}/transitions", headers=auth, json=complete)
    assert r.status_code == 422
    assert r.json()["code"] == "dsar_reason_required"
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions",
        headers=auth,
        json={"to": "completed", "reason": "billing keeps invoices under Art. 17(3)(b)"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    # Late reports are refused.
    r = await client.post(f"/v1/tasks/{tasks['billing']['id']}/retry", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "dsar_closed"
    # Not fulfilled: a system refused.
    assert await outbox(app.state.sessionmaker, tenant, "dsar.fulfilled") == []


async def test_a_report_after_the_ticket_closed_is_409(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    t, task = await _one_task(client, auth)
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "withdrawn"}
    )
    assert r.status_code == 200
    (closed,) = await tasks_of(client, auth, t["id"])
    assert closed["status"] == "waived"  # nothing left to do for a withdrawn request
    r = await _report(client, tenant, task["id"], {"status": "completed"})
    assert r.status_code == 409


async def test_auto_complete_and_dsar_fulfilled(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    t, task = await _one_task(client, auth, fulfilment={"auto_complete": True})
    r = await _report(client, tenant, task["id"], {"status": "completed", "data": {"a": 1}})
    assert r.status_code == 200
    r = await client.get(f"/v1/dsars/{t['id']}", headers=auth)
    assert r.json()["status"] == "completed"
    assert r.json()["tasks_summary"]["done"] == 1
    (fulfilled,) = await outbox(app.state.sessionmaker, tenant, "dsar.fulfilled")
    assert fulfilled["id"] == t["id"]
    reported = await outbox(app.state.sessionmaker, tenant, "task.reported")
    assert [e["id"] for e in reported] == [task["id"]]
    changed = await outbox(app.state.sessionmaker, tenant, "dsar.status_changed")
    assert changed[-1]["to"] == "completed"


async def test_without_auto_complete_the_ticket_stays_in_progress_but_is_fulfilled(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    t, task = await _one_task(client, auth)
    await _report(client, tenant, task["id"], {"status": "not_found"})
    r = await client.get(f"/v1/dsars/{t['id']}", headers=auth)
    assert r.json()["status"] == "in_progress"
    assert len(await outbox(app.state.sessionmaker, tenant, "dsar.fulfilled")) == 1


async def test_task_overdue_once_and_the_sla_board_counts_the_ticket_at_risk(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm", task_within={"value": 3, "unit": "days"})
    t = await ticket(client, auth)
    await start(client, auth, t["id"])
    r = await client.get(f"/v1/dsars/{t['id']}", headers=auth)
    assert r.json()["sla"] == "on_track"
    clock.pinned = AFTER_RECEIPT + timedelta(days=2)  # the task was due 2027-02-03
    r = await client.get(f"/v1/dsars/{t['id']}", headers=auth)
    assert r.json()["sla"] == "due_soon"  # the ticket itself is due 2027-03-01
    r = await client.get("/v1/dsars?sla=due_soon", headers=auth)
    assert [x["id"] for x in r.json()["items"]] == [t["id"]]
    r = await client.get("/v1/dsars?sla=on_track", headers=auth)
    assert r.json()["items"] == []
    r = await client.get("/v1/tasks?overdue=true", headers=auth)
    assert len(r.json()["items"]) == 1
    assert r.json()["items"][0]["overdue"] is True
    async with worker_for(app) as worker:
        await worker.run_once()
        await worker.run_once()
    overdue = await outbox(app.state.sessionmaker, tenant, "task.overdue")
    assert len(overdue) == 1  # once
    assert "user-0" not in json.dumps(overdue)


async def test_each_report_appends_an_audit_entry_with_its_digest_never_the_data(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    _, task = await _one_task(client, auth)
    body = {"status": "completed", "records_affected": 1, "data": {"secret": "s3cr3t-value"}}
    await _report(client, tenant, task["id"], body)
    r = await client.get("/v1/audit-events?limit=500", headers=auth)
    assert "s3cr3t-value" not in r.text
    assert "user-0" not in r.text
    assert "example.com" not in r.text
    (entry,) = [e for e in r.json()["items"] if e["action"] == "task.reported"]
    canonical = json.dumps(
        {
            "data": body["data"],
            "proof": None,
            "reason": None,
            "records_affected": 1,
            "status": "completed",
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert entry["data"]["digest"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert entry["data"]["status"] == "completed"
    async with worker_for(app) as worker:
        for _ in range(50):
            await worker.run_once()
            v = (await client.get("/v1/audit-events/verify", headers=auth)).json()
            if v["unsealed"] == 0:
                break
            await asyncio.sleep(0.2)
    assert v["ok"] is True
    assert v["unsealed"] == 0


async def test_task_data_is_deleted_keep_results_for_after_the_ticket_closes(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
) -> None:
    t, task = await _one_task(
        client, auth, fulfilment={"keep_results_for": {"value": 2, "unit": "days"}}
    )
    await _report(
        client,
        tenant,
        task["id"],
        {"status": "completed", "records_affected": 1, "data": {"x": "personal"}},
    )
    r = await client.post(
        f"/v1/dsars/{t['id']}/transitions", headers=auth, json={"to": "completed"}
    )
    assert r.status_code == 200, r.text
    async with worker_for(app) as worker:
        clock.pinned = AFTER_RECEIPT + timedelta(days=1)
        await worker.run_once()
        r = await client.get(f"/v1/tasks/{task['id']}", headers=auth)
        assert r.json()["has_data"] is True  # not yet
        clock.pinned = AFTER_RECEIPT + timedelta(days=3)
        await worker.run_once()
    r = await client.get(f"/v1/tasks/{task['id']}", headers=auth)
    kept = r.json()
    assert kept["has_data"] is False
    assert kept["status"] == "completed"
    assert kept["records_affected"] == 1
    assert kept["result_digest"]
    r = await client.get(f"/v1/dsars/{t['id']}/package", headers=auth)
    assert r.json()["systems"][0]["data"] is None
    r = await client.get("/v1/audit-events?limit=500", headers=auth)
    assert any(
        e["action"] == "data.pruned" and e["data"]["kind"] == "task_data"
        for e in r.json()["items"]
    )


async def test_the_subject_export_holds_the_tasks_and_what_systems_returned(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    t, task = await _one_task(client, auth)
    await _report(client, tenant, task["id"], {"status": "completed", "data": {"x": "private"}})
    r = await client.get("/v1/subjects/user-0/export", headers=auth)
    assert r.status_code == 200, r.text
    (exported,) = r.json()["fulfilment_tasks"]
    assert exported["id"] == task["id"]
    assert exported["dsar_id"] == t["id"]
    assert exported["system"] == "crm"
    assert exported["status"] == "completed"
    assert exported["data"] == {"x": "private"}
    assert exported["subject"]["id"] == "user-0"


async def test_erasing_the_subject_scrubs_its_tasks(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    t, task = await _one_task(client, auth)
    await _report(client, tenant, task["id"], {"status": "completed", "data": {"x": "private"}})
    r = await client.delete("/v1/subjects/user-0", headers=auth)
    assert r.status_code == 204
    r = await client.get(f"/v1/tasks/{task['id']}", headers=auth)
    scrubbed = r.json()
    assert scrubbed["subject"]["email"] is None
    assert scrubbed["subject"]["name"] is None
    assert scrubbed["subject"]["id"] != "user-0"
    assert scrubbed["has_data"] is False
    assert scrubbed["status"] == "completed"
    r = await client.get(f"/v1/dsars/{t['id']}/package", headers=auth)
    assert "private" not in r.text
    assert "person0@example.com" not in r.text
