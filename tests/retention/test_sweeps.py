"""Daily sweeps (DESIGN §14): one `retention_sweep` task per (system, category, local day),
with its cutoff from the rules module, at pull and push systems alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.retention import jobs
from app.retention.models import RetentionSweep
from tests.conftest import MutableClock, auth_headers
from tests.events.helpers import Receiver
from tests.retention.helpers import policy, sweeps, system, system_auth, tasks, worker

# 31 March 2027, 10:00 in Paris (CEST since the 28th)
MARCH_31 = datetime(2027, 3, 31, 8, 0, tzinfo=UTC)


async def test_a_run_creates_one_sweep_per_system_and_category_with_a_month_aware_cutoff(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, tenant: str
) -> None:
    clock.pinned = MARCH_31
    await policy(client, auth)
    await system(client, auth, "crm", ["technical_logs", "business_data"])
    await system(client, auth, "ads", ["marketing_profile", "legal_archive"])
    await system(client, auth, "billing", ["business_data"])
    r = await client.post("/v1/retention/sweeps/run", headers=auth, json={})
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["created"] == 2
    assert run["postponed"] == []
    by = {(s["system"], s["category"]): s for s in run["items"]}
    # business_data is kept from a per-subject event; legal_archive indefinitely: no sweep
    assert set(by) == {("crm", "technical_logs"), ("ads", "marketing_profile")}
    logs = by["crm", "technical_logs"]
    # P1M on 31 March: 31 February does not exist; every record before 1 March 00:00 Paris
    assert logs["cutoff"] == "2027-02-28T23:00:00Z"
    assert logs["day"] == "2027-03-31"
    assert logs["then"] == "delete"
    assert logs["holds"] == []
    assert logs["status"] == "pending"
    assert logs["records_affected"] is None
    assert "2027-03-01 00:00" in logs["explanation"][1]["detail"]
    # P30D on 31 March at 10:00 Paris
    assert by["ads", "marketing_profile"]["cutoff"] == "2027-03-01T09:00:00Z"

    # a second run the same day creates nothing and lists the same sweeps
    again = (await client.post("/v1/retention/sweeps/run", headers=auth)).json()
    assert again["created"] == 0
    assert {s["id"] for s in again["items"]} == {s["id"] for s in run["items"]}

    # the system claims its sweep: the instruction is at the task's top level
    r = await client.post("/v1/tasks/claim", headers=system_auth(tenant, "crm"), json={})
    assert r.status_code == 200, r.text
    (task,) = r.json()["items"]
    assert task["id"] == logs["task_id"]
    assert task["type"] == "retention_sweep"
    assert task["dsar_id"] is None
    assert (task["category"], task["cutoff"], task["then"], task["holds"]) == (
        "technical_logs",
        "2027-02-28T23:00:00Z",
        "delete",
        [],
    )
    assert task["policy_key"] == "spotrak"
    assert task["explanation"] == logs["explanation"]
    r = await client.post(
        f"/v1/tasks/{task['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 1234},
    )
    assert r.status_code == 200, r.text
    (listed,) = await sweeps(client, auth, system="crm")
    assert (listed["status"], listed["records_affected"]) == ("completed", 1234)
    assert listed["reported_at"] is not None
    # a sweep task reports no data
    r = await client.post(
        f"/v1/tasks/{by['ads', 'marketing_profile']['task_id']}/result",
        headers=system_auth(tenant, "ads"),
        json={"status": "completed", "data": {"rows": []}},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "task_data_not_allowed"


async def test_the_worker_sweeps_once_a_local_day_across_the_dst_change(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    await policy(client, auth, keep_logs={"value": 1, "unit": "months"})
    await system(client, auth, "crm", ["technical_logs"])
    async with worker(app) as w:
        # Saturday 27 March 2027, 23:30 Paris (CET): the last day before the spring change
        await w.run_once(datetime(2027, 3, 27, 22, 30, tzinfo=UTC))
        await w.run_once(datetime(2027, 3, 27, 22, 50, tzinfo=UTC))
        # 00:10 CET on Sunday 28 March: a new local day, though still the 27th in UTC
        await w.run_once(datetime(2027, 3, 27, 23, 10, tzinfo=UTC))
        # 10:00 CEST on the 28th: the same local day, nothing new
        await w.run_once(datetime(2027, 3, 28, 8, 0, tzinfo=UTC))
    found = sorted(await sweeps(client, auth), key=lambda s: s["day"])
    assert [s["day"] for s in found] == ["2027-03-27", "2027-03-28"]
    # 23:30 CET on 27 March → 27 February 23:30 CET; 00:10 CET on 28 March → 28 February
    assert found[0]["cutoff"] == "2027-02-27T22:30:00Z"
    assert found[1]["cutoff"] == "2027-02-27T23:10:00Z"


async def test_a_push_system_gets_its_sweep_as_a_signed_job(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = MARCH_31
    await policy(client, auth)
    async with Receiver() as rx:
        vendor = await system(
            client, auth, "vendor", ["technical_logs"], delivery={"mode": "push", "url": rx.url}
        )
        async with worker(app) as w:
            await w.run_once()
        (sweep,) = await sweeps(client, auth)
        jobs_for_sweep = [
            q for q in rx.requests if q.json()["data"]["task"]["id"] == sweep["task_id"]
        ]
        (job,) = jobs_for_sweep
        assert job.verifies(vendor["secret"])
        body = job.json()["data"]
        assert body["task"]["type"] == "retention_sweep"
        assert body["task"]["cutoff"] == "2027-02-28T23:00:00Z"
        assert body["report_url"] == f"/v1/tasks/{sweep['task_id']}/result"


async def test_two_workers_at_once_create_each_sweep_once(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI, tenant: str
) -> None:
    clock.pinned = MARCH_31
    await policy(client, auth)
    for key in ("crm", "erp", "dwh"):
        await system(client, auth, key, ["technical_logs", "marketing_profile"])
    maker = app.state.sessionmaker

    async def one() -> int:
        async with maker() as session:
            return len((await jobs.create_sweeps(session, MARCH_31, tenant=tenant)).created)

    created = await asyncio.gather(one(), one(), one())
    assert sum(created) == 6
    async with maker() as session:
        rows = await session.scalar(
            select(func.count()).select_from(RetentionSweep).where(RetentionSweep.tenant == tenant)
        )
    assert rows == 6
    assert len(await tasks(client, auth, status="pending")) == 6


async def test_sweeps_stay_behind_the_tenant_wall(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, tenant: str
) -> None:
    clock.pinned = MARCH_31
    await policy(client, auth)
    await system(client, auth, "crm", ["technical_logs"])
    other = auth_headers(f"{tenant}-other")
    await policy(client, other)
    r = await client.post("/v1/retention/sweeps/run", headers=other, json={})
    assert r.json() == {"created": 0, "items": [], "postponed": []}
    assert (await client.post("/v1/retention/sweeps/run", headers=auth)).json()["created"] == 1
    assert await sweeps(client, other) == []
    (mine,) = await sweeps(client, auth)
    r = await client.get(f"/v1/tasks/{mine['task_id']}", headers=other)
    assert r.status_code == 404


async def test_a_run_names_an_existing_policy_and_needs_retention_write(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    await policy(client, auth)
    r = await client.post("/v1/retention/sweeps/run", headers=auth, json={"policy_key": "nope"})
    assert r.status_code == 404
    assert r.json()["code"] == "policy_not_found"
    r = await client.post("/v1/retention/sweeps/run", headers=auth, json={"policy_key": "X!"})
    assert r.status_code == 422
    reader = auth_headers(tenant, ["retention:read"])
    r = await client.post("/v1/retention/sweeps/run", headers=reader, json={})
    assert r.status_code == 403
    assert (await client.get("/v1/retention/sweeps", headers=reader)).status_code == 200
    r = await client.get("/v1/retention/sweeps", headers=auth_headers(tenant, ["dsar:read"]))
    assert r.status_code == 403


async def test_the_sweeps_list_pages(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm", ["technical_logs"])
    for day in range(3):
        clock.pinned = MARCH_31 + timedelta(days=day)
        await client.post("/v1/retention/sweeps/run", headers=auth)
    r = await client.get("/v1/retention/sweeps", headers=auth, params={"limit": 2})
    page = r.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    r = await client.get(
        "/v1/retention/sweeps", headers=auth, params={"limit": 2, "cursor": page["next_cursor"]}
    )
    assert [s["day"] for s in r.json()["items"]] == ["2027-04-02"]
    assert [s["day"] for s in await sweeps(client, auth, day="2027-04-01")] == ["2027-04-01"]
