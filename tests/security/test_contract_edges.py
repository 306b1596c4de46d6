"""The edges of the HTTP contract a fuzzer and a careful client find (issue 12, item 3): `Allow`
on a 405, strict instants and numbers, unparseable JSON, `ETag` on replays, `If-Match`."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.__main__ import openapi_document
from tests.conftest import MutableClock, spotrak_body

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
DOC = openapi_document()
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


def _concrete(template: str) -> str:
    return (
        template.replace("{key}", "spotrak")
        .replace("{version}", "1")
        .replace("{id}", str(uuid.uuid4()))
        .replace("{subject_id}", "tenant/42".replace("/", "%2F"))
    )


@pytest.mark.parametrize("template", sorted(DOC["paths"]))
async def test_a_405_allows_every_documented_method_of_the_path(
    client: httpx.AsyncClient, auth: dict[str, str], template: str
) -> None:
    documented = sorted(m.upper() for m in DOC["paths"][template] if m in HTTP_METHODS)
    unsupported = next(m for m in ("OPTIONS", "PUT", "PATCH", "DELETE") if m not in documented)
    r = await client.request(unsupported, _concrete(template), headers=auth)
    assert r.status_code == 405, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["allow"] == ", ".join(documented)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
async def test_another_method_on_the_batch_is_405_not_an_event_id(
    client: httpx.AsyncClient, auth: dict[str, str], method: str
) -> None:
    r = await client.request(method, "/v1/consent-events/batch", headers=auth)
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    # a path segment that is not a UUID names no event
    assert (await client.get("/v1/consent-events/nope", headers=auth)).status_code == 404


def _query_instants() -> list[tuple[str, str]]:
    found = []
    for template, item in DOC["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                schema = param["schema"]
                options = schema.get("anyOf", [schema])
                if param["in"] == "query" and any(o.get("format") == "date-time" for o in options):
                    assert method == "get"
                    found.append((template, param["name"]))
    return found


QUERY_INSTANTS = _query_instants()


def test_every_query_instant_is_found() -> None:
    # as_of, since (ledger, audit), until, received_after, due_before, aware_after
    assert len(QUERY_INSTANTS) >= 7, QUERY_INSTANTS


@pytest.mark.parametrize(("template", "name"), QUERY_INSTANTS)
@pytest.mark.parametrize(
    "value", ["0.5", "0", "1767225600", "2027-03-01", "2027-03-01T10:15:00", "yesterday"]
)
async def test_a_query_instant_is_iso_8601_with_an_offset_or_422(
    client: httpx.AsyncClient, spotrak: dict[str, str], template: str, name: str, value: str
) -> None:
    path = _concrete(template)
    r = await client.get(path, headers=spotrak, params={name: value})
    assert r.status_code == 422, (path, name, value, r.text)
    assert r.json()["errors"][0]["loc"] == ["query", name]
    for good in ("2027-03-01T10:15:00Z", "2027-03-01T10:15:00.250+01:00"):
        r = await client.get(path, headers=spotrak, params={name: good})
        assert r.status_code in (200, 404), (path, name, good, r.text)


@pytest.mark.parametrize("value", [0, 0.5, "0.5", "1767225600", True, "2027-03-01"])
async def test_a_body_instant_is_iso_8601_text(
    client: httpx.AsyncClient, spotrak: dict[str, str], value: Any
) -> None:
    r = await client.post(
        "/v1/consent-events",
        headers=spotrak,
        json={
            "policy_key": "spotrak",
            "subject_id": "user-1",
            "purpose": "audience_cookies",
            "action": "granted",
            "occurred_at": value,
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "occurred_at"]


async def test_booleans_are_not_numbers_nor_numbers_booleans(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    policy = copy.deepcopy(spotrak_body("other-policy"))
    policy["change_notice"] = {"value": False, "unit": "days"}
    r = await client.post("/v1/policies", headers=spotrak, json=policy)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "change_notice", "value"]
    policy = copy.deepcopy(spotrak_body("other-policy"))
    policy["consent_purposes"][0]["honors_gpc"] = 1
    assert (await client.post("/v1/policies", headers=spotrak, json=policy)).status_code == 422
    breach = {
        "policy_key": "spotrak",
        "title": "Bucket exposed",
        "aware_at": "2027-03-01T10:00:00Z",
        "data_categories": ["email"],
        "risk": "high_risk",
        "subjects_affected": True,
    }
    r = await client.post("/v1/breaches", headers=spotrak, json=breach)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "subjects_affected"]


def _dsar_body() -> dict[str, Any]:
    return {
        "policy_key": "spotrak",
        "type": "access",
        "subject": {"id": "user-42"},
        "received_at": "2027-03-01T10:00:00Z",
    }


def _breach_body() -> dict[str, Any]:
    return {
        "policy_key": "spotrak",
        "title": "Bucket exposed",
        "aware_at": "2027-03-01T10:00:00Z",
        "data_categories": ["email"],
        "risk": "high_risk",
    }


def test_etag_is_declared_on_every_response_that_sends_it() -> None:
    sending = {
        ("/v1/dsars", "post", "201"),
        ("/v1/dsars/{id}", "get", "200"),
        ("/v1/dsars/{id}/transitions", "post", "200"),
        ("/v1/dsars/{id}/extension", "post", "200"),
        ("/v1/breaches", "post", "201"),
        ("/v1/breaches/{id}", "get", "200"),
        ("/v1/breaches/{id}", "patch", "200"),
        ("/v1/breaches/{id}/notifications", "post", "201"),
    }
    declared = {
        (path, method, status)
        for path, item in DOC["paths"].items()
        for method, op in item.items()
        for status, response in op["responses"].items()
        if "ETag" in response.get("headers", {})
    }
    assert declared == sending
    for path, method, status in sending:
        header = DOC["paths"][path][method]["responses"][status]["headers"]["ETag"]
        assert header["required"] is True


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/dsars", _dsar_body()), ("/v1/breaches", _breach_body())],
    ids=["dsar", "breach"],
)
async def test_an_idempotent_replay_keeps_the_etag_and_location(
    client: httpx.AsyncClient, spotrak: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    headers = {**spotrak, "Idempotency-Key": f"etag-{path}"}
    first = await client.post(path, headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert first.headers["etag"] == '"1"'
    # the object moves on; the replay is still the first answer, ETag included
    oid = first.json()["id"]
    if path == "/v1/dsars":
        moved = await client.post(
            f"/v1/dsars/{oid}/transitions", headers=spotrak, json={"to": "in_progress"}
        )
    else:
        moved = await client.patch(
            f"/v1/breaches/{oid}", headers=spotrak, json={"status": "contained"}
        )
    assert moved.headers["etag"] == '"2"'
    replay = await client.post(path, headers=headers, json=body)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.headers["etag"] == first.headers["etag"]
    assert replay.headers["location"] == first.headers["location"]
    assert replay.json() == first.json()


async def test_if_match_star_matches_any_current_version_and_a_weak_tag_never_does(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    dsar = await client.post("/v1/dsars", headers=spotrak, json=_dsar_body())
    tid = dsar.json()["id"]

    async def move(to: str, if_match: str) -> httpx.Response:
        return await client.post(
            f"/v1/dsars/{tid}/transitions",
            headers={**spotrak, "If-Match": if_match},
            json={"to": to, "reason": "test"},
        )

    # weak validators never match under RFC 9110's strong comparison: 412, nothing changed
    for weak in ('W/"1"', 'W/"1", W/"2"'):
        r = await move("in_progress", weak)
        assert r.status_code == 412, r.text
        assert r.json()["code"] == "version_mismatch"
        assert "weak" in r.json()["detail"]
    current = await client.get(f"/v1/dsars/{tid}", headers=spotrak)
    assert (current.json()["status"], current.headers["etag"]) == ("received", '"1"')

    assert (await move("in_progress", "*")).headers["etag"] == '"2"'
    # a list matches when one of its strong tags is the current version (a weak one is skipped)
    r = await move("withdrawn", 'W/"2", "7", "2"')
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"3"'
    assert (await move("completed", '"7"')).status_code == 412
    assert (await move("completed", "not an etag")).status_code == 412

    # `*` on an object that does not exist is still a 404
    r = await client.post(
        f"/v1/dsars/{uuid.uuid4()}/transitions",
        headers={**spotrak, "If-Match": "*"},
        json={"to": "in_progress"},
    )
    assert r.status_code == 404


async def test_if_match_on_an_incident_reads_the_same(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    bid = (await client.post("/v1/breaches", headers=spotrak, json=_breach_body())).json()["id"]
    weak = {**spotrak, "If-Match": 'W/"1"'}
    r = await client.patch(f"/v1/breaches/{bid}", headers=weak, json={"status": "contained"})
    assert r.status_code == 412
    star = {**spotrak, "If-Match": "*"}
    r = await client.patch(f"/v1/breaches/{bid}", headers=star, json={"status": "contained"})
    assert (r.status_code, r.headers["etag"]) == (200, '"2"')


async def test_a_deleted_webhook_is_not_replayed_by_its_idempotency_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """A replay never points at nothing: deleting the subscription forgets the stored answer
    that created it, so the same key and body afterwards create a new one."""
    headers = {**auth, "Idempotency-Key": "hook-1"}
    body = {"url": "https://hooks.example.com/privacy", "events": ["dsar.created"]}
    first = await client.post("/v1/webhooks", headers=headers, json=body)
    assert first.status_code == 201, first.text
    replay = await client.post("/v1/webhooks", headers=headers, json=body)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert (await client.delete(first.headers["location"], headers=auth)).status_code == 204
    again = await client.post("/v1/webhooks", headers=headers, json=body)
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert (await client.delete(again.headers["location"], headers=auth)).status_code == 204
