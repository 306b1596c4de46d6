"""Preview endpoints: the rules module through the API (DESIGN §5)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import MutableClock, spotrak_body


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    clock.pinned = datetime(2027, 2, 10, tzinfo=UTC)
    return auth


async def test_dsar_preview_gives_dates_and_explanation(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/policies/spotrak/deadlines",
        headers=spotrak,
        json={
            "kind": "dsar",
            "type": "access",
            "received_at": "2027-01-31T10:00:00+01:00",
            "verified_at": None,
        },
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["kind"] == "dsar"
    assert d["policy_version"] == 1
    assert d["clock_started_at"] == "2027-01-31T09:00:00Z"
    # 31 Jan + 1 month → 28 Feb (no 31st; ICO) → a Sunday → Monday 1 March (1182/71 Art 3(4))
    assert d["due_date"] == "2027-03-01"
    assert d["due_at"] == "2027-03-01T22:59:59.999999Z"
    assert d["acknowledge_by"] == "2027-02-05"
    assert d["extension_allowed"] is True
    assert d["extended_due_date"] == "2027-04-30"  # three months from receipt (ICO)
    assert [s["rule"] for s in d["explanation"]]


@pytest.mark.parametrize(
    ("aware_at", "due_utc"),
    [
        # autumn: CEST → CET on 2026-10-25; 72 clock hours is 72 h on the UTC timeline
        pytest.param("2026-10-24T22:30:00+02:00", "2026-10-27T20:30:00Z", id="dst-autumn-FR"),
        # spring: CET → CEST on 2026-03-29
        pytest.param("2026-03-28T10:00:00+01:00", "2026-03-31T09:00:00Z", id="dst-spring-FR"),
    ],
)
async def test_breach_preview_counts_72_clock_hours_across_dst(
    client: httpx.AsyncClient, spotrak: dict[str, str], aware_at: str, due_utc: str
) -> None:
    r = await client.post(
        "/v1/policies/spotrak/deadlines",
        headers=spotrak,
        json={"kind": "breach", "aware_at": aware_at, "risk": "risk"},
    )
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["authority_notification_required"] is True
    assert b["authority_due_at"] == due_utc
    # the Spotrak seed promises to tell users within 72 hours whatever the risk
    assert b["subjects_notification_required"] is True
    assert b["subjects_due_at"] == due_utc


async def test_preview_of_a_right_not_offered_is_422(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/policies/spotrak/deadlines",
        headers=spotrak,
        json={"kind": "dsar", "type": "opt_out", "received_at": "2027-01-31T10:00:00Z"},
    )
    assert r.status_code == 422
    assert "offered" in r.json()


async def test_preview_of_an_unknown_policy_is_404(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/policies/nope/deadlines",
        headers=auth,
        json={"kind": "breach", "aware_at": "2027-01-31T10:00:00Z", "risk": "risk"},
    )
    assert r.status_code == 404


async def test_retention_states_in_input_order_with_shared_explanations(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    records = [
        {"category": "technical_logs", "collected_at": "2026-03-01T08:00:00Z"},
        {
            "category": "business_data",
            "collected_at": "2024-01-10T08:00:00Z",
            "events": {"contract_ended": "2026-06-30T17:00:00+02:00"},
        },
        {"category": "business_data", "collected_at": "2024-01-10T08:00:00Z"},
        {"category": "no_such_category", "collected_at": "2024-01-10T08:00:00Z"},
        {"category": "technical_logs", "collected_at": "2026-04-01T08:00:00Z"},
    ]
    r = await client.post(
        "/v1/policies/spotrak/retention", headers=spotrak, json={"records": records}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    res = out["results"]
    assert len(res) == 5
    assert res[0]["state"] == "running"
    assert res[0]["then"] == "delete"
    assert res[0]["expires_at"] == "2027-03-01T08:00:00Z"
    assert res[1]["state"] == "running"
    assert res[1]["then"] == "archive"
    assert res[1]["expires_at"] == "2026-06-30T15:00:00Z"  # keep_for 0: at the trigger itself
    assert res[2]["state"] == "not_started"
    assert res[2]["expires_at"] is None
    assert res[3]["problem"]["status"] == 422
    assert res[4]["explanation_ref"] == res[0]["explanation_ref"]
    assert res[0]["explanation_ref"] in out["explanations"]
    assert any("not" in s["detail"].lower() for s in out["explanations"][res[2]["explanation_ref"]])


async def test_retention_over_10000_records_is_refused(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    record = {"category": "technical_logs", "collected_at": "2026-03-01T08:00:00Z"}
    r = await client.post(
        "/v1/policies/spotrak/retention", headers=spotrak, json={"records": [record] * 10_001}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "records"]
