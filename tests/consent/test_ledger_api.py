"""Recording consent: one event, late events, idempotency, GPC, validation, append-only."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, auth_headers
from tests.consent.helpers import (
    NOW,
    POLICY_AT,
    PURPOSES,
    consent_policy,
    event,
    post_event,
    states,
)


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = POLICY_AT
    r = await client.post("/v1/policies", headers=auth, json=consent_policy())
    assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


async def test_an_event_is_recorded_with_its_policy_version_and_becomes_the_state(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/consent-events", headers=spotrak, json=event())
    assert r.status_code == 201, r.text
    ev = r.json()
    assert r.headers["location"] == f"/v1/consent-events/{ev['id']}"
    assert ev["policy_version"] == 1
    assert ev["action"] == "granted"
    assert ev["occurred_at"] == "2027-03-01T09:15:00Z"
    assert ev["recorded_at"] == "2027-03-10T12:00:00Z"
    assert ev["became_current"] is True
    assert ev["gpc_applied"] == []
    assert ev["proof"] == {"banner_version": "2027-02", "ip_country": "FR"}
    assert ev["expires_at"] is not None
    assert ev["expires_at"].startswith("2028-04-01")  # 13 months later
    got = await client.get(f"/v1/consent-events/{ev['id']}", headers=spotrak)
    assert got.status_code == 200
    assert got.json()["id"] == ev["id"]
    current = await states(client, spotrak)
    assert list(current) == PURPOSES
    assert current["audience_cookies"] == {
        "policy_key": "spotrak",
        "purpose": "audience_cookies",
        "state": "granted",
        "since": "2027-03-01T09:15:00Z",
        "expires_at": ev["expires_at"],
        "event_id": ev["id"],
        "default": "denied",
    }


async def test_occurred_at_defaults_to_now(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    body = event()
    del body["occurred_at"], body["proof"], body["source"]
    r = await client.post("/v1/consent-events", headers=spotrak, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["occurred_at"] == "2027-03-10T12:00:00Z"
    assert r.json()["source"] is None


async def test_a_late_older_event_never_overwrites_a_newer_state(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    newer = await post_event(
        client, spotrak, action="withdrawn", occurred_at="2027-03-05T10:00:00Z"
    )
    late = await post_event(client, spotrak, action="granted", occurred_at="2027-03-01T10:00:00Z")
    assert newer["became_current"] is True
    assert late["became_current"] is False
    current = (await states(client, spotrak))["audience_cookies"]
    assert (current["state"], current["event_id"]) == ("withdrawn", newer["id"])
    assert current["expires_at"] is None
    history = (
        await client.get("/v1/consent-events", headers=spotrak, params={"subject_id": "user-42"})
    ).json()["items"]
    assert [e["id"] for e in history] == [newer["id"], late["id"]]
    newest = await post_event(client, spotrak, action="granted", occurred_at="2027-03-06T10:00:00Z")
    assert newest["became_current"] is True
    assert (await states(client, spotrak))["audience_cookies"]["state"] == "granted"


async def test_events_at_the_same_instant_end_on_the_one_recorded_last(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    await post_event(client, spotrak, action="granted")
    second = await post_event(client, spotrak, action="denied")
    assert second["became_current"] is True
    current = (await states(client, spotrak))["audience_cookies"]
    assert (current["state"], current["event_id"]) == ("denied", second["id"])


async def test_a_grant_lapses_after_expires_after(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    ev = await post_event(client, spotrak)
    expires = datetime.fromisoformat(ev["expires_at"])
    clock.pinned = expires - timedelta(seconds=1)
    assert (await states(client, spotrak))["audience_cookies"]["state"] == "granted"
    clock.pinned = expires
    lapsed = (await states(client, spotrak))["audience_cookies"]
    assert (lapsed["state"], lapsed["event_id"]) == ("expired", ev["id"])


async def test_a_purpose_the_policy_does_not_define_is_422_naming_the_defined_ones(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/consent-events", headers=spotrak, json=event(purpose="telepathy"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "consent_unknown_purpose"
    assert body["defined"] == PURPOSES
    assert body["errors"][0]["loc"] == ["body", "purpose"]
    unknown = await client.post(
        "/v1/consent-events", headers=spotrak, json=event(policy_key="nope-policy")
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "policy_not_found"
    listed = await client.get("/v1/consent-events", headers=spotrak)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param(event(action="maybe"), id="unknown-action"),
        pytest.param(event(occurred_at="2027-03-01T10:00:00"), id="naive-datetime"),
        pytest.param(event(occurred_at="2027-03-11T12:00:00Z"), id="in-the-future"),
        pytest.param(event(subject_id=""), id="empty-subject"),
        pytest.param(event(subject_id="x" * 201), id="subject-too-long"),
        pytest.param(event(source="s" * 51), id="source-too-long"),
        pytest.param(event(proof={f"k{i}": i for i in range(21)}), id="proof-21-members"),
        pytest.param(event(proof={"note": "x" * 1001}), id="proof-string-too-long"),
        pytest.param(event(proof={"nested": {"a": 1}}), id="proof-not-scalar"),
        pytest.param(event(proof=["a"]), id="proof-not-an-object"),
        pytest.param(event(extra=1), id="unknown-field"),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
async def test_bad_bodies_are_422_problems_without_echo_and_write_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str], body: Any
) -> None:
    r = await client.post("/v1/consent-events", headers=spotrak, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert all("input" not in e for e in r.json().get("errors", []))  # no echoed values
    assert "x" * 100 not in r.text
    assert (await client.get("/v1/consent-events", headers=spotrak)).json()["items"] == []


async def test_proof_at_the_limits_is_accepted(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    proof: dict[str, Any] = {f"k{i}": i for i in range(17)}
    proof.update(text="x" * 1000, flag=True, nothing=None)
    ev = await post_event(client, spotrak, proof=proof)
    assert ev["proof"] == proof


async def test_the_event_records_the_policy_version_in_force_at_occurred_at(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    v2 = consent_policy()
    v2["title"] = "Spotrak v2"
    v2["consent_purposes"] = v2["consent_purposes"][:1]
    v2["change_notice"] = {"value": 0, "unit": "days"}
    r = await client.put("/v1/policies/spotrak", headers=spotrak, json=v2)
    assert r.status_code == 201, r.text
    before = await post_event(client, spotrak, occurred_at="2027-03-01T10:00:00Z")
    after = await post_event(client, spotrak, occurred_at="2027-03-10T12:00:00Z")
    assert (before["policy_version"], after["policy_version"]) == (1, 2)
    # v1's purpose `sale_of_data` may still be recorded for an instant v1 governs, not later
    old = await post_event(
        client, spotrak, purpose="sale_of_data", occurred_at="2027-03-01T10:00:00Z"
    )
    assert old["policy_version"] == 1
    r = await client.post(
        "/v1/consent-events",
        headers=spotrak,
        json=event(purpose="sale_of_data", occurred_at="2027-03-10T12:00:00Z"),
    )
    assert r.status_code == 422
    assert r.json()["defined"] == ["audience_cookies"]
    assert list(await states(client, spotrak)) == ["audience_cookies"]


async def test_same_key_and_body_replays_and_another_body_is_422(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    headers = {**spotrak, "Idempotency-Key": "click-1"}
    a = await client.post("/v1/consent-events", headers=headers, json=event())
    b = await client.post("/v1/consent-events", headers=headers, json=event())
    assert (a.status_code, b.status_code) == (201, 201)
    assert b.json() == a.json()
    assert b.headers["location"] == a.headers["location"]
    assert b.headers.get("idempotent-replayed") == "true"
    c = await client.post("/v1/consent-events", headers=headers, json=event(action="denied"))
    assert c.status_code == 422
    assert c.json()["code"] == "idempotency_key_reused"
    gpc = await client.post("/v1/consent-events", headers={**headers, "Sec-GPC": "1"}, json=event())
    assert gpc.status_code == 422
    items = (await client.get("/v1/consent-events", headers=spotrak)).json()["items"]
    assert len(items) == 1


async def test_a_replay_keeps_became_current_of_the_first_answer(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    await post_event(client, spotrak, occurred_at="2027-03-05T10:00:00Z")
    headers = {**spotrak, "Idempotency-Key": "late-1"}
    a = await client.post("/v1/consent-events", headers=headers, json=event(action="denied"))
    b = await client.post("/v1/consent-events", headers=headers, json=event(action="denied"))
    assert a.json()["became_current"] is False
    assert b.json() == a.json()


async def test_100_concurrent_posts_with_one_key_create_exactly_one_event(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    headers = {**spotrak, "Idempotency-Key": "storm-1"}
    results = await asyncio.gather(
        *[client.post("/v1/consent-events", headers=headers, json=event()) for _ in range(100)]
    )
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 409}, codes
    created = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(created) == 1
    for r in results:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_request_in_progress"
    items = (await client.get("/v1/consent-events", headers=spotrak)).json()["items"]
    assert [e["id"] for e in items] == list(created)


async def test_gpc_records_an_opt_out_for_every_purpose_that_honors_it(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/consent-events", headers={**spotrak, "Sec-GPC": "1"}, json=event())
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["gpc_applied"] == ["ad_personalisation", "sale_of_data"]
    assert len(ev["gpc_event_ids"]) == 2
    current = await states(client, spotrak)
    assert current["audience_cookies"]["state"] == "granted"
    for purpose, event_id in zip(ev["gpc_applied"], ev["gpc_event_ids"], strict=True):
        assert current[purpose]["state"] == "denied"
        assert current[purpose]["event_id"] == event_id
    history = (
        await client.get("/v1/consent-events", headers=spotrak, params={"purpose": "sale_of_data"})
    ).json()["items"]
    assert len(history) == 1
    assert (history[0]["source"], history[0]["gpc"], history[0]["action"]) == (
        "gpc",
        True,
        "denied",
    )
    assert history[0]["occurred_at"] == ev["occurred_at"]


async def test_gpc_wins_over_a_grant_of_a_purpose_that_honors_it(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/consent-events",
        headers={**spotrak, "Sec-GPC": "1"},
        json=event(purpose="sale_of_data"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["became_current"] is False
    assert (await states(client, spotrak))["sale_of_data"]["state"] == "denied"


async def test_without_the_gpc_header_nothing_else_is_recorded(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/consent-events", headers={**spotrak, "Sec-GPC": "0"}, json=event())
    assert r.json()["gpc_applied"] == []
    assert len((await client.get("/v1/consent-events", headers=spotrak)).json()["items"]) == 1


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_no_route_updates_or_deletes_an_event(
    client: httpx.AsyncClient, spotrak: dict[str, str], method: str
) -> None:
    ev = await post_event(client, spotrak)
    r = await client.request(
        method, f"/v1/consent-events/{ev['id']}", headers=spotrak, json=event(action="denied")
    )
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "method_not_allowed"
    for path in ("/v1/consent-events", f"/v1/consent-events/{ev['id']}/receipt"):
        assert (await client.request(method, path, headers=spotrak)).status_code == 405
    got = await client.get(f"/v1/consent-events/{ev['id']}", headers=spotrak)
    assert got.json()["action"] == "granted"


async def test_scopes_and_tenants(
    client: httpx.AsyncClient, spotrak: dict[str, str], tenant: str
) -> None:
    ev = await post_event(client, spotrak)
    reader = auth_headers(tenant, ["consent:read"])
    r = await client.post("/v1/consent-events", headers=reader, json=event())
    assert r.status_code == 403
    assert (await client.get("/v1/consent-events", headers=reader)).status_code == 200
    assert (await client.post("/v1/consent-events", json=event())).status_code == 401
    other = auth_headers(tenant + "-other")
    assert (await client.get(f"/v1/consent-events/{ev['id']}", headers=other)).status_code == 404
    assert (
        await client.get(f"/v1/consent-events/{ev['id']}/receipt", headers=other)
    ).status_code == 404
    assert (await client.get("/v1/consent-events", headers=other)).json()["items"] == []
    r = await client.get("/v1/subjects/user-42/consents", headers=other)
    assert r.status_code == 200
    assert r.json()["consents"] == []
    # the other tenant's own policy of the same key knows nothing of this subject
    r = await client.post("/v1/policies", headers=other, json=consent_policy())
    assert r.status_code == 201
    assert {c["state"] for c in (await states(client, other)).values()} == {"not_set"}


async def test_logs_never_carry_the_subject_id(
    client: httpx.AsyncClient, spotrak: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app")
    subject = "secret-subject-7781"
    await post_event(client, spotrak, subject_id=subject)
    await client.get(f"/v1/subjects/{subject}/consents", headers=spotrak)
    await client.get(f"/v1/subjects/{subject}/export", headers=spotrak)
    await client.get("/v1/consent-events", headers=spotrak, params={"subject_id": subject})
    await client.delete(f"/v1/subjects/{subject}", headers=spotrak)
    assert caplog.records
    for record in caplog.records:
        assert subject not in record.getMessage()
        assert subject not in str(record.__dict__)
