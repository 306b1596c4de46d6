"""Legal holds (DESIGN §14, GDPR Art. 17(3)(e)): while active, no sweep, retention erasure or
DSAR erasure task touches what they cover; released (or past `until`), the postponed work runs
on the next worker round. Every hold and release is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import MutableClock, auth_headers
from tests.pruning.helpers import prune
from tests.retention.helpers import policy, sweeps, system, system_auth, tasks, worker

NOW = datetime(2027, 3, 31, 8, 0, tzinfo=UTC)


async def hold(client: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/holds", headers=auth, json={"reason": "Litigation 2027-113", **body})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/holds/{r.json()['id']}"
    return dict(r.json())


async def audit_actions(client: httpx.AsyncClient, auth: dict[str, str]) -> list[str]:
    r = await client.get("/v1/audit-events", headers=auth, params={"limit": 500})
    return [e["action"] for e in r.json()["items"]]


async def test_a_subject_hold_is_listed_in_the_sweep_and_a_category_hold_stops_it(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["technical_logs", "marketing_profile"])
    await hold(client, auth, subject_id="user-1")  # every category of user-1
    await hold(client, auth, subject_id="user-2", categories=["technical_logs"])
    await hold(client, auth, subject_id="user-3", categories=["business_data"])
    everyone = await hold(client, auth, categories=["marketing_profile"])
    r = await client.post("/v1/retention/sweeps/run", headers=auth)
    run = r.json()
    assert run["created"] == 1
    (logs,) = run["items"]
    assert logs["category"] == "technical_logs"
    assert logs["holds"] == ["user-1", "user-2"]
    (postponed,) = run["postponed"]
    assert (postponed["category"], postponed["held_by"]) == ("marketing_profile", [everyone["id"]])
    r = await client.get(f"/v1/tasks/{logs['task_id']}", headers=auth)
    assert r.json()["holds"] == ["user-1", "user-2"]

    # released: the next worker round creates the day's postponed sweep
    r = await client.delete(f"/v1/holds/{everyone['id']}", headers=auth)
    assert r.status_code == 204
    async with worker(app) as w:
        await w.run_once()
    assert {s["category"] for s in await sweeps(client, auth)} == {
        "technical_logs",
        "marketing_profile",
    }
    actions = await audit_actions(client, auth)
    assert actions.count("hold.placed") == 4
    assert actions.count("hold.released") == 1


async def test_a_held_subjects_expiry_waits_for_the_release(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI, tenant: str
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data"])
    await system(client, auth, "desk", ["support_tickets"])
    h = await hold(client, auth, subject_id="user-5", categories=["business_data"])
    for event in ("contract_ended", "account_closed"):
        r = await client.post(
            "/v1/subjects/user-5/retention-events",
            headers=auth,
            json={"policy_key": "spotrak", "event": event, "occurred_at": "2020-01-01T00:00:00Z"},
        )
        assert r.status_code == 201
    r = await client.get("/v1/subjects/user-5/retention", headers=auth)
    state = {i["category"]: i for i in r.json()["items"]}
    assert state["business_data"]["state"] == "held"
    assert "Litigation 2027-113" in state["business_data"]["explanation"][-1]["detail"]
    assert state["support_tickets"]["state"] == "expired"

    async with worker(app) as w:
        await w.run_once()
        by = {t["system"]: t for t in await tasks(client, auth)}
        assert by["desk"]["status"] == "pending"  # not covered by the hold
        held = by["crm"]
        assert held["status"] == "held"
        assert held["held_by"] == [h["id"]]
        # neither claimable nor reportable while held
        r = await client.post("/v1/tasks/claim", headers=system_auth(tenant, "crm"), json={})
        assert r.json()["items"] == []
        r = await client.post(
            f"/v1/tasks/{held['id']}/result",
            headers=system_auth(tenant, "crm"),
            json={"status": "completed"},
        )
        assert r.status_code == 409
        assert r.json()["code"] == "task_held"
        await w.run_once()
        assert (await client.get(f"/v1/tasks/{held['id']}", headers=auth)).json()[
            "status"
        ] == "held"

        assert (await client.delete(f"/v1/holds/{h['id']}", headers=auth)).status_code == 204
        assert (await client.delete(f"/v1/holds/{h['id']}", headers=auth)).status_code == 204
        await w.run_once()
    r = await client.get(f"/v1/tasks/{held['id']}", headers=auth)
    assert r.json()["status"] == "pending"
    assert r.json()["held_by"] == [h["id"]]
    r = await client.post("/v1/tasks/claim", headers=system_auth(tenant, "crm"), json={})
    assert [t["id"] for t in r.json()["items"]] == [held["id"]]
    actions = await audit_actions(client, auth)
    assert actions.count("hold.released") == 1  # the second release changed nothing


async def test_a_hold_past_its_until_ends_by_itself(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data"])
    until = NOW + timedelta(days=10)
    h = await hold(client, auth, subject_id="user-6", until=until.isoformat())
    await client.post(
        "/v1/subjects/user-6/retention-events",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "event": "contract_ended",
            "occurred_at": "2020-01-01T00:00:00Z",
        },
    )
    async with worker(app) as w:
        await w.run_once()
        (task,) = await tasks(client, auth)
        assert task["status"] == "held"
        await w.run_once(until - timedelta(seconds=1))
        assert (await tasks(client, auth))[0]["status"] == "held"
        await w.run_once(until + timedelta(seconds=1))
    assert (await tasks(client, auth))[0]["status"] == "pending"
    clock.pinned = until + timedelta(seconds=2)
    r = await client.get("/v1/holds", headers=auth)
    (listed,) = r.json()["items"]
    assert listed["id"] == h["id"]
    assert listed["active"] is False
    assert listed["released_by"] == "until"
    assert (await client.get("/v1/holds", headers=auth, params={"active": True})).json()[
        "items"
    ] == []
    assert "hold.released" in await audit_actions(client, auth)


async def test_a_dsar_erasure_under_hold_keeps_the_held_systems_data_and_says_why(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI, tenant: str
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data"])
    await system(client, auth, "logs", ["technical_logs"])
    h = await hold(client, auth, subject_id="user-4", categories=["business_data"])
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={"policy_key": "spotrak", "type": "erasure", "subject": {"id": "user-4"}},
    )
    dsar = r.json()
    r = await client.post(
        f"/v1/dsars/{dsar['id']}/transitions", headers=auth, json={"to": "in_progress"}
    )
    assert r.status_code == 200, r.text
    kept = [s for s in r.json()["explanation"] if s["rule"] == "legal hold"]
    (step,) = kept
    assert "system 'crm'" in step["detail"]
    assert "Litigation 2027-113" in step["detail"]
    assert "business_data" in step["detail"]
    assert step["source"] == "GDPR Art. 17(3)(e)"
    by = {
        t["system"]: t
        for t in (await client.get(f"/v1/dsars/{dsar['id']}/tasks", headers=auth)).json()["items"]
    }
    assert by["crm"]["status"] == "held"
    assert by["logs"]["status"] == "pending"
    # the unheld system answers; the request completes with what the hold kept named
    r = await client.post(
        f"/v1/tasks/{by['logs']['id']}/result",
        headers=system_auth(tenant, "logs"),
        json={"status": "completed", "records_affected": 9},
    )
    assert r.status_code == 200
    r = await client.post(
        f"/v1/dsars/{dsar['id']}/transitions", headers=auth, json={"to": "completed"}
    )
    assert r.status_code == 200, r.text
    # released: the postponed erasure runs, though the request has closed
    assert (await client.delete(f"/v1/holds/{h['id']}", headers=auth)).status_code == 204
    async with worker(app) as w:
        await w.run_once()
    r = await client.post(
        f"/v1/tasks/{by['crm']['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 2},
    )
    assert r.status_code == 200, r.text


async def test_a_closed_ticket_whose_erasure_a_hold_postpones_outlives_its_keeping_period(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI, tenant: str
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data"])
    h = await hold(client, auth, subject_id="user-4")
    dsar = (
        await client.post(
            "/v1/dsars",
            headers=auth,
            json={"policy_key": "spotrak", "type": "erasure", "subject": {"id": "user-4"}},
        )
    ).json()
    await client.post(
        f"/v1/dsars/{dsar['id']}/transitions", headers=auth, json={"to": "in_progress"}
    )
    r = await client.post(
        f"/v1/dsars/{dsar['id']}/transitions", headers=auth, json={"to": "completed"}
    )
    assert r.status_code == 200, r.text  # a held task is not open: the request completes
    ten_years = NOW + timedelta(days=3650)
    await prune(app, ten_years)
    assert (await client.get(f"/v1/dsars/{dsar['id']}", headers=auth)).status_code == 200
    await client.delete(f"/v1/holds/{h['id']}", headers=auth)
    async with worker(app) as w:
        await w.run_once(ten_years)
    (task,) = (await client.get(f"/v1/dsars/{dsar['id']}/tasks", headers=auth)).json()["items"]
    assert task["status"] == "pending"
    clock.pinned = ten_years
    r = await client.post(
        f"/v1/tasks/{task['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 1},
    )
    assert r.status_code == 200, r.text
    await prune(app, ten_years + timedelta(seconds=1))
    assert (await client.get(f"/v1/dsars/{dsar['id']}", headers=auth)).status_code == 404


async def test_holds_are_validated(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"reason": "x"}, ["body"]),
        ({"categories": ["not_a_category"], "reason": "x"}, ["body", "categories", 0]),
        ({"categories": [], "reason": "x"}, ["body", "categories"]),
        ({"categories": ["Bad Name"], "reason": "x"}, ["body", "categories"]),
        ({"subject_id": "u", "reason": ""}, ["body", "reason"]),
        ({"subject_id": "u", "reason": "x", "until": "2027-01-01T00:00:00Z"}, ["body", "until"]),
        ({"subject_id": "u", "reason": "x", "until": "2028-01-01T00:00:00"}, ["body", "until"]),
        ({"subject_id": "a/../b", "reason": "x"}, ["body", "subject_id"]),
    ]
    for body, loc in cases:
        r = await client.post("/v1/holds", headers=auth, json=body)
        assert r.status_code == 422, (body, r.text)
        problem = r.json()
        assert problem["errors"][0]["loc"][: len(loc)] == loc, (body, problem)
        assert "a/../b" not in r.text
    r = await client.get("/v1/holds", headers=auth)
    assert r.json()["items"] == []


async def test_holds_stay_behind_the_tenant_wall(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, tenant: str
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    h = await hold(client, auth, subject_id="user-1")
    other = auth_headers(f"{tenant}-other")
    assert (await client.get("/v1/holds", headers=other)).json()["items"] == []
    r = await client.delete(f"/v1/holds/{h['id']}", headers=other)
    assert r.status_code == 404
    assert r.json()["code"] == "hold_not_found"
    r = await client.delete(
        f"/v1/holds/{h['id']}", headers=auth_headers(tenant, ["retention:read"])
    )
    assert r.status_code == 403
    (mine,) = (await client.get("/v1/holds", headers=auth, params={"subject_id": "user-1"})).json()[
        "items"
    ]
    assert mine["active"] is True
    assert (await client.get("/v1/holds", headers=auth, params={"subject_id": "x"})).json()[
        "items"
    ] == []


async def test_a_subject_under_hold_is_not_erased_and_their_retention_data_is_exported(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, app: FastAPI
) -> None:
    clock.pinned = NOW
    await policy(client, auth)
    await system(client, auth, "crm", ["business_data"])
    h = await hold(client, auth, subject_id="user-9", categories=["support_tickets"])
    await client.post(
        "/v1/subjects/user-9/retention-events",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "event": "contract_ended",
            "occurred_at": "2020-01-01T00:00:00Z",
        },
    )
    async with worker(app) as w:
        await w.run_once()
    r = await client.get("/v1/subjects/user-9/export", headers=auth)
    assert r.status_code == 200, r.text
    export = r.json()
    assert [e["event"] for e in export["retention_events"]] == ["contract_ended"]
    assert [x["id"] for x in export["legal_holds"]] == [h["id"]]
    assert [t["type"] for t in export["fulfilment_tasks"]] == ["retention_erasure"]

    r = await client.delete("/v1/subjects/user-9", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "subject_on_hold"
    assert r.json()["holds"] == [h["id"]]
    assert (await client.get("/v1/subjects/user-9/export", headers=auth)).status_code == 200

    await client.delete(f"/v1/holds/{h['id']}", headers=auth)
    r = await client.delete("/v1/subjects/user-9", headers=auth)
    assert r.status_code == 204
    assert (await client.get("/v1/subjects/user-9/export", headers=auth)).status_code == 404
    (task,) = await tasks(client, auth)
    assert task["subject_id"].startswith("erased:")
    assert task["subject"]["id"] == task["subject_id"]
    (ended,) = (await client.get("/v1/holds", headers=auth)).json()["items"]
    assert ended["subject_id"].startswith("erased:")
