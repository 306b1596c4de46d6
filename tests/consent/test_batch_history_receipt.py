"""Batch ingest, history pagination, receipts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock
from tests.consent.helpers import NOW, POLICY_AT, consent_policy, event, post_event, states


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = POLICY_AT
    r = await client.post("/v1/policies", headers=auth, json=consent_policy())
    assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


async def _batch(
    client: httpx.AsyncClient, auth: dict[str, str], events: list[Any], **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/consent-events/batch", headers={**auth, **headers}, json={"events": events}
    )


async def test_a_batch_answers_per_item_in_order_and_records_the_valid_ones(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    items: list[Any] = [
        event(subject_id="a"),
        event(subject_id="b", purpose="telepathy"),
        event(subject_id="c", policy_key="nope-policy"),
        event(subject_id="d", proof={"nested": {"x": 1}}),
        "not an object",
        event(subject_id="e", occurred_at="2030-01-01T00:00:00Z"),
        event(subject_id="f", action="denied", purpose="sale_of_data"),
    ]
    r = await _batch(client, spotrak, items)
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert (body["recorded"], body["rejected"]) == (2, 5)
    assert len(results) == len(items)
    assert results[0]["subject_id"] == "a"
    assert results[0]["became_current"] is True
    assert results[1]["code"] == "consent_unknown_purpose"
    assert results[1]["status"] == 422
    assert results[1]["defined"] == ["audience_cookies", "ad_personalisation", "sale_of_data"]
    assert results[1]["errors"][0]["loc"] == ["body", "events", 1, "purpose"]
    assert results[2]["code"] == "policy_not_found"
    assert results[3]["code"] == "validation_error"
    assert results[3]["errors"][0]["loc"][:3] == ["body", "events", 3]
    assert results[4]["code"] == "validation_error"
    assert results[5]["errors"][0]["loc"] == ["body", "events", 5, "occurred_at"]
    assert results[6]["action"] == "denied"
    assert [r.get("index") for r in results[1:6]] == [1, 2, 3, 4, 5]
    listed = (await client.get("/v1/consent-events", headers=spotrak)).json()["items"]
    assert sorted(e["subject_id"] for e in listed) == ["a", "f"]
    assert (await states(client, spotrak, "f"))["sale_of_data"]["state"] == "denied"


async def test_a_batch_ends_each_state_on_its_newest_event_whatever_the_order(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    await post_event(client, spotrak, action="withdrawn", occurred_at="2027-03-08T00:00:00Z")
    items = [
        event(action="granted", occurred_at="2027-03-09T00:00:00Z"),
        event(action="denied", occurred_at="2027-03-09T12:00:00Z"),
        event(action="granted", occurred_at="2027-03-02T00:00:00Z"),
    ]
    results = (await _batch(client, spotrak, items)).json()["results"]
    assert [r["became_current"] for r in results] == [False, True, False]
    current = (await states(client, spotrak))["audience_cookies"]
    assert (current["state"], current["event_id"]) == ("denied", results[1]["id"])


async def test_a_full_batch_of_1000_is_one_call(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    items = [event(subject_id=f"s-{i}", proof=None) for i in range(1000)]
    r = await _batch(client, spotrak, items)
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] == 1000
    assert (await states(client, spotrak, "s-999"))["audience_cookies"]["state"] == "granted"


async def test_more_than_1000_events_is_413_and_writes_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await _batch(client, spotrak, [event(subject_id=f"s-{i}") for i in range(1001)])
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "consent_batch_too_large"
    assert r.json()["max"] == 1000
    # refused before any item is looked at: even garbage items do not matter
    assert (await _batch(client, spotrak, [None] * 1001)).status_code == 413
    assert (await client.get("/v1/consent-events", headers=spotrak)).json()["items"] == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-events"),
        pytest.param({"events": "x"}, id="events-not-a-list"),
        pytest.param([event()], id="bare-list"),
        pytest.param({"events": [], "extra": 1}, id="unknown-field"),
    ],
)
async def test_a_malformed_batch_is_422(
    client: httpx.AsyncClient, spotrak: dict[str, str], body: Any
) -> None:
    r = await client.post("/v1/consent-events/batch", headers=spotrak, json=body)
    assert r.status_code == 422


async def test_an_empty_batch_records_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await _batch(client, spotrak, [])
    assert r.status_code == 200
    assert r.json() == {"results": [], "recorded": 0, "rejected": 0}


async def test_a_batch_with_an_idempotency_key_replays(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    items = [event(subject_id="a"), event(purpose="nope")]
    a = await _batch(client, spotrak, items, **{"Idempotency-Key": "batch-1"})
    b = await _batch(client, spotrak, items, **{"Idempotency-Key": "batch-1"})
    assert (a.status_code, b.status_code) == (200, 200)
    assert b.json() == a.json()
    assert len((await client.get("/v1/consent-events", headers=spotrak)).json()["items"]) == 1


async def test_history_is_newest_first_filtered_and_paginated(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    base = datetime(2027, 3, 1, tzinfo=UTC)
    ids = []
    for i in range(7):
        purpose = "audience_cookies" if i % 2 == 0 else "ad_personalisation"
        at = (base + timedelta(hours=i)).isoformat()
        ids.append((await post_event(client, spotrak, purpose=purpose, occurred_at=at))["id"])
    await post_event(client, spotrak, subject_id="someone-else")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"subject_id": "user-42", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/consent-events", headers=spotrak, params=params)).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    by_purpose = (
        await client.get(
            "/v1/consent-events",
            headers=spotrak,
            params={"subject_id": "user-42", "purpose": "ad_personalisation"},
        )
    ).json()["items"]
    assert [e["id"] for e in by_purpose] == [ids[5], ids[3], ids[1]]
    recent = (
        await client.get(
            "/v1/consent-events",
            headers=spotrak,
            params={"subject_id": "user-42", "since": "2027-03-01T04:00:00Z"},
        )
    ).json()["items"]
    assert [e["id"] for e in recent] == [ids[6], ids[5], ids[4]]
    bad = await client.get("/v1/consent-events", headers=spotrak, params={"cursor": "zzz"})
    assert bad.status_code == 422
    naive = await client.get(
        "/v1/consent-events", headers=spotrak, params={"since": "2027-03-01T04:00:00"}
    )
    assert naive.status_code == 422


async def test_a_receipt_carries_the_iso_27560_fields(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    ev = await post_event(client, spotrak, purpose="ad_personalisation")
    r = await client.get(f"/v1/consent-events/{ev['id']}/receipt", headers=spotrak)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["receipt_id"]
    assert receipt["issued_at"] == "2027-03-10T12:00:00Z"
    assert receipt["controller"] == {"name": "SPOTRAK LLC", "contact": "privacy@spotrak.com"}
    assert receipt["subject_id"] == "user-42"
    assert receipt["purpose"] == {
        "key": "ad_personalisation",
        "description": "Personalised advertising",
    }
    assert receipt["lawful_basis"] == "consent"
    assert (receipt["action"], receipt["state"], receipt["current_state"]) == (
        "granted",
        "granted",
        "granted",
    )
    assert receipt["occurred_at"] == ev["occurred_at"]
    assert receipt["source"] == "cookie_banner"
    assert receipt["policy"]["key"] == "spotrak"
    assert receipt["policy"]["version"] == 1
    assert receipt["policy"]["title"] == "Spotrak privacy policy"
    assert receipt["withdrawal_method"] == "Settings > Privacy > Advertising"
    assert receipt["retention"]["consent_expires_after"] is None
    assert receipt["event_id"] == ev["id"]
    again = (await client.get(f"/v1/consent-events/{ev['id']}/receipt", headers=spotrak)).json()
    assert again["receipt_id"] == receipt["receipt_id"]
    cookies = await post_event(client, spotrak)
    rc = (await client.get(f"/v1/consent-events/{cookies['id']}/receipt", headers=spotrak)).json()
    assert rc["retention"]["consent_expires_after"] == {"value": 13, "unit": "months"}
    assert rc["retention"]["consent_expires_at"] == cookies["expires_at"]
    assert rc["withdrawal_method"] == "Contact privacy@spotrak.com"
    missing = await client.get(
        "/v1/consent-events/00000000-0000-0000-0000-000000000000/receipt", headers=spotrak
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "consent_event_not_found"
