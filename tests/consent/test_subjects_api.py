"""A subject's consents (now and as of a past moment), export and erasure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, auth_headers
from tests.consent.helpers import NOW, POLICY_AT, PURPOSES, consent_policy, post_event, states


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = POLICY_AT
    r = await client.post("/v1/policies", headers=auth, json=consent_policy())
    assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


async def test_a_subject_never_seen_reads_as_not_set_with_the_defaults(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    r = await client.get("/v1/subjects/nobody/consents", headers=spotrak)
    assert r.status_code == 200
    body = r.json()
    assert body["subject_id"] == "nobody"
    assert body["as_of"] is None
    assert [(c["purpose"], c["state"], c["default"]) for c in body["consents"]] == [
        ("audience_cookies", "not_set", "denied"),
        ("ad_personalisation", "not_set", "denied"),
        ("sale_of_data", "not_set", "granted"),
    ]
    assert all(
        (c["since"], c["expires_at"], c["event_id"]) == (None, None, None) for c in body["consents"]
    )


async def test_policy_key_narrows_and_an_unknown_one_is_422(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    other = consent_policy("other-policy")
    other["consent_purposes"] = [{"key": "newsletter", "default": "denied"}]
    assert (await client.post("/v1/policies", headers=spotrak, json=other)).status_code == 201
    await post_event(client, spotrak, policy_key="other-policy", purpose="newsletter")
    everything = (await client.get("/v1/subjects/user-42/consents", headers=spotrak)).json()
    assert [(c["policy_key"], c["purpose"]) for c in everything["consents"]] == [
        ("other-policy", "newsletter"),
        *[("spotrak", p) for p in PURPOSES],
    ]
    narrowed = await states(client, spotrak, policy_key="other-policy")
    assert list(narrowed) == ["newsletter"]
    assert narrowed["newsletter"]["state"] == "granted"
    r = await client.get(
        "/v1/subjects/user-42/consents", headers=spotrak, params={"policy_key": "nope-policy"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "policy_not_found"


async def test_as_of_answers_from_the_ledger_with_the_justifying_events(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    granted = await post_event(client, spotrak, occurred_at="2027-03-01T10:00:00Z")
    withdrawn = await post_event(
        client, spotrak, action="withdrawn", occurred_at="2027-03-05T10:00:00Z"
    )
    ads = await post_event(
        client, spotrak, purpose="ad_personalisation", occurred_at="2027-03-02T10:00:00Z"
    )

    async def at(instant: str) -> dict[str, Any]:
        r = await client.get(
            "/v1/subjects/user-42/consents", headers=spotrak, params={"as_of": instant}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    before = await at("2027-02-01T00:00:00Z")
    assert {c["state"] for c in before["consents"]} == {"not_set"}
    assert before["events"] == []
    mid = await at("2027-03-03T00:00:00Z")
    by = {c["purpose"]: c for c in mid["consents"]}
    assert (by["audience_cookies"]["state"], by["audience_cookies"]["event_id"]) == (
        "granted",
        granted["id"],
    )
    assert by["ad_personalisation"]["event_id"] == ads["id"]
    assert by["sale_of_data"]["state"] == "not_set"
    assert [e["id"] for e in mid["events"]] == [granted["id"], ads["id"]]
    assert mid["as_of"] == "2027-03-03T00:00:00Z"
    late = await at("2027-03-06T00:00:00Z")
    assert {c["purpose"]: c["state"] for c in late["consents"]}["audience_cookies"] == "withdrawn"
    assert withdrawn["id"] in [e["id"] for e in late["events"]]
    expired = await at("2028-06-01T00:00:00Z")
    assert {c["purpose"]: c["state"] for c in expired["consents"]}[
        "audience_cookies"
    ] == "withdrawn"
    naive = await client.get(
        "/v1/subjects/user-42/consents", headers=spotrak, params={"as_of": "2027-03-03T00:00:00"}
    )
    assert naive.status_code == 422


async def test_as_of_sees_a_grant_lapse(client: httpx.AsyncClient, spotrak: dict[str, str]) -> None:
    ev = await post_event(client, spotrak, occurred_at="2027-03-01T10:00:00Z")
    r = await client.get(
        "/v1/subjects/user-42/consents", headers=spotrak, params={"as_of": "2028-06-01T00:00:00Z"}
    )
    entry = {c["purpose"]: c for c in r.json()["consents"]}["audience_cookies"]
    assert (entry["state"], entry["event_id"]) == ("expired", ev["id"])


async def _dsar(client: httpx.AsyncClient, auth: dict[str, str], subject: str) -> dict[str, Any]:
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "type": "erasure",
            "subject": {"id": subject, "email": "jane@example.com", "name": "Jane Doe"},
            "received_at": "2027-03-01T10:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_export_holds_events_states_and_dsar_tickets(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    ev = await post_event(client, spotrak)
    await post_event(client, spotrak, subject_id="someone-else")
    ticket = await _dsar(client, spotrak, "user-42")
    r = await client.get("/v1/subjects/user-42/export", headers=spotrak)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subject_id"] == "user-42"
    assert [e["id"] for e in body["consent_events"]] == [ev["id"]]
    assert body["consent_states"] == [
        {
            "policy_key": "spotrak",
            "purpose": "audience_cookies",
            "state": "granted",
            "since": ev["occurred_at"],
            "expires_at": ev["expires_at"],
            "event_id": ev["id"],
        }
    ]
    assert [t["id"] for t in body["dsar_tickets"]] == [ticket["id"]]
    assert body["dsar_tickets"][0]["subject"]["email"] == "jane@example.com"
    only_dsar = await _dsar(client, spotrak, "dsar-only")
    r = await client.get("/v1/subjects/dsar-only/export", headers=spotrak)
    assert [t["id"] for t in r.json()["dsar_tickets"]] == [only_dsar["id"]]


async def test_export_and_erase_of_an_unknown_subject_are_404(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    for r in (
        await client.get("/v1/subjects/nobody/export", headers=spotrak),
        await client.delete("/v1/subjects/nobody", headers=spotrak),
    ):
        assert r.status_code == 404
        assert r.json()["code"] == "subject_not_found"


async def test_export_and_erase_need_both_scopes(
    client: httpx.AsyncClient, spotrak: dict[str, str], tenant: str
) -> None:
    await post_event(client, spotrak)
    consent_only = auth_headers(tenant, ["consent:read", "consent:write"])
    assert (
        await client.get("/v1/subjects/user-42/export", headers=consent_only)
    ).status_code == 403
    assert (await client.delete("/v1/subjects/user-42", headers=consent_only)).status_code == 403
    reader = auth_headers(tenant, ["consent:read", "dsar:read"])
    assert (await client.get("/v1/subjects/user-42/export", headers=reader)).status_code == 200
    assert (await client.delete("/v1/subjects/user-42", headers=reader)).status_code == 403


async def test_erasure_pseudonymises_the_ledger_and_keeps_the_proof(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    headers = {**spotrak, "Idempotency-Key": "erase-me-1"}
    r = await client.post(
        "/v1/consent-events", headers=headers, json={**_event_body(), "subject_id": "user-42"}
    )
    granted = r.json()
    await post_event(client, spotrak, purpose="ad_personalisation", action="denied")
    await post_event(client, spotrak, subject_id="someone-else")
    ticket = await _dsar(client, spotrak, "user-42")
    r = await client.delete("/v1/subjects/user-42", headers=spotrak)
    assert r.status_code == 204, r.text
    assert r.content == b""
    # the person is no longer identifiable...
    assert {c["state"] for c in (await states(client, spotrak)).values()} == {"not_set"}
    assert (await client.get("/v1/subjects/user-42/export", headers=spotrak)).status_code == 404
    assert (await client.delete("/v1/subjects/user-42", headers=spotrak)).status_code == 404
    by_subject = await client.get(
        "/v1/consent-events", headers=spotrak, params={"subject_id": "user-42"}
    )
    assert by_subject.json()["items"] == []
    # ...but the proof that consent was given survives, under one pseudonym
    items = (await client.get("/v1/consent-events", headers=spotrak)).json()["items"]
    erased = [e for e in items if e["erased"]]
    assert len(erased) == 2
    pseudonyms = {e["subject_id"] for e in erased}
    assert len(pseudonyms) == 1
    pseudonym = pseudonyms.pop()
    assert pseudonym.startswith("erased:")
    assert "user-42" not in pseudonym
    receipt = (
        await client.get(f"/v1/consent-events/{granted['id']}/receipt", headers=spotrak)
    ).json()
    assert (receipt["subject_id"], receipt["action"], receipt["current_state"]) == (
        pseudonym,
        "granted",
        "granted",
    )
    assert {c["state"] for c in (await states(client, spotrak, pseudonym)).values()} >= {
        "granted",
        "denied",
    }
    assert (await states(client, spotrak, "someone-else"))["audience_cookies"]["state"] == "granted"
    # DSAR tickets: the identifier pseudonymised, e-mail and name gone
    t = (await client.get(f"/v1/dsars/{ticket['id']}", headers=spotrak)).json()
    assert t["subject"] == {"id": pseudonym, "email": None, "name": None}
    # a stored idempotent answer no longer hands the identifier back
    replay = await client.post(
        "/v1/consent-events", headers=headers, json={**_event_body(), "subject_id": "user-42"}
    )
    assert replay.headers.get("idempotent-replayed") is None


def _event_body() -> dict[str, Any]:
    from tests.consent.helpers import event

    return event()


async def test_new_policies_and_versions_show_in_the_next_read(
    client: httpx.AsyncClient, spotrak: dict[str, str], clock: MutableClock
) -> None:
    """The tenant's purposes are cached for the read (policies.cache.PURPOSES): creating or
    publishing a policy in this process drops the entry at once."""

    async def purposes() -> list[tuple[str, str]]:
        r = await client.get("/v1/subjects/user-42/consents", headers=spotrak)
        assert r.status_code == 200, r.text
        return [(c["policy_key"], c["purpose"]) for c in r.json()["consents"]]

    spotrak_purposes = [("spotrak", p) for p in PURPOSES]
    assert await purposes() == spotrak_purposes  # now cached
    other = consent_policy("zeta")
    other["consent_purposes"] = [other["consent_purposes"][0]]
    r = await client.post("/v1/policies", headers=spotrak, json=other)
    assert r.status_code == 201, r.text
    zeta = [("zeta", "audience_cookies")]
    assert await purposes() == spotrak_purposes + zeta
    v2 = consent_policy("zeta")  # zeta v2: three purposes, in force after the change notice
    r = await client.put("/v1/policies/zeta", headers=spotrak, json=v2)
    assert r.status_code == 201, r.text
    effective_at = r.json()["effective_at"]
    assert await purposes() == spotrak_purposes + zeta  # v1 still governs
    clock.pinned = datetime.fromisoformat(effective_at)
    assert await purposes() == spotrak_purposes + [("zeta", p) for p in PURPOSES]
