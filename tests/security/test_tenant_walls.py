"""Tenants are walls (issue 8, item 2), tested from the route table itself.

Tenant A creates one of everything; tenant B, holding every scope, then calls every
operation in the OpenAPI document with A's identifiers. A new route is covered without editing
this file — and a route whose path parameter this file cannot fill fails the test, so nobody
forgets to give it an object.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from app.__main__ import openapi_document
from tests.conftest import MutableClock, auth_headers, spotrak_body
from tests.fulfilment.helpers import system_auth

SUBJECT = "wall-subject-7731"
SYSTEM_OPERATIONS = frozenset({"reportTaskResult", "claimTasks"})
EMAIL = "wall.subject@example.org"


def _example_body(doc: dict[str, Any], op: dict[str, Any]) -> Any:
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    examples = content.get("examples")
    if examples:
        return next(iter(examples.values()))["value"]
    schema = content["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema["examples"][0]


async def _create_everything(client: httpx.AsyncClient, a: dict[str, str]) -> dict[str, str]:
    assert (await client.post("/v1/policies", headers=a, json=spotrak_body())).status_code == 201
    dsar = await client.post(
        "/v1/dsars",
        headers=a,
        json={
            "policy_key": "spotrak",
            "type": "access",
            "subject": {"id": SUBJECT, "email": EMAIL},
        },
    )
    assert dsar.status_code == 201, dsar.text
    event = await client.post(
        "/v1/consent-events",
        headers=a,
        json={
            "policy_key": "spotrak",
            "subject_id": SUBJECT,
            "purpose": "audience_cookies",
            "action": "granted",
        },
    )
    assert event.status_code == 201, event.text
    breach = await client.post(
        "/v1/breaches",
        headers=a,
        json={
            "policy_key": "spotrak",
            "title": "Lost laptop",
            "aware_at": "2026-11-02T09:00:00Z",
            "data_categories": ["contact"],
            "risk": "risk",
        },
    )
    assert breach.status_code == 201, breach.text
    # A system ("spotrak", the key the route fill uses) and a second ticket with its task.
    system = await client.post(
        "/v1/systems",
        headers=a,
        json={"key": "spotrak", "name": "CRM", "handles": ["access"], "delivery": {"mode": "pull"}},
    )
    assert system.status_code == 201, system.text
    started = await client.post(
        "/v1/dsars",
        headers=a,
        json={"policy_key": "spotrak", "type": "access", "subject": {"id": SUBJECT}},
    )
    moved = await client.post(
        f"/v1/dsars/{started.json()['id']}/transitions", headers=a, json={"to": "in_progress"}
    )
    assert moved.status_code == 200, moved.text
    tasks = await client.get(f"/v1/dsars/{started.json()['id']}/tasks", headers=a)
    ids = {
        "tasks": tasks.json()["items"][0]["id"],
        "dsars": dsar.json()["id"],
        "consent-events": event.json()["id"],
        "breaches": breach.json()["id"],
    }
    # retention (DESIGN §14): a legal hold and a retention event of A's subject
    hold = await client.post(
        "/v1/holds", headers=a, json={"subject_id": SUBJECT, "reason": "Litigation 77"}
    )
    assert hold.status_code == 201, hold.text
    ids["holds"] = hold.json()["id"]
    ended = await client.post(
        f"/v1/subjects/{SUBJECT}/retention-events",
        headers=a,
        json={
            "policy_key": "spotrak",
            "event": "contract_ended",
            "occurred_at": "2026-01-31T10:00:00+01:00",
        },
    )
    assert ended.status_code == 201, ended.text
    if "/v1/webhooks" in openapi_document()["paths"]:
        hook = await client.post(
            "/v1/webhooks",
            headers=a,
            json={"url": "https://hooks.example.com/privacy", "events": ["dsar.created"]},
        )
        assert hook.status_code == 201, hook.text
        ids["webhooks"] = hook.json()["id"]
    return ids


def _fill(path: str, ids: dict[str, str]) -> str:
    collection = path.split("/")[2]
    filled = path.replace("{key}", "spotrak").replace("{version}", "1")
    filled = filled.replace("{subject_id}", SUBJECT)
    # A package link for A's ticket that the service did not sign (no enumeration).
    forged = (
        base64.urlsafe_b64encode(json.dumps(["tenant-a", ids["dsars"], 4102444800]).encode())
        .decode()
        .rstrip("=")
    )
    filled = filled.replace("{token}", f"{forged}.{'A' * 43}")
    if "{id}" in filled:
        assert collection in ids, f"{path}: give tenant A an object of this kind in this test"
        filled = filled.replace("{id}", ids[collection])
    assert "{" not in filled, f"{path}: unknown path parameter; extend the tenant-wall test"
    return filled


async def test_another_tenant_sees_and_touches_nothing(
    client: httpx.AsyncClient, tenant: str, clock: MutableClock
) -> None:
    a = auth_headers(tenant)
    b = auth_headers(tenant + "-other")
    b_system = system_auth(tenant + "-other", "spotrak")
    ids = await _create_everything(client, a)
    clock.pinned = datetime(2027, 6, 1, tzinfo=UTC)  # the documented examples are in the past
    secrets = [SUBJECT, EMAIL, *ids.values()]
    doc = openapi_document()
    checked = 0
    for path, item in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            has_params = "{" in path
            body = _example_body(doc, op)
            if (
                method == "post"
                and not has_params
                and (body is None or "policy_key" not in str(body))
            ):
                continue  # creates B's own object in B's own namespace (a policy, a webhook)
            url = _fill(path, ids)
            # An operation for systems' tokens is tried with B's token for a system of the same
            # key as A's (the tasks:work scope is never in `all`).
            who = b_system if op["operationId"] in SYSTEM_OPERATIONS else b
            r = await client.request(method.upper(), url, headers=who, json=body)
            name = f"{method.upper()} {path} ({op['operationId']})"
            checked += 1
            for secret in secrets:
                if secret in url and (secret != SUBJECT or r.is_success):
                    # B's own input may be named back to it, but an error never echoes a
                    # subject identifier (it is personal data)
                    continue
                assert secret not in r.text, f"{name} leaked tenant A's data"
            if op["operationId"] == "getSubjectConsents":
                assert r.status_code == 200, name
                assert all(c["state"] == "not_set" for c in r.json()["consents"]), name
            elif op["operationId"] == "getSubjectRetention":
                assert r.status_code == 200, name
                assert r.json()["items"] == [], name  # B has no policy: nothing to say
            elif op["operationId"] == "recordRetentionEvent":  # names A's policy in B's tenant
                assert r.status_code == 422, f"{name}: {r.status_code} {r.text[:200]}"
                assert r.json()["code"] == "policy_not_found", name
            elif has_params:
                assert r.status_code == 404, f"{name}: {r.status_code} {r.text[:200]}"
            elif method == "get":
                assert r.status_code == 200, f"{name}: {r.status_code}"
                if "items" in r.json():
                    assert r.json()["items"] == [], name
            elif r.status_code == 200 and "results" in r.json():  # a batch: per-item problems
                assert all("id" not in x and x["status"] in (404, 422) for x in r.json()["results"])
            else:  # a create that names A's policy
                assert r.status_code in (404, 422), f"{name}: {r.status_code} {r.text[:200]}"
    assert checked >= 25

    # and A's objects are exactly as A left them
    assert (await client.get(f"/v1/dsars/{ids['dsars']}", headers=a)).json()["status"] == "received"
    states = (await client.get(f"/v1/subjects/{SUBJECT}/consents", headers=a)).json()["consents"]
    assert [s["state"] for s in states] == ["granted"]
    assert (await client.get(f"/v1/breaches/{ids['breaches']}", headers=a)).json()[
        "status"
    ] == "open"
    assert (await client.get("/v1/policies/spotrak", headers=a)).json()["version"] == 1
    (hold,) = (await client.get("/v1/holds", headers=a)).json()["items"]
    assert hold["active"] is True
