"""DSAR tickets: creation with legal clocks, lifecycle, extension, SLA, concurrency.

Dates checked by hand (and against `holidays` FR 2026/2027):
- 2027-01-31 is a Sunday; one month later has no 31st → 2027-02-28 (ICO: last day of the
  month), a Sunday → Reg. 1182/71 Art. 3(4): next working day 2027-03-01 (Monday).
- Extension: three months from receipt (ICO: "three months from the original start date")
  → 2027-04-30, a Friday, no holiday.
- Acknowledgement in 5 business days after Sunday 2027-01-31 → Friday 2027-02-05.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, auth_headers, spotrak_body

NOW = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)


async def _policy(client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> None:
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text


def _dsar(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_key": "spotrak",
        "type": "access",
        "subject": {"id": "user-42", "email": "jane@example.com"},
        "received_at": "2027-01-31T10:00:00+01:00",
        "channel": "email",
    }
    body.update(over)
    return body


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, spotrak_body())
    clock.pinned = NOW
    return auth


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/dsars", headers=auth, json=_dsar(**over))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _move(
    client: httpx.AsyncClient, auth: dict[str, str], tid: str, to: str, **extra: Any
) -> httpx.Response:
    return await client.post(f"/v1/dsars/{tid}/transitions", headers=auth, json={"to": to, **extra})


async def test_back_dated_request_gets_exact_due_dates_with_explanation(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/dsars", headers=spotrak, json=_dsar())
    assert r.status_code == 201, r.text
    t = r.json()
    assert r.headers["location"] == f"/v1/dsars/{t['id']}"
    assert r.headers["etag"] == '"1"'
    assert t["policy_version"] == 1
    assert t["status"] == "received"
    assert t["due_date"] == "2027-03-01"
    assert t["due_at"] == "2027-03-01T22:59:59.999999Z"
    assert t["acknowledge_by"] == "2027-02-05"
    assert t["extension_allowed"] is True
    assert t["extended"] is False
    assert t["sla"] == "on_track"
    assert len(t["explanation"]) >= 2
    assert all({"rule", "source", "detail"} <= set(s) for s in t["explanation"])
    assert any("2027-03-01" in s["detail"] for s in t["explanation"])
    got = await client.get(f"/v1/dsars/{t['id']}", headers=spotrak)
    assert got.json() == t


async def test_future_received_at_is_422_and_writes_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/dsars", headers=spotrak, json=_dsar(received_at="2027-03-01T00:00:00Z")
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "received_at"]
    assert (await client.get("/v1/dsars", headers=spotrak)).json()["items"] == []


async def test_a_type_the_policy_does_not_offer_is_422_naming_the_offered_ones(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/dsars", headers=spotrak, json=_dsar(type="opt_out"))
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "dsar_type_not_offered"
    assert "access" in body["offered"]
    assert "opt_out" not in body["offered"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param(_dsar(subject={}), id="subject-without-any-identifier"),
        pytest.param(_dsar(type="teleport"), id="unknown-type"),
        pytest.param(_dsar(received_at="2027-01-31T10:00:00"), id="naive-datetime"),
        pytest.param(_dsar(policy_key="nope-policy"), id="unknown-policy"),
        pytest.param(_dsar(extra=1), id="unknown-field"),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
async def test_garbage_bodies_are_problems_and_write_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str], body: Any
) -> None:
    r = await client.post("/v1/dsars", headers=spotrak, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/dsars", headers=spotrak)).json()["items"] == []


async def test_lifecycle_and_illegal_transitions(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    t = await _create(client, spotrak)
    tid = t["id"]
    bad = await _move(client, spotrak, tid, "completed")
    assert bad.status_code == 409
    assert bad.json()["code"] == "dsar_transition_not_allowed"
    assert bad.json()["allowed"] == [
        "awaiting_verification",
        "in_progress",
        "rejected",
        "withdrawn",
    ]
    r = await _move(client, spotrak, tid, "awaiting_verification")
    assert (r.status_code, r.json()["status"], r.json()["version"]) == (
        200,
        "awaiting_verification",
        2,
    )
    r = await _move(client, spotrak, tid, "in_progress", verified_at="2027-02-03T09:00:00Z")
    assert r.status_code == 200
    assert r.json()["verified_at"] == "2027-02-03T09:00:00Z"
    # identity information was asked for (awaiting_verification): the GDPR preset restarts
    # the month on its receipt (EDPB 01/2022; UK GDPR Art. 12A) → 3 March 2027, a Wednesday
    assert r.json()["due_date"] == "2027-03-03"
    assert r.json()["clock_started_at"] == "2027-02-03T09:00:00Z"
    r = await _move(client, spotrak, tid, "completed")
    assert r.status_code == 200
    done = r.json()
    assert done["status"] == "completed"
    assert done["sla"] == "met"
    final = await _move(client, spotrak, tid, "in_progress")
    assert final.status_code == 409
    assert final.json()["allowed"] == []
    events = (await client.get(f"/v1/dsars/{tid}/events", headers=spotrak)).json()["items"]
    assert [(e["kind"], e["from_status"], e["to_status"]) for e in events] == [
        ("created", None, "received"),
        ("status_changed", "received", "awaiting_verification"),
        ("status_changed", "awaiting_verification", "in_progress"),
        ("status_changed", "in_progress", "completed"),
    ]
    assert {e["actor"] for e in events} == {"tester"}


async def test_rejecting_needs_a_reason(client: httpx.AsyncClient, spotrak: dict[str, str]) -> None:
    tid = (await _create(client, spotrak))["id"]
    r = await _move(client, spotrak, tid, "rejected")
    assert r.status_code == 422
    assert r.json()["code"] == "dsar_reason_required"
    r = await _move(client, spotrak, tid, "rejected", reason="Manifestly unfounded")
    assert r.status_code == 200
    assert r.json()["status_reason"] == "Manifestly unfounded"


async def test_stale_if_match_is_412_and_current_one_succeeds(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    tid = (await _create(client, spotrak))["id"]
    r = await client.post(
        f"/v1/dsars/{tid}/transitions",
        json={"to": "in_progress"},
        headers={**spotrak, "If-Match": '"7"'},
    )
    assert r.status_code == 412
    assert r.json()["code"] == "version_mismatch"
    r = await client.post(
        f"/v1/dsars/{tid}/transitions",
        json={"to": "in_progress"},
        headers={**spotrak, "If-Match": '"1"'},
    )
    assert r.status_code == 200
    assert r.headers["etag"] == '"2"'


async def test_extension_once_within_the_first_period(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    tid = (await _create(client, spotrak))["id"]
    r = await client.post(
        f"/v1/dsars/{tid}/extension", headers=spotrak, json={"reason": "Many systems to search"}
    )
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["extended"] is True
    assert t["due_date"] == "2027-04-30"
    assert t["extension_reason"] == "Many systems to search"
    assert t["extension_notice_by"] == "2027-03-01"
    again = await client.post(
        f"/v1/dsars/{tid}/extension", headers=spotrak, json={"reason": "again"}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "dsar_extension_already_taken"
    late_id = (await _create(client, spotrak))["id"]
    clock.pinned = datetime(2027, 3, 2, tzinfo=UTC)
    late = await client.post(
        f"/v1/dsars/{late_id}/extension", headers=spotrak, json={"reason": "too late"}
    )
    assert late.status_code == 409
    assert late.json()["code"] == "dsar_extension_window_closed"


async def test_sla_is_computed_at_read_time_and_filterable(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    old = await _create(client, spotrak, received_at="2026-01-01T09:00:00+01:00")
    assert old["due_date"] == "2026-02-02"  # 2026-02-01 is a Sunday
    assert old["sla"] == "overdue"
    fresh = await _create(client, spotrak)
    assert fresh["sla"] == "on_track"
    overdue = (await client.get("/v1/dsars?sla=overdue", headers=spotrak)).json()["items"]
    assert [t["id"] for t in overdue] == [old["id"]]
    clock.pinned = datetime(2027, 2, 25, tzinfo=UTC)
    soon = (await client.get("/v1/dsars?sla=due_soon", headers=spotrak)).json()["items"]
    assert [t["id"] for t in soon] == [fresh["id"]]
    listed = (await client.get("/v1/dsars", headers=spotrak)).json()["items"]
    assert [t["id"] for t in listed] == [old["id"], fresh["id"]]  # soonest due first
    page = (await client.get("/v1/dsars?limit=1", headers=spotrak)).json()
    nxt = (
        await client.get(f"/v1/dsars?limit=1&cursor={page['next_cursor']}", headers=spotrak)
    ).json()
    assert [t["id"] for t in page["items"] + nxt["items"]] == [old["id"], fresh["id"]]
    filtered = await client.get(
        "/v1/dsars?due_before=2026-12-31T00:00:00Z&type=access", headers=spotrak
    )
    assert [t["id"] for t in filtered.json()["items"]] == [old["id"]]


async def test_clock_starting_at_verification_is_provisional_then_recomputed(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    body = spotrak_body("verified-clock")
    body["response"] = copy.deepcopy(body["response"])
    body["response"]["default"]["clock_starts"] = "verified"
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, body)
    clock.pinned = NOW
    t = await _create(client, auth, policy_key="verified-clock")
    assert t["provisional"] is True
    assert t["due_date"] == "2027-03-01"
    assert any("provisional" in s["detail"].lower() for s in t["explanation"])
    await _move(client, auth, t["id"], "awaiting_verification")
    r = await _move(client, auth, t["id"], "in_progress", verified_at="2027-02-09T15:00:00+01:00")
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["provisional"] is False
    assert v["clock_started_at"] == "2027-02-09T14:00:00Z"
    assert v["due_date"] == "2027-03-09"  # Tuesday, no holiday
    assert any("verif" in s["detail"].lower() for s in v["explanation"])


async def test_concurrent_transitions_never_both_succeed(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    tid = (await _create(client, spotrak))["id"]
    results = await asyncio.gather(*[_move(client, spotrak, tid, "in_progress") for _ in range(20)])
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409, 412}
    events = (await client.get(f"/v1/dsars/{tid}/events", headers=spotrak)).json()["items"]
    assert len(events) == 2


async def test_idempotent_create_replays(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    headers = {**spotrak, "Idempotency-Key": "dsar-1"}
    a = await client.post("/v1/dsars", headers=headers, json=_dsar())
    b = await client.post("/v1/dsars", headers=headers, json=_dsar())
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] == b.json()["id"]
    assert len((await client.get("/v1/dsars", headers=spotrak)).json()["items"]) == 1


async def test_another_tenants_ticket_is_404(
    client: httpx.AsyncClient, spotrak: dict[str, str], tenant: str
) -> None:
    tid = (await _create(client, spotrak))["id"]
    other = auth_headers(tenant + "-other")
    assert (await client.get(f"/v1/dsars/{tid}", headers=other)).status_code == 404
    assert (await _move(client, other, tid, "in_progress")).status_code == 404
    assert (
        await client.post(f"/v1/dsars/{tid}/extension", headers=other, json={"reason": "x"})
    ).status_code == 404
    assert (await client.get(f"/v1/dsars/{tid}/events", headers=other)).status_code == 404
    assert (await client.get("/v1/dsars", headers=other)).json()["items"] == []
