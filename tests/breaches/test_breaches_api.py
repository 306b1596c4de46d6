"""Breach incidents: duties by risk and role, clocks across DST, notifications, the record.

Instants checked by hand:
- GDPR Art. 33(1): 72 clock hours from awareness, whatever DST does to the local clock.
  Aware 2026-10-24 22:30 Paris (CEST, UTC+2) = 20:30Z; the clocks go back on 2026-10-25, and
  72 h later is 2026-10-27T20:30Z (21:30 CET locally, not 22:30).
- Aware 2026-03-28 10:00 Paris (CET, UTC+1) = 09:00Z; the clocks go forward on 2026-03-29,
  and 72 h later is 2026-03-31T09:00Z (11:00 CEST locally).
- PIPEDA: records kept 24 months (SOR/2018-64 s.6) from awareness 2026-03-28 10:00 Toronto
  (EDT, UTC-4) → 2028-03-28 10:00 Toronto = 14:00Z.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, auth_headers, spotrak_body

AUTUMN = "2026-10-24T22:30:00+02:00"
AUTUMN_DUE = "2026-10-27T20:30:00Z"
SPRING = "2026-03-28T10:00:00+01:00"
SPRING_DUE = "2026-03-31T09:00:00Z"
NOW = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)  # after AUTUMN, before its due instant


async def _policy(client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]) -> None:
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text


def gdpr_default_body() -> dict[str, Any]:
    """Spotrak without its own breach promises: the GDPR preset (people told at high risk)."""
    body = spotrak_body("gdpr-default")
    del body["breach"]
    return body


def pipeda_body() -> dict[str, Any]:
    return {
        "key": "northwind",
        "title": "Northwind privacy policy",
        "controller": {"name": "Northwind Inc.", "country": "CA"},
        "jurisdiction": {"regime": "pipeda", "country": "CA", "timezone": "America/Toronto"},
        "rights": ["access", "rectification"],
    }


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, spotrak_body())
    clock.pinned = NOW
    return auth


def _breach(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_key": "spotrak",
        "title": "Location history bucket exposed",
        "aware_at": AUTUMN,
        "occurred_at": "2026-10-23T08:00:00+02:00",
        "data_categories": ["location_history", "email"],
        "subjects_affected": 1250,
        "risk": "high_risk",
        "description": "A storage bucket was publicly readable for 38 hours.",
    }
    body.update(over)
    return body


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **over: Any) -> dict[str, Any]:
    r = await client.post("/v1/breaches", headers=auth, json=_breach(**over))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _patch(
    client: httpx.AsyncClient, auth: dict[str, str], bid: str, **body: Any
) -> httpx.Response:
    return await client.patch(f"/v1/breaches/{bid}", headers=auth, json=body)


async def _notify(
    client: httpx.AsyncClient, auth: dict[str, str], bid: str, **body: Any
) -> httpx.Response:
    return await client.post(f"/v1/breaches/{bid}/notifications", headers=auth, json=body)


async def _ids(client: httpx.AsyncClient, auth: dict[str, str], query: str = "") -> list[str]:
    r = await client.get(f"/v1/breaches{query}", headers=auth)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


# ---- clocks --------------------------------------------------------------------------------


async def test_72_hours_across_the_autumn_dst_change_is_an_exact_instant(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post("/v1/breaches", headers=spotrak, json=_breach())
    assert r.status_code == 201, r.text
    b = r.json()
    assert r.headers["location"] == f"/v1/breaches/{b['id']}"
    assert r.headers["etag"] == '"1"'
    assert b["policy_key"] == "spotrak"
    assert b["policy_version"] == 1
    assert b["aware_at"] == "2026-10-24T20:30:00Z"
    assert b["occurred_at"] == "2026-10-23T06:00:00Z"
    assert b["status"] == "open"
    assert b["role"] == "controller"
    assert b["authority_notification_required"] is True
    assert b["authority_due_at"] == AUTUMN_DUE
    assert b["subjects_notification_required"] is True
    assert b["subjects_due_at"] == AUTUMN_DUE
    assert b["controller_notification_required"] is False
    assert b["controller_due_at"] is None
    assert b["next_due_at"] == AUTUMN_DUE
    assert b["notifications"] == []
    assert b["overdue"] is False
    assert b["keep_until"] is None  # GDPR sets no period for the record
    assert b["closed_at"] is None
    assert b["version"] == 1
    assert b["data_categories"] == ["location_history", "email"]
    assert b["subjects_affected"] == 1250
    assert all({"rule", "source", "detail"} <= set(s) for s in b["explanation"])
    assert any("GDPR Art. 33" in (s["source"] or "") + s["rule"] for s in b["explanation"])
    assert [(h["kind"], h["version"], h["actor"]) for h in b["history"]] == [
        ("created", 1, "tester")
    ]
    got = await client.get(f"/v1/breaches/{b['id']}", headers=spotrak)
    assert got.status_code == 200
    assert got.headers["etag"] == '"1"'
    assert got.json() == b


async def test_72_hours_across_the_spring_dst_change_is_an_exact_instant(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    b = await _create(client, spotrak, aware_at=SPRING, occurred_at=None)
    assert b["authority_due_at"] == SPRING_DUE
    assert b["subjects_due_at"] == SPRING_DUE
    assert b["occurred_at"] is None


@pytest.mark.parametrize(
    ("risk", "authority", "subjects"),
    [
        pytest.param("unlikely", False, True, id="unlikely-GDPR-Art33(1)-no-authority"),
        pytest.param("risk", True, True, id="risk"),
        pytest.param("high_risk", True, True, id="high_risk"),
    ],
)
async def test_spotrak_duties_at_each_risk_level(
    client: httpx.AsyncClient, spotrak: dict[str, str], risk: str, authority: bool, subjects: bool
) -> None:
    b = await _create(client, spotrak, risk=risk)
    assert b["risk"] == risk
    assert b["authority_notification_required"] is authority
    assert b["authority_due_at"] == (AUTUMN_DUE if authority else None)
    # The Spotrak policy promises to tell its users within 72 h whatever the risk.
    assert b["subjects_notification_required"] is subjects
    assert b["subjects_due_at"] == AUTUMN_DUE


@pytest.mark.parametrize(
    ("risk", "authority", "subjects"),
    [
        pytest.param("unlikely", False, False, id="unlikely"),
        pytest.param("risk", True, False, id="risk-GDPR-Art34(1)-only-high"),
        pytest.param("high_risk", True, True, id="high_risk"),
    ],
)
async def test_gdpr_preset_duties_at_each_risk_level(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clock: MutableClock,
    risk: str,
    authority: bool,
    subjects: bool,
) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, gdpr_default_body())
    clock.pinned = NOW
    b = await _create(client, auth, policy_key="gdpr-default", risk=risk)
    assert b["authority_notification_required"] is authority
    assert b["authority_due_at"] == (AUTUMN_DUE if authority else None)
    assert b["subjects_notification_required"] is subjects
    assert b["subjects_due_at"] is None  # "without undue delay": no fixed period
    if subjects:
        assert any("no fixed period" in s["detail"] for s in b["explanation"])


async def test_processor_owes_only_the_controller_notice(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    body = spotrak_body("spotrak-processor")
    body["breach"] = {
        **copy.deepcopy(body["breach"]),
        "controller_within": {"value": 24, "unit": "hours"},
    }
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, body)
    clock.pinned = NOW
    b = await _create(client, auth, policy_key="spotrak-processor", role="processor")
    assert b["role"] == "processor"
    assert b["authority_notification_required"] is False
    assert b["subjects_notification_required"] is False
    assert b["controller_notification_required"] is True
    assert b["controller_due_at"] == "2026-10-25T20:30:00Z"
    assert b["next_due_at"] == "2026-10-25T20:30:00Z"
    assert any("processor" in s["detail"].lower() for s in b["explanation"])
    r = await _notify(client, auth, b["id"], audience="controller", sent_at="2026-10-25T09:00:00Z")
    assert r.status_code == 201, r.text
    assert r.json()["overdue"] is False
    assert r.json()["next_due_at"] is None


async def test_processor_under_the_gdpr_preset_has_no_fixed_window(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    b = await _create(client, spotrak, role="processor", risk="unlikely")
    assert b["controller_notification_required"] is True
    assert b["controller_due_at"] is None
    assert b["next_due_at"] is None
    assert b["overdue"] is False


async def test_records_kept_for_gives_keep_until(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, pipeda_body())
    clock.pinned = NOW
    b = await _create(
        client,
        auth,
        policy_key="northwind",
        aware_at="2026-03-28T10:00:00-04:00",
        occurred_at=None,
        risk="risk",
    )
    assert b["keep_until"] == "2028-03-28T14:00:00Z"
    assert b["authority_notification_required"] is True
    assert b["authority_due_at"] is None  # "as soon as feasible"
    assert any("2028-03-28" in s["detail"] for s in b["explanation"])


# ---- notifications and overdue -------------------------------------------------------------


async def test_late_notice_needs_a_reason_and_is_marked_late(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    bid = (await _create(client, spotrak))["id"]
    clock.pinned = datetime(2026, 11, 2, tzinfo=UTC)
    r = await _notify(client, spotrak, bid, audience="authority", sent_at="2026-10-28T09:00:00Z")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "breach_notification_late_reason_required"
    assert "GDPR Art. 33(1)" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "late_reason"]
    unchanged = (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).json()
    assert (unchanged["notifications"], unchanged["version"]) == ([], 1)

    r = await _notify(
        client,
        spotrak,
        bid,
        audience="authority",
        sent_at="2026-10-28T09:00:00+01:00",
        reference="CNIL-2026-4471",
        late_reason="Forensics took four days to confirm personal data was involved",
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/v1/breaches/{bid}"
    assert r.headers["etag"] == '"2"'
    b = r.json()
    [note] = b["notifications"]
    assert note["audience"] == "authority"
    assert note["sent_at"] == "2026-10-28T08:00:00Z"
    assert note["late"] is True
    assert note["reference"] == "CNIL-2026-4471"
    assert note["late_reason"].startswith("Forensics")
    assert note["recorded_at"] == "2026-11-02T00:00:00Z"
    assert b["overdue"] is True  # the people affected are still not told
    assert b["history"][-1]["kind"] == "notification_recorded"
    assert b["history"][-1]["changes"]["authority_notified_at"]["to"] == "2026-10-28T08:00:00Z"


async def test_notice_on_time_is_not_late_and_needs_no_reason(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    bid = (await _create(client, spotrak))["id"]
    clock.pinned = datetime(2026, 10, 28, tzinfo=UTC)
    r = await _notify(client, spotrak, bid, audience="subjects", sent_at="2026-10-27T20:30:00Z")
    assert r.status_code == 201, r.text  # exactly at the due instant is on time
    assert r.json()["notifications"][0]["late"] is False
    assert r.json()["next_due_at"] == AUTUMN_DUE  # the authority's notice is still due


_SENT = "2026-10-25T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(
            {"audience": "authority", "sent_at": "2026-10-26T00:00:00Z"},
            "validation_error",
            id="future",
        ),
        pytest.param(
            {"audience": "authority", "sent_at": "2026-10-24T00:00:00Z"},
            "validation_error",
            id="before-awareness",
        ),
        pytest.param(
            {"audience": "controller", "sent_at": _SENT},
            "breach_audience_not_applicable",
            id="controller-of-a-controller",
        ),
        pytest.param(
            {"audience": "press", "sent_at": _SENT}, "validation_error", id="unknown-audience"
        ),
        pytest.param(
            {"audience": "authority", "sent_at": "2026-10-25T00:00:00"},
            "validation_error",
            id="naive",
        ),
        pytest.param({"audience": "authority"}, "validation_error", id="no-sent_at"),
    ],
)
async def test_bad_notifications_are_problems_and_write_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str], body: dict[str, Any], code: str
) -> None:
    bid = (await _create(client, spotrak))["id"]
    r = await _notify(client, spotrak, bid, **body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    after = (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).json()
    assert (after["notifications"], after["version"]) == ([], 1)


async def test_overdue_on_an_old_incident_until_every_required_notice_is_sent(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    old = await _create(client, spotrak)
    fresh_clock = datetime(2026, 10, 28, 12, 0, tzinfo=UTC)
    clock.pinned = fresh_clock
    fresh = await _create(client, spotrak, aware_at="2026-10-28T10:00:00+01:00")
    assert fresh["overdue"] is False
    got = (await client.get(f"/v1/breaches/{old['id']}", headers=spotrak)).json()
    assert got["overdue"] is True
    assert await _ids(client, spotrak, "?overdue=true") == [old["id"]]
    assert await _ids(client, spotrak, "?overdue=false") == [fresh["id"]]

    late = {"late_reason": "Forensics first"}
    r = await _notify(
        client, spotrak, old["id"], audience="authority", sent_at="2026-10-28T09:00:00Z", **late
    )
    assert r.json()["overdue"] is True
    r = await _notify(
        client, spotrak, old["id"], audience="subjects", sent_at="2026-10-28T10:00:00Z", **late
    )
    assert r.json()["overdue"] is False
    assert r.json()["next_due_at"] is None
    assert await _ids(client, spotrak, "?overdue=true") == []

    clock.pinned = datetime(2026, 11, 5, tzinfo=UTC)  # the fresh one's 72 h have run out
    assert await _ids(client, spotrak, "?overdue=true") == [fresh["id"]]


# ---- PATCH: re-assessment, lifecycle -------------------------------------------------------


async def test_reassessing_the_risk_recomputes_duties_and_records_who_and_why(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, gdpr_default_body())
    clock.pinned = NOW
    b = await _create(client, auth, policy_key="gdpr-default", risk="unlikely")
    assert b["authority_notification_required"] is False
    assert b["next_due_at"] is None
    r = await _patch(client, auth, b["id"], risk="risk", reason="Passwords were not hashed")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    u = r.json()
    assert u["risk"] == "risk"
    assert u["authority_notification_required"] is True
    assert u["authority_due_at"] == AUTUMN_DUE
    assert u["subjects_notification_required"] is False
    assert u["next_due_at"] == AUTUMN_DUE
    assert u["explanation"] != b["explanation"]
    event = u["history"][-1]
    assert (event["kind"], event["version"], event["actor"]) == ("updated", 2, "tester")
    assert event["reason"] == "Passwords were not hashed"
    assert event["changes"]["risk"] == {"from": "unlikely", "to": "risk"}
    assert event["changes"]["authority_notification_required"] == {"from": False, "to": True}
    assert event["changes"]["authority_due_at"] == {"from": None, "to": "2026-10-27T20:30:00Z"}
    assert "subjects_notification_required" not in event["changes"]

    r = await _patch(client, auth, b["id"], risk="high_risk", subjects_affected=90000)
    u = r.json()
    assert u["subjects_notification_required"] is True
    assert u["subjects_affected"] == 90000
    assert u["history"][-1]["changes"]["subjects_affected"] == {"from": 1250, "to": 90000}
    assert u["history"][-1]["reason"] is None


async def test_patch_other_fields_and_a_no_op(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    b = await _create(client, spotrak)
    r = await _patch(
        client, spotrak, b["id"], data_categories=["email"], description=None, status="open"
    )
    assert r.status_code == 200, r.text
    u = r.json()
    assert (u["data_categories"], u["description"], u["version"]) == (["email"], None, 2)
    assert set(u["history"][-1]["changes"]) == {"data_categories", "description"}
    same = await _patch(client, spotrak, b["id"], data_categories=["email"], risk="high_risk")
    assert same.status_code == 200
    assert same.json()["version"] == 2  # nothing differed: nothing written
    assert len(same.json()["history"]) == 2


async def test_lifecycle_open_contained_closed_and_closed_is_final(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    b = await _create(client, spotrak, risk="unlikely")  # subjects only (Spotrak: always)
    r = await _patch(client, spotrak, b["id"], status="contained", reason="Bucket made private")
    assert (r.status_code, r.json()["status"]) == (200, "contained")
    back = await _patch(client, spotrak, b["id"], status="open")
    assert back.status_code == 409
    assert back.json()["code"] == "breach_transition_not_allowed"
    assert back.json()["allowed"] == ["closed"]

    r = await _patch(client, spotrak, b["id"], status="closed")
    assert r.status_code == 422
    assert r.json()["code"] == "breach_close_needs_reason"
    assert r.json()["missing"] == ["subjects"]
    assert r.json()["errors"][0]["loc"] == ["body", "reason"]

    await _notify(client, spotrak, b["id"], audience="subjects", sent_at="2026-10-25T10:00:00Z")
    r = await _patch(client, spotrak, b["id"], status="closed")
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["status"] == "closed"
    assert closed["closed_at"] == "2026-10-25T12:00:00Z"
    assert closed["closing_reason"] is None
    assert [h["kind"] for h in closed["history"]] == [
        "created",
        "updated",
        "notification_recorded",
        "updated",
    ]
    assert closed["history"][1]["changes"]["status"] == {"from": "open", "to": "contained"}
    assert closed["history"][1]["reason"] == "Bucket made private"

    again = await _patch(client, spotrak, b["id"], status="open")
    assert (again.status_code, again.json()["allowed"]) == (409, [])
    assert again.json()["code"] == "breach_transition_not_allowed"
    edit = await _patch(client, spotrak, b["id"], description="later")
    assert (edit.status_code, edit.json()["code"]) == (409, "breach_closed")
    note = await _notify(
        client, spotrak, b["id"], audience="subjects", sent_at="2026-10-25T11:00:00Z"
    )
    assert (note.status_code, note.json()["code"]) == (409, "breach_closed")
    assert await _ids(client, spotrak, "?status=closed") == [b["id"]]


async def test_closing_with_a_notice_missing_takes_a_reason_and_ends_overdue(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    b = await _create(client, spotrak)
    clock.pinned = datetime(2026, 11, 10, tzinfo=UTC)
    assert (await client.get(f"/v1/breaches/{b['id']}", headers=spotrak)).json()["overdue"]
    r = await _patch(
        client, spotrak, b["id"], status="closed", reason="Authority confirmed no action needed"
    )
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["status"], c["closing_reason"]) == ("closed", "Authority confirmed no action needed")
    assert c["overdue"] is False
    assert c["next_due_at"] is None
    assert c["history"][-1]["changes"]["status"] == {"from": "open", "to": "closed"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({"reason": "only a reason"}, id="reason-alone"),
        pytest.param({"risk": None}, id="null-risk"),
        pytest.param({"status": "archived"}, id="unknown-status"),
        pytest.param({"subjects_affected": -1}, id="negative"),
        pytest.param({"title": "renamed"}, id="not-patchable"),
        pytest.param({"data_categories": [""]}, id="empty-category"),
    ],
)
async def test_bad_patches_are_problems_and_write_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str], body: dict[str, Any]
) -> None:
    bid = (await _create(client, spotrak))["id"]
    r = await client.patch(f"/v1/breaches/{bid}", headers=spotrak, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).json()["version"] == 1


# ---- concurrency, tenancy, idempotency -----------------------------------------------------


async def test_stale_if_match_is_412_and_current_one_succeeds(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    bid = (await _create(client, spotrak))["id"]
    stale = {**spotrak, "If-Match": '"7"'}
    r = await client.patch(f"/v1/breaches/{bid}", headers=stale, json={"status": "contained"})
    assert (r.status_code, r.json()["code"]) == (412, "version_mismatch")
    r = await client.post(
        f"/v1/breaches/{bid}/notifications",
        headers=stale,
        json={"audience": "authority", "sent_at": "2026-10-25T10:00:00Z"},
    )
    assert r.status_code == 412
    current = {**spotrak, "If-Match": '"1"'}
    r = await client.patch(f"/v1/breaches/{bid}", headers=current, json={"status": "contained"})
    assert r.status_code == 200
    assert r.headers["etag"] == '"2"'


async def test_concurrent_updates_never_both_succeed(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    bid = (await _create(client, spotrak))["id"]
    results = await asyncio.gather(
        *[_patch(client, spotrak, bid, status="contained") for _ in range(10)],
        *[_patch(client, spotrak, bid, subjects_affected=n) for n in range(5)],
    )
    codes = [r.status_code for r in results]
    assert set(codes) <= {200, 409, 412}, codes
    b = (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).json()
    # Every successful write produced exactly one version and one history entry.
    assert b["version"] == len(b["history"])
    assert [h["version"] for h in b["history"]] == list(range(1, b["version"] + 1))
    status_changes = [
        h for h in b["history"] if h["kind"] == "updated" and "status" in h["changes"]
    ]
    assert len(status_changes) == 1


async def test_another_tenants_incident_is_404(
    client: httpx.AsyncClient, spotrak: dict[str, str], tenant: str
) -> None:
    bid = (await _create(client, spotrak))["id"]
    other = auth_headers(tenant + "-other")
    r = await client.get(f"/v1/breaches/{bid}", headers=other)
    assert (r.status_code, r.json()["code"]) == (404, "breach_not_found")
    assert (await _patch(client, other, bid, status="contained")).status_code == 404
    n = await _notify(client, other, bid, audience="authority", sent_at="2026-10-25T10:00:00Z")
    assert n.status_code == 404
    assert await _ids(client, other) == []
    mine = (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).json()
    assert (mine["version"], mine["status"]) == (1, "open")


async def test_scopes_and_no_delete_route(
    client: httpx.AsyncClient, spotrak: dict[str, str], tenant: str
) -> None:
    bid = (await _create(client, spotrak))["id"]
    reader = auth_headers(tenant, ["breach:read"])
    assert (await client.get(f"/v1/breaches/{bid}", headers=reader)).status_code == 200
    assert (await client.post("/v1/breaches", headers=reader, json=_breach())).status_code == 403
    assert (await _patch(client, reader, bid, status="contained")).status_code == 403
    nobody = auth_headers(tenant, ["dsar:read"])
    assert (await client.get("/v1/breaches", headers=nobody)).status_code == 403
    assert (await client.get("/v1/breaches")).status_code == 401
    gone = await client.delete(f"/v1/breaches/{bid}", headers=spotrak)
    assert gone.status_code == 405
    assert (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).status_code == 200


async def test_idempotent_create_and_notification_replay(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    headers = {**spotrak, "Idempotency-Key": "breach-1"}
    a = await client.post("/v1/breaches", headers=headers, json=_breach())
    b = await client.post("/v1/breaches", headers=headers, json=_breach())
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json() == b.json()
    assert b.headers["location"] == f"/v1/breaches/{a.json()['id']}"
    assert b.headers["idempotent-replayed"] == "true"
    other = await client.post("/v1/breaches", headers=headers, json=_breach(title="Another"))
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert await _ids(client, spotrak) == [a.json()["id"]]

    bid = a.json()["id"]
    note = {"audience": "authority", "sent_at": "2026-10-25T10:00:00Z"}
    nh = {**spotrak, "Idempotency-Key": "notice-1"}
    n1 = await client.post(f"/v1/breaches/{bid}/notifications", headers=nh, json=note)
    n2 = await client.post(f"/v1/breaches/{bid}/notifications", headers=nh, json=note)
    assert (n1.status_code, n2.status_code) == (201, 201)
    assert n1.json() == n2.json()
    stored = (await client.get(f"/v1/breaches/{bid}", headers=spotrak)).json()
    assert len(stored["notifications"]) == 1


# ---- garbage and the register --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({k: v for k, v in _breach().items() if k != "aware_at"}, id="no-aware_at"),
        pytest.param(_breach(aware_at="2026-10-24T22:30:00"), id="naive-aware_at"),
        pytest.param(_breach(aware_at="2026-10-26T00:00:00Z"), id="future-aware_at"),
        pytest.param(_breach(occurred_at="2026-10-25T00:00:00Z"), id="occurred-after-aware"),
        pytest.param(_breach(risk="catastrophic"), id="unknown-risk"),
        pytest.param(_breach(role="bystander"), id="unknown-role"),
        pytest.param(_breach(subjects_affected=-3), id="negative-subjects"),
        pytest.param(_breach(data_categories=["x" * 101]), id="category-too-long"),
        pytest.param(
            _breach(data_categories=[f"c{i}" for i in range(51)]), id="too-many-categories"
        ),
        pytest.param(_breach(title=""), id="empty-title"),
        pytest.param(_breach(description="d" * 4001), id="description-too-long"),
        pytest.param(_breach(policy_key="nope-policy"), id="unknown-policy"),
        pytest.param(_breach(extra=1), id="unknown-field"),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
async def test_garbage_bodies_are_problems_and_write_nothing(
    client: httpx.AsyncClient, spotrak: dict[str, str], body: Any
) -> None:
    r = await client.post("/v1/breaches", headers=spotrak, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] in ("validation_error", "policy_not_found")
    assert "catastrophic" not in r.text  # submitted values are never echoed
    assert "bystander" not in r.text
    assert await _ids(client, spotrak) == []


async def test_future_aware_at_names_the_field(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/breaches", headers=spotrak, json=_breach(aware_at="2027-01-01T00:00:00Z")
    )
    assert r.json()["errors"][0]["loc"] == ["body", "aware_at"]
    r = await client.post(
        "/v1/breaches", headers=spotrak, json=_breach(occurred_at="2026-10-25T00:00:00Z")
    )
    assert r.json()["errors"][0]["loc"] == ["body", "occurred_at"]


async def test_register_filters_and_pages_newest_awareness_first(
    client: httpx.AsyncClient, spotrak: dict[str, str], auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    await _policy(client, auth, gdpr_default_body())
    clock.pinned = NOW
    spring = await _create(client, spotrak, aware_at=SPRING, occurred_at=None, risk="unlikely")
    autumn = await _create(client, spotrak)
    summer = await _create(
        client,
        spotrak,
        policy_key="gdpr-default",
        aware_at="2026-07-01T12:00:00Z",
        occurred_at=None,
    )
    await _patch(client, spotrak, summer["id"], status="contained")
    order = [autumn["id"], summer["id"], spring["id"]]
    assert await _ids(client, spotrak) == order

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/v1/breaches{query}", headers=spotrak)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == order

    assert await _ids(client, spotrak, "?status=contained") == [summer["id"]]
    assert await _ids(client, spotrak, "?status=open") == [autumn["id"], spring["id"]]
    assert await _ids(client, spotrak, "?policy_key=gdpr-default") == [summer["id"]]
    assert await _ids(client, spotrak, "?risk=unlikely") == [spring["id"]]
    after = "?aware_after=2026-06-30T00:00:00%2B02:00"
    assert await _ids(client, spotrak, after) == [autumn["id"], summer["id"]]
    assert await _ids(client, spotrak, after + "&status=open") == [autumn["id"]]
    # Before the autumn incident's due instant: the summer and spring ones are overdue.
    assert await _ids(client, spotrak, "?overdue=true") == [summer["id"], spring["id"]]
    assert await _ids(client, spotrak, "?overdue=false") == [autumn["id"]]

    for bad in ("?limit=0", "?limit=501", "?cursor=not-a-cursor", "?overdue=maybe",
                "?aware_after=2026-06-30T00:00:00", "?status=lost"):  # fmt: skip
        r = await client.get(f"/v1/breaches{bad}", headers=spotrak)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("application/problem+json")
