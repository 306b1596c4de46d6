"""Every instant the API gives out has one form: RFC 3339 in UTC with `Z` — response bodies,
problem members, webhook bodies, outbox payloads, timeline and audit data — whatever offset
the caller sent. And `consent.changed` says whose consent to what is now in which state."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.instants import utc_text
from app.dsar.models import DsarEvent
from app.events.models import OutboxEvent
from tests.conftest import spotrak_body
from tests.events.helpers import Receiver, subscribe, worker_for

ONE_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")
# An instant anywhere in a string (also inside a sentence), with whatever ends it.
ANY_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
PLUS_2 = timezone(timedelta(hours=2))
MINUS_5 = timezone(timedelta(hours=-5, minutes=-30))


def instants_in(value: Any, where: str = "$") -> list[tuple[str, str]]:
    """(path, text) of every instant found in a JSON value."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += instants_in(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += instants_in(v, f"{where}[{i}]")
    elif isinstance(value, str):
        if ONE_FORM.match(value):
            found.append((where, value))
        else:
            found += [(where, m.group(0)) for m in ANY_INSTANT.finditer(value)]
    return found


def assert_one_form(value: Any, what: str) -> int:
    found = instants_in(value)
    wrong = [(p, t) for p, t in found if not ONE_FORM.match(t) and not t.endswith("Z")]
    assert not wrong, f"{what}: {wrong}"
    fields = [(p, t) for p, t in found if t == _whole(value, p)]
    bad_fields = [(p, t) for p, t in fields if not ONE_FORM.match(t)]
    assert not bad_fields, f"{what}: {bad_fields}"
    return len(found)


def _whole(value: Any, path: str) -> Any:
    """The value at `path` (as built by instants_in), to tell a field from a sentence."""
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = part
        value = value[int(index)] if index else value[key]
    return value


def test_the_walker_tells_the_forms_apart() -> None:
    assert ONE_FORM.match(utc_text(datetime(2027, 1, 31, 10, tzinfo=PLUS_2)))
    assert utc_text(datetime(2027, 1, 31, 10, tzinfo=PLUS_2)) == "2027-01-31T08:00:00Z"
    assert utc_text(datetime(2027, 1, 31, 0, 0, 0, 5, tzinfo=UTC)) == "2027-01-31T00:00:00.000005Z"
    assert instants_in({"a": ["due 2027-01-31T10:00:00+02:00."]}) == [
        ("$.a[0]", "2027-01-31T10:00:00+02:00")
    ]
    try:
        assert_one_form({"a": "2027-01-31T10:00:00+00:00"}, "probe")
    except AssertionError:
        pass
    else:
        raise AssertionError("an offset form went unnoticed")


async def test_every_instant_in_responses_and_payloads_is_utc_with_z(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    seen: list[Any] = []

    async def call(method: str, url: str, expect: int, **kw: Any) -> Any:
        r = await client.request(method, url, headers={**auth, **kw.pop("headers", {})}, **kw)
        assert r.status_code == expect, (method, url, r.status_code, r.text)
        if r.content:
            seen.append((f"{method} {url}", r.json()))
            return r.json()
        return None

    now = datetime.now(UTC)
    policy = spotrak_body()
    policy["consent_purposes"] = [
        *policy.get("consent_purposes", []),
        {"key": "ad_sale", "lawful_basis": "consent", "default": "granted", "honors_gpc": True},
    ]
    policy["change_notice"] = {"value": 0, "unit": "days"}
    async with Receiver() as rx:
        hook = await subscribe(
            client,
            auth,
            rx.url,
            ["dsar.created", "dsar.status_changed", "consent.changed", "breach.created"],
        )
        await call("POST", "/v1/policies", 201, json=policy)
        await call("PUT", "/v1/policies/spotrak", 201, json=policy)
        await call("GET", "/v1/policies/spotrak", 200)
        await call("GET", "/v1/policies", 200)
        await call("GET", "/v1/policies/spotrak/versions", 200)
        await call("GET", "/v1/policies/spotrak/versions/1", 200)
        received = (now - timedelta(days=3)).astimezone(MINUS_5)
        await call(
            "POST",
            "/v1/policies/spotrak/deadlines",
            200,
            json={"kind": "dsar", "type": "access", "received_at": received.isoformat()},
        )
        await call(
            "POST",
            "/v1/policies/spotrak/deadlines",
            200,
            json={"kind": "breach", "aware_at": received.isoformat(), "risk": "high_risk"},
        )
        await call(
            "POST",
            "/v1/policies/spotrak/retention",
            200,
            json={
                "records": [
                    {"category": "technical_logs", "collected_at": received.isoformat()},
                    {
                        "category": "business_data",
                        "collected_at": received.isoformat(),
                        "events": {"contract_ended": received.isoformat()},
                    },
                ]
            },
        )

        # A DSAR through verification (its echo of verified_at), extension and completion.
        ticket = await call(
            "POST",
            "/v1/dsars",
            201,
            json={
                "policy_key": "spotrak",
                "type": "access",
                "subject": {"id": "walker-1"},
                "received_at": received.isoformat(),
            },
        )
        url = f"/v1/dsars/{ticket['id']}"
        await call("POST", f"{url}/transitions", 200, json={"to": "awaiting_verification"})
        verified = (now - timedelta(days=1)).astimezone(PLUS_2)
        moved = await call(
            "POST",
            f"{url}/transitions",
            200,
            json={"to": "in_progress", "verified_at": verified.isoformat()},
        )
        assert moved["verified_at"] == utc_text(verified)
        await call("POST", f"{url}/extension", 200, json={"reason": "many systems to search"})
        await call("POST", f"{url}/transitions", 200, json={"to": "completed"})
        events = await call("GET", f"{url}/events", 200)
        verified_entries = [e for e in events["items"] if "verified_at" in (e.get("data") or {})]
        assert verified_entries, events
        assert verified_entries[0]["data"]["verified_at"] == utc_text(verified)
        await call("GET", url, 200)
        await call("GET", "/v1/dsars", 200)

        # Consent, with an offset, with GPC, in a batch; reads at a past instant.
        occurred = (now - timedelta(hours=5)).astimezone(MINUS_5)
        event = await call(
            "POST",
            "/v1/consent-events",
            201,
            headers={"Sec-GPC": "1"},
            json={
                "policy_key": "spotrak",
                "subject_id": "walker-1",
                "purpose": "audience_cookies",
                "action": "granted",
                "occurred_at": occurred.isoformat(),
            },
        )
        assert event["occurred_at"] == utc_text(occurred)
        await call(
            "POST",
            "/v1/consent-events/batch",
            200,
            json={
                "events": [
                    {
                        "policy_key": "spotrak",
                        "subject_id": "walker-2",
                        "purpose": "audience_cookies",
                        "action": "denied",
                        "occurred_at": occurred.isoformat(),
                    }
                ]
            },
        )
        await call("GET", "/v1/consent-events", 200, params={"subject_id": "walker-1"})
        await call("GET", f"/v1/consent-events/{event['id']}/receipt", 200)
        await call("GET", "/v1/subjects/walker-1/consents", 200)
        as_of = await call(
            "GET",
            "/v1/subjects/walker-1/consents",
            200,
            params={"as_of": (now - timedelta(hours=1)).astimezone(PLUS_2).isoformat()},
        )
        assert as_of["as_of"].endswith("Z")
        await call("GET", "/v1/subjects/walker-1/export", 200)

        # A breach with its late notice refused (a problem member carries the due instant),
        # then recorded with the reason.
        aware = (now - timedelta(days=5)).astimezone(PLUS_2)
        breach = await call(
            "POST",
            "/v1/breaches",
            201,
            json={
                "policy_key": "spotrak",
                "title": "Lost laptop",
                "aware_at": aware.isoformat(),
                "data_categories": ["identity_contact_data"],
                "risk": "high_risk",
            },
        )
        burl = f"/v1/breaches/{breach['id']}"
        sent = (now - timedelta(hours=1)).astimezone(MINUS_5).isoformat()
        late = await call(
            "POST", f"{burl}/notifications", 422, json={"audience": "authority", "sent_at": sent}
        )
        assert late["code"] == "breach_notification_late_reason_required"
        assert late["due_at"].endswith("Z")
        await call(
            "POST",
            f"{burl}/notifications",
            201,
            json={"audience": "authority", "sent_at": sent, "late_reason": "found late"},
        )
        await call("PATCH", burl, 200, json={"status": "contained"})
        await call("GET", burl, 200)
        await call("GET", "/v1/breaches", 200)

        async with worker_for(app) as worker:
            await worker.run_once()
        await call("POST", f"/v1/webhooks/{hook['id']}/ping", 200)
        await call("GET", "/v1/webhooks", 200)
        await call("GET", f"/v1/webhooks/{hook['id']}/deliveries", 200)
        await call("GET", "/v1/audit-events", 200)
        await call("GET", "/v1/audit-events/verify", 200)
        span = {
            "from": (now - timedelta(days=10)).astimezone(PLUS_2).isoformat(),
            "to": (now + timedelta(days=1)).astimezone(MINUS_5).isoformat(),
        }
        await call("GET", "/v1/reports/dsar", 200, params=span)
        await call("GET", "/v1/reports/consent", 200, params={**span, "interval": "day"})
        await call("GET", "/v1/reports/breaches", 200, params=span)
        await call("GET", "/v1/reports/ccpa-metrics", 200, params={"year": now.year})

        bodies = [g.json() for g in rx.requests]
        changed = [b["data"] for b in bodies if b["type"] == "consent.changed"]
        assert {(c["subject_id"], c["purpose"], c["state"]) for c in changed} >= {
            ("walker-1", "audience_cookies", "granted"),
            ("walker-1", "ad_sale", "denied"),  # GPC
            ("walker-2", "audience_cookies", "denied"),
        }
        assert all(c["policy_key"] == "spotrak" for c in changed)
        assert {b["type"] for b in bodies} == {
            "dsar.created",
            "dsar.status_changed",
            "consent.changed",
            "breach.created",
        }
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)

    counted = 0
    for what, body in seen:
        counted += assert_one_form(body, what)
    for got in bodies:
        counted += assert_one_form(got, f"webhook {got['type']}")
    async with app.state.sessionmaker() as session:
        stored = [
            *(
                e.data
                for e in await session.scalars(
                    select(OutboxEvent).where(OutboxEvent.tenant == tenant)
                )
            ),
            *(
                a.data
                for a in await session.scalars(
                    select(AuditEntry).where(AuditEntry.tenant == tenant)
                )
            ),
            *(
                e.data
                for e in await session.scalars(
                    select(DsarEvent).where(DsarEvent.ticket_id == uuid.UUID(ticket["id"]))
                )
            ),
        ]
    for data in stored:
        counted += assert_one_form(data, "stored payload")
    assert counted > 100  # the walk saw the instants it claims to check


async def test_erasure_rewrites_the_subject_id_in_consent_changed_payloads(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, app: FastAPI
) -> None:
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    r = await client.post(
        "/v1/consent-events",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "subject_id": "erase-me-1",
            "purpose": "audience_cookies",
            "action": "granted",
        },
    )
    assert r.status_code == 201, r.text

    async def payloads() -> list[dict[str, Any]]:
        async with app.state.sessionmaker() as session:
            rows = await session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.tenant == tenant, OutboxEvent.type == "consent.changed"
                )
            )
            return [dict(e.data) for e in rows]

    before = await payloads()
    assert [p["subject_id"] for p in before] == ["erase-me-1"]
    r = await client.delete("/v1/subjects/erase-me-1", headers=auth)
    assert r.status_code == 204, r.text
    after = await payloads()
    assert len(after) == 1
    assert after[0]["subject_id"] != "erase-me-1"
    assert {k: v for k, v in after[0].items() if k != "subject_id"} == {
        k: v for k, v in before[0].items() if k != "subject_id"
    }
