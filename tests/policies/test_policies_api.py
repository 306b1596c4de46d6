"""Policies as versioned configuration: create, read, publish, versions, validation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.policies.schemas import MINIMAL_EXAMPLE
from tests.conftest import MutableClock, auth_headers, spotrak_body


async def test_create_returns_version_1_with_resolved_rules_and_location(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/policies/spotrak"
    body = r.json()
    assert body["version"] == 1
    assert body["published_at"] == body["effective_at"]
    assert body["in_force"] is True
    rule = body["response"]["default"]
    assert rule["within"] == {"value": 1, "unit": "months"}
    assert rule["extension"] == {"value": 2, "unit": "months"}
    assert rule["acknowledge_within"] == {"value": 5, "unit": "business_days"}
    assert body["breach"]["authority_within"] == {"value": 72, "unit": "hours"}
    assert body["breach"]["notify_subjects"] == "always"
    assert body["jurisdiction"]["calendar"]["country"] == "FR"
    assert body["declared"]["change_notice"] == {"value": 15, "unit": "days"}
    got = await client.get("/v1/policies/spotrak", headers=auth)
    assert got.status_code == 200
    assert got.json() == body


async def test_omitted_fields_come_from_the_regime_preset(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post("/v1/policies", headers=auth, json=MINIMAL_EXAMPLE)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["response"]["default"]["within"] == {"value": 1, "unit": "months"}
    assert body["response"]["default"]["extension"] == {"value": 2, "unit": "months"}
    assert body["breach"]["authority_within"] == {"value": 72, "unit": "hours"}
    assert body["breach"]["notify_subjects"] == "high_risk"
    assert body["retention"] == []
    assert "response" not in body["declared"]


async def test_new_version_takes_effect_after_the_change_notice(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = datetime(2027, 1, 10, 10, 0, tzinfo=UTC)
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    v2_body = spotrak_body()
    v2_body["title"] = "Spotrak privacy policy (v2)"
    clock.pinned = datetime(2027, 2, 1, 9, 0, tzinfo=UTC)
    r = await client.put("/v1/policies/spotrak", headers=auth, json=v2_body)
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert v2["version"] == 2
    assert v2["in_force"] is False
    assert v2["effective_at"] == "2027-02-16T09:00:00Z"
    assert r.headers["location"] == "/v1/policies/spotrak/versions/2"
    # until then, version 1 governs
    current = (await client.get("/v1/policies/spotrak", headers=auth)).json()
    assert (current["version"], current["title"]) == (1, "Spotrak privacy policy")
    versions = (await client.get("/v1/policies/spotrak/versions", headers=auth)).json()
    assert [(v["version"], v["in_force"]) for v in versions["items"]] == [(1, True), (2, False)]
    clock.pinned = datetime(2027, 2, 16, 9, 0, tzinfo=UTC)
    current = (await client.get("/v1/policies/spotrak", headers=auth)).json()
    assert (current["version"], current["title"]) == (2, "Spotrak privacy policy (v2)")
    one = await client.get("/v1/policies/spotrak/versions/1", headers=auth)
    assert one.json()["in_force"] is False
    missing = await client.get("/v1/policies/spotrak/versions/9", headers=auth)
    assert missing.status_code == 404
    assert missing.json()["code"] == "policy_version_not_found"


async def test_put_with_another_key_in_the_body_is_422(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.post("/v1/policies", headers=auth, json=spotrak_body())
    r = await client.put("/v1/policies/spotrak", headers=auth, json=spotrak_body("other-key"))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "key"]


async def test_duplicate_key_is_409(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 409
    assert r.json()["code"] == "policy_exists"


async def test_other_tenants_policy_is_404_and_never_listed(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    await client.post("/v1/policies", headers=auth, json=spotrak_body())
    other = auth_headers(tenant + "-b")
    assert (await client.get("/v1/policies/spotrak", headers=other)).status_code == 404
    assert (await client.get("/v1/policies/spotrak/versions", headers=other)).status_code == 404
    assert (
        await client.put("/v1/policies/spotrak", headers=other, json=spotrak_body())
    ).status_code == 404
    assert (await client.get("/v1/policies", headers=other)).json()["items"] == []


async def test_list_is_cursor_paginated_by_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for key in ("ccc", "aaa", "bbb"):
        assert (
            await client.post("/v1/policies", headers=auth, json=spotrak_body(key))
        ).status_code == 201
    page1 = (await client.get("/v1/policies?limit=2", headers=auth)).json()
    assert [p["key"] for p in page1["items"]] == ["aaa", "bbb"]
    page2 = (
        await client.get(f"/v1/policies?limit=2&cursor={page1['next_cursor']}", headers=auth)
    ).json()
    assert [p["key"] for p in page2["items"]] == ["ccc"]
    assert page2["next_cursor"] is None
    bad = await client.get("/v1/policies?cursor=%%%", headers=auth)
    assert bad.status_code == 422


async def test_idempotency_key_replays_and_refuses_another_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "create-spotrak-1"}
    first = await client.post("/v1/policies", headers=headers, json=spotrak_body())
    again = await client.post("/v1/policies", headers=headers, json=spotrak_body())
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == "/v1/policies/spotrak"
    other = await client.post("/v1/policies", headers=headers, json=spotrak_body("spotrak-2"))
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert (await client.get("/v1/policies/spotrak-2", headers=auth)).status_code == 404


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(spotrak_body())
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


BAD_CONFIGS = [
    pytest.param(
        ["response", "default", "within", "unit"],
        "fortnights",
        ["body", "response", "default", "within", "unit"],
        id="unknown-unit",
    ),
    pytest.param(["rights", 1], "teleportation", ["body", "rights", 1], id="unknown-right"),
    pytest.param(
        ["jurisdiction", "regime"], "hipaa", ["body", "jurisdiction", "regime"], id="unknown-regime"
    ),
    pytest.param(
        ["response", "default", "within", "value"],
        -1,
        ["body", "response", "default", "within", "value"],
        id="negative-value",
    ),
    pytest.param(
        ["retention", 1, "category"],
        "technical_logs",
        ["body", "retention", 1, "category"],
        id="duplicate-category",
    ),
    pytest.param(
        ["consent_purposes"],
        [{"key": "a", "default": "denied"}, {"key": "a", "default": "granted"}],
        ["body", "consent_purposes", 1, "key"],
        id="duplicate-purpose",
    ),
    pytest.param(["rights", 1], "access", ["body", "rights", 1], id="duplicate-right"),
    pytest.param(
        ["jurisdiction", "timezone"],
        "Europe/Atlantis",
        ["body", "jurisdiction", "timezone"],
        id="unknown-timezone",
    ),
    pytest.param(
        ["jurisdiction", "country"],
        "XX",
        ["body", "jurisdiction", "country"],
        id="country-unknown-to-calendar",
    ),
    pytest.param(
        ["jurisdiction", "subdivision"],
        "ZZ",
        ["body", "jurisdiction", "subdivision"],
        id="subdivision-unknown-to-calendar",
    ),
    pytest.param(["key"], "No Spaces!", ["body", "key"], id="bad-key"),
    pytest.param(
        ["effective_from"],
        "2027-01-01T00:00:00",
        ["body", "effective_from"],
        id="datetime-without-offset",
    ),
    pytest.param(["surprise"], 1, ["body", "surprise"], id="unknown-field"),
]


@pytest.mark.parametrize(("path", "value", "loc"), BAD_CONFIGS)
async def test_bad_config_is_422_with_the_field_path_and_writes_nothing(
    client: httpx.AsyncClient, auth: dict[str, str], path: list[Any], value: Any, loc: list[Any]
) -> None:
    r = await client.post("/v1/policies", headers=auth, json=_mutate(path, value))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert loc in [e["loc"] for e in r.json()["errors"]], r.json()
    assert (await client.get("/v1/policies", headers=auth)).json()["items"] == []
