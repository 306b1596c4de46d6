"""Per-subject retention triggers (DESIGN §14): an event starts the clocks of the categories
kept from it; a passed expiry becomes one `retention_erasure` task per system holding the
category, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from app.retention import jobs
from tests.conftest import MutableClock, auth_headers
from tests.retention.helpers import policy, system, system_auth, tasks, worker

NOW = datetime(2027, 2, 2, 9, 0, tzinfo=UTC)
THREE_YEARS_BACK = "2024-01-31T10:00:00+01:00"


async def record(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    subject: str,
    event: str,
    at: str,
    policy_key: str = "spotrak",
) -> httpx.Response:
    return await client.post(
        f"/v1/subjects/{subject}/retention-events",
        headers=auth,
        json={"policy_key": policy_key, "event": event, "occurred_at": at},
    )


async def test_an_account_closed_three_years_back_expires_into_one_task_per_system(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI, tenant: str
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data", "support_tickets"])
    await system(client, auth, "billing", ["business_data"])
    await system(client, auth, "logs", ["technical_logs"])
    r = await record(client, auth, "user-7", "contract_ended", THREE_YEARS_BACK)
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == "/v1/subjects/user-7/retention?policy_key=spotrak"
    assert body["subject_id"] == "user-7"
    assert body["expiries"] == [
        {
            "category": "business_data",
            "expires_at": "2027-01-31T09:00:00Z",
            "then": "archive",
            "state": "expired",
        }
    ]
    r = await client.get("/v1/subjects/user-7/retention", headers=auth)
    assert r.status_code == 200, r.text
    state = {i["category"]: i for i in r.json()["items"]}
    assert state["business_data"]["state"] == "expired"
    assert state["business_data"]["expires_at"] == "2027-01-31T09:00:00Z"
    assert state["support_tickets"]["state"] == "not_started"
    assert state["support_tickets"]["expires_at"] is None
    assert state["technical_logs"]["state"] == "running"
    assert state["legal_archive"]["state"] == "indefinite"
    assert all(i["policy_key"] == "spotrak" and i["explanation"] for i in state.values())

    async with worker(app) as w:
        await w.run_once()
        await w.run_once()
    erasures = await tasks(client, auth)
    erasures = [t for t in erasures if t["type"] == "retention_erasure"]
    assert sorted(t["system"] for t in erasures) == ["billing", "crm"]
    # an operator lists one kind of task (the day's sweep of the logs is there too)
    listed = await tasks(client, auth, type="retention_erasure")
    assert sorted(t["id"] for t in listed) == sorted(t["id"] for t in erasures)
    swept = await tasks(client, auth, type="retention_sweep")
    assert [(t["system"], t["category"]) for t in swept] == [("logs", "technical_logs")]
    assert await tasks(client, auth, type="erasure") == []
    r = await client.get("/v1/tasks", headers=auth, params={"type": "shred"})
    assert r.status_code == 422, r.text
    for t in erasures:
        assert (t["subject_id"], t["category"], t["then"]) == ("user-7", "business_data", "archive")
        assert t["subject"]["id"] == "user-7"
        assert t["status"] == "pending"
    # the system acts and reports
    (crm_task,) = [t for t in erasures if t["system"] == "crm"]
    r = await client.post(
        f"/v1/tasks/{crm_task['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 3},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"


async def test_a_running_expiry_waits_for_its_day(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "desk", ["support_tickets"])
    r = await record(client, auth, "user-8", "account_closed", "2027-01-15T12:00:00+01:00")
    (expiry,) = r.json()["expiries"]
    assert expiry == {
        "category": "support_tickets",
        "expires_at": "2027-07-15T10:00:00Z",  # six months later, 12:00 in Paris (CEST)
        "then": "anonymize",
        "state": "running",
    }
    async with worker(app) as w:
        await w.run_once()
        assert [t for t in await tasks(client, auth) if t["system"] == "desk"] == []
        await w.run_once(datetime(2027, 7, 15, 10, 0, 1, tzinfo=UTC))
    (task,) = [t for t in await tasks(client, auth) if t["system"] == "desk"]
    assert task["type"] == "retention_erasure"
    assert task["then"] == "anonymize"


async def test_recording_the_event_again_replaces_the_earlier_expiry(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "desk", ["support_tickets"])
    await record(client, auth, "user-9", "account_closed", "2026-01-01T12:00:00+01:00")
    # a correction: the account closed later than first recorded
    await record(client, auth, "user-9", "account_closed", "2026-12-01T12:00:00+01:00")
    r = await client.get(
        "/v1/subjects/user-9/retention", headers=auth, params={"policy_key": "spotrak"}
    )
    (desk,) = [i for i in r.json()["items"] if i["category"] == "support_tickets"]
    assert (desk["state"], desk["expires_at"]) == ("running", "2027-06-01T10:00:00Z")
    async with worker(app) as w:
        await w.run_once()  # the first occurrence's expiry (2026-07-01) is gone
    assert [t for t in await tasks(client, auth) if t["system"] == "desk"] == []


async def test_two_workers_at_once_create_each_erasure_task_once(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data"])
    await system(client, auth, "billing", ["business_data"])
    for n in range(5):
        r = await record(client, auth, f"user-{n}", "contract_ended", THREE_YEARS_BACK)
        assert r.status_code == 201
    maker = app.state.sessionmaker

    async def one() -> int:
        total = 0
        while True:
            async with maker() as session:
                n = await jobs.create_erasures(session, NOW, batch=2)
            total += n
            if n == 0:
                return total

    done = await asyncio.gather(one(), one(), one())
    assert sum(done) >= 5  # every expiry acted on (other tests' expiries may join in)
    mine = [t for t in await tasks(client, auth) if t["type"] == "retention_erasure"]
    assert len(mine) == 10
    assert len({(t["subject_id"], t["system"]) for t in mine}) == 10


async def test_an_event_no_rule_starts_at_is_422_naming_the_field(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    for event in ("account_deleted", "collected", "last_activity"):
        r = await record(client, auth, "user-1", event, THREE_YEARS_BACK)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["code"] == "retention_event_unknown"
        assert problem["errors"][0]["loc"] == ["body", "event"]
        assert problem["allowed"] == ["account_closed", "contract_ended"]
    r = await record(client, auth, "user-1", "contract_ended", "2027-03-01T00:00:00Z")
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "occurred_at"]
    r = await record(client, auth, "user-1", "contract_ended", "2027-01-01T00:00:00")
    assert r.status_code == 422  # no offset
    r = await record(client, auth, "user-1", "contract_ended", THREE_YEARS_BACK, "nope")
    assert r.status_code == 422
    assert r.json()["code"] == "policy_not_found"
    # an id no URL could carry back is refused when written
    r = await record(client, auth, "a%01b", "contract_ended", THREE_YEARS_BACK)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["path", "subject_id"]
    r = await client.get(
        "/v1/subjects/user-1/retention", headers=auth, params={"policy_key": "x-y"}
    )
    assert r.status_code == 404
    assert r.json()["code"] == "policy_not_found"


async def test_a_subject_id_with_a_slash_is_recorded_and_read_back(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    r = await record(client, auth, "tenant%2F42", "account_closed", THREE_YEARS_BACK)
    assert r.status_code == 201, r.text
    assert r.json()["subject_id"] == "tenant/42"
    assert r.headers["location"].startswith("/v1/subjects/tenant%2F42/retention")
    r = await client.get("/v1/subjects/tenant%2F42/retention", headers=auth)
    (desk,) = [i for i in r.json()["items"] if i["category"] == "support_tickets"]
    assert desk["state"] == "expired"


async def test_retention_events_stay_behind_the_tenant_wall(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, tenant: str
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    other = auth_headers(f"{tenant}-other")
    await policy(client, other)
    await record(client, auth, "user-3", "contract_ended", THREE_YEARS_BACK)
    r = await client.get("/v1/subjects/user-3/retention", headers=other)
    (biz,) = [i for i in r.json()["items"] if i["category"] == "business_data"]
    assert biz["state"] == "not_started"
    r = await client.get("/v1/subjects/user-3/export", headers=other)
    assert r.status_code == 404
    r = await client.post(
        "/v1/subjects/user-3/retention-events",
        headers=auth_headers(tenant, ["retention:read"]),
        json={"policy_key": "spotrak", "event": "contract_ended", "occurred_at": THREE_YEARS_BACK},
    )
    assert r.status_code == 403


async def test_recording_an_event_is_idempotent_with_a_key(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    body = {"policy_key": "spotrak", "event": "contract_ended", "occurred_at": THREE_YEARS_BACK}
    headers = {**auth, "Idempotency-Key": "ev-1"}
    first = await client.post("/v1/subjects/u-1/retention-events", headers=headers, json=body)
    again = await client.post("/v1/subjects/u-1/retention-events", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = await client.post("/v1/subjects/u-2/retention-events", headers=headers, json=body)
    assert other.status_code == 422  # the same key for another subject
