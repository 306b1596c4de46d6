"""Issue 13 through the API: real tickets agree with the preview endpoint.

Dates by hand (Paris CET +1; Toronto EST -5):
- Spotrak (GDPR, FR): received Sunday 2027-01-31 → one month → 2027-02-28, a Sunday →
  Monday 2027-03-01. Identity information asked for, received 2027-02-08 09:00Z (10:00
  Paris): one month → Monday 2027-03-08 (EDPB 01/2022; UK GDPR Art. 12A reading).
- Officetrax (PIPEDA, ON): a client's erasure instruction received Monday 2025-11-24, 30
  business days skipping Christmas, Boxing Day (Legislation Act s.88) and New Year's Day →
  Thursday 2026-01-08.
- Caltryx (Morocco 09-08): access "sans délais" → no due date.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, spotrak_body

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)


def _seed(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "examples" / "policies" / f"{name}.json").read_text()))


@pytest.fixture
async def policies(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = datetime(2025, 1, 1, tzinfo=UTC)
    for body in (spotrak_body(), _seed("officetrax"), _seed("caltryx")):
        r = await client.post("/v1/policies", headers=auth, json=body)
        assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


async def _create(client: httpx.AsyncClient, auth: dict[str, str], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_key": "spotrak",
        "type": "access",
        "subject": {"id": "user-13"},
        "received_at": "2027-01-31T10:00:00+01:00",
    }
    body.update(over)
    r = await client.post("/v1/dsars", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _move(
    client: httpx.AsyncClient, auth: dict[str, str], tid: str, to: str, **extra: Any
) -> httpx.Response:
    return await client.post(f"/v1/dsars/{tid}/transitions", headers=auth, json={"to": to, **extra})


def _dates(explanation: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ticket's date steps: without the fulfilment note that entering in_progress adds
    (which systems got a task, or that none handles the type; DESIGN §13)."""
    return [s for s in explanation if s["rule"] != "fulfilment"]


async def _preview(
    client: httpx.AsyncClient, auth: dict[str, str], key: str, **body: Any
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/policies/{key}/deadlines", headers=auth, json={"kind": "dsar", **body}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_gdpr_clock_starts_at_receipt_of_the_identity_information_asked_for(
    client: httpx.AsyncClient, policies: dict[str, str]
) -> None:
    t = await _create(client, policies)
    assert t["due_date"] == "2027-03-01"
    assert t["identity_requested_at"] is None
    waiting = await _move(client, policies, t["id"], "awaiting_verification")
    assert waiting.status_code == 200, waiting.text
    w = waiting.json()
    assert w["identity_requested_at"] == "2027-02-10T12:00:00Z"
    assert w["provisional"] is True
    assert any("provisional" in s["detail"].lower() for s in w["explanation"])
    verified = await _move(
        client, policies, t["id"], "in_progress", verified_at="2027-02-08T09:00:00Z"
    )
    assert verified.status_code == 200, verified.text
    v = verified.json()
    assert (v["provisional"], v["due_date"]) == (False, "2027-03-08")
    assert v["clock_started_at"] == "2027-02-08T09:00:00Z"
    # the preview with the same facts gives the same date and the same explanation
    p = await _preview(
        client,
        policies,
        "spotrak",
        type="access",
        received_at="2027-01-31T10:00:00+01:00",
        verified_at="2027-02-08T09:00:00Z",
    )
    assert p["due_date"] == v["due_date"]
    assert p["due_at"] == v["due_at"]
    assert p["explanation"] == _dates(v["explanation"])
    rules = [s["rule"] for s in v["explanation"]]
    assert any(r.startswith("EDPB Guidelines 01/2022") for r in rules)
    # the extension counts three months from the new start: 8 May 2027 is a Saturday →
    # Monday 10 May 2027
    ext = await client.post(
        f"/v1/dsars/{t['id']}/extension", headers=policies, json={"reason": "complex"}
    )
    assert ext.status_code == 200, ext.text
    assert ext.json()["due_date"] == "2027-05-10"
    assert _dates(ext.json()["explanation"])[-1]["detail"].endswith("2027-05-10 in Europe/Paris")


async def test_a_ticket_verified_at_intake_keeps_its_receipt_date(
    client: httpx.AsyncClient, policies: dict[str, str]
) -> None:
    t = await _create(client, policies)
    r = await _move(client, policies, t["id"], "in_progress", verified_at="2027-02-08T09:00:00Z")
    assert r.status_code == 200, r.text
    assert r.json()["due_date"] == "2027-03-01"
    assert r.json()["clock_started_at"] == "2027-01-31T09:00:00Z"
    p = await _preview(
        client,
        policies,
        "spotrak",
        type="access",
        received_at="2027-01-31T10:00:00+01:00",
        verified_at="2027-02-08T09:00:00Z",
        identity_requested=False,
    )
    assert p["due_date"] == "2027-03-01"
    assert p["explanation"] == _dates(r.json()["explanation"])


async def test_extension_allowed_turns_false_when_the_window_closes_and_extending_is_409(
    client: httpx.AsyncClient, policies: dict[str, str], clock: MutableClock
) -> None:
    t = await _create(client, policies)
    assert t["extension_allowed"] is True
    clock.pinned = datetime(2027, 3, 2, 12, tzinfo=UTC)  # the first period ended 1 March
    late = (await client.get(f"/v1/dsars/{t['id']}", headers=policies)).json()
    assert late["sla"] == "overdue"
    assert late["extension_allowed"] is False
    r = await client.post(
        f"/v1/dsars/{t['id']}/extension", headers=policies, json={"reason": "late"}
    )
    assert r.status_code == 409
    assert r.json()["code"] == "dsar_extension_window_closed"
    # taken once: no longer allowed either
    clock.pinned = NOW
    fresh = await _create(client, policies)
    r = await client.post(
        f"/v1/dsars/{fresh['id']}/extension", headers=policies, json={"reason": "complex"}
    )
    assert r.status_code == 200
    assert r.json()["extension_allowed"] is False
    again = await client.post(
        f"/v1/dsars/{fresh['id']}/extension", headers=policies, json={"reason": "again"}
    )
    assert again.status_code == 409


async def test_morocco_access_has_no_fixed_deadline_instead_of_on_track(
    client: httpx.AsyncClient, policies: dict[str, str]
) -> None:
    t = await _create(
        client, policies, policy_key="caltryx", received_at="2027-02-01T10:00:00+01:00"
    )
    assert t["due_date"] is None
    assert t["sla"] == "no_fixed_deadline"
    assert t["extension_allowed"] is False
    listed = await client.get("/v1/dsars?sla=no_fixed_deadline", headers=policies)
    assert [i["id"] for i in listed.json()["items"]] == [t["id"]]
    on_track = await client.get("/v1/dsars?sla=on_track", headers=policies)
    assert t["id"] not in [i["id"] for i in on_track.json()["items"]]
    # rectification has the ten days of art. 8: a dated ticket, on track
    r = await _create(
        client,
        policies,
        policy_key="caltryx",
        type="rectification",
        received_at="2027-02-08T10:00:00+01:00",
    )
    assert r["due_date"] == "2027-02-18"
    assert r["sla"] == "on_track"


@pytest.mark.parametrize(
    ("key", "cited", "absent"),
    [
        pytest.param("spotrak", "GDPR Art. 12(4)", "PIPEDA", id="GDPR-art12(4)"),
        pytest.param("officetrax", "PIPEDA s.8(7)", "GDPR", id="PIPEDA-s8(7)"),
        pytest.param("caltryx", "the service's own rule", "GDPR", id="Morocco-no-provision"),
    ],
)
async def test_rejecting_without_a_reason_cites_the_policys_regime(
    client: httpx.AsyncClient, policies: dict[str, str], key: str, cited: str, absent: str
) -> None:
    t = await _create(client, policies, policy_key=key, received_at="2027-02-01T10:00:00+01:00")
    r = await _move(client, policies, t["id"], "rejected")
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "dsar_reason_required"
    assert cited in problem["detail"]
    assert absent not in problem["detail"]
    assert problem["rule"].startswith(cited)


async def test_officetrax_client_instruction_across_boxing_day_without_extension(
    client: httpx.AsyncClient, policies: dict[str, str]
) -> None:
    t = await _create(
        client,
        policies,
        policy_key="officetrax",
        type="erasure",
        requester="controller",
        received_at="2025-11-24T09:00:00-05:00",
    )
    assert t["due_date"] == "2026-01-08"
    assert t["extension_allowed"] is False
    assert t["extension_notice_by"] is None
    assert not [s for s in t["explanation"] if "subject must be told" in s["detail"]]
    r = await client.post(f"/v1/dsars/{t['id']}/extension", headers=policies, json={"reason": "x"})
    assert r.status_code == 409
    assert r.json()["code"] == "dsar_extension_not_allowed"
    p = await _preview(
        client,
        policies,
        "officetrax",
        type="erasure",
        requester="controller",
        received_at="2025-11-24T09:00:00-05:00",
    )
    assert (p["due_date"], p["extension_allowed"]) == ("2026-01-08", False)
    assert p["explanation"] == _dates(t["explanation"])


@pytest.mark.parametrize(
    ("regime", "cited", "absent"),
    [
        pytest.param("uk_gdpr", "UK GDPR Art. 33(1)", "EDPB", id="UK-GDPR-art33(1)"),
        # ANPD Res. 15/2024 sets 3 business days but no rule on a late notice's reasons
        pytest.param("lgpd", "the service's own rule", "GDPR", id="LGPD-no-late-reason-rule"),
    ],
)
async def test_a_late_breach_notice_cites_the_policys_regime(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    clock: MutableClock,
    regime: str,
    cited: str,
    absent: str,
) -> None:
    from tests.rules.helpers import body as policy_body

    clock.pinned = datetime(2025, 1, 1, tzinfo=UTC)
    r = await client.post("/v1/policies", headers=auth, json=policy_body(regime))
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    clock.pinned = NOW
    r = await client.post(
        "/v1/breaches",
        headers=auth,
        json={
            "policy_key": key,
            "title": "Exposed export",
            "aware_at": "2027-02-01T09:00:00Z",
            "data_categories": ["email"],
            "subjects_affected": 40,
            "risk": "high_risk",
        },
    )
    assert r.status_code == 201, r.text
    breach = r.json()
    assert breach["authority_due_at"] is not None
    late = await client.post(
        f"/v1/breaches/{breach['id']}/notifications",
        headers=auth,
        json={"audience": "authority", "sent_at": "2027-02-09T09:00:00Z"},
    )
    assert late.status_code == 422, late.text
    problem = late.json()
    assert problem["code"] == "breach_notification_late_reason_required"
    assert cited in problem["detail"]
    assert absent not in problem["detail"]
