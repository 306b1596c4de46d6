"""The policy's optional `fulfilment` block (DESIGN §13)."""

from __future__ import annotations

import copy

import httpx
import pytest

from tests.conftest import spotrak_body


async def test_the_block_is_optional_and_read_back_resolved(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    assert r.json()["fulfilment"] == {
        "buffer": {"value": 2, "unit": "business_days"},
        "max_attempts": 5,
        "auto_complete": False,
        "keep_results_for": {"value": 30, "unit": "days"},
    }
    body = copy.deepcopy(spotrak_body("other"))
    body["fulfilment"] = {"auto_complete": True, "buffer": {"value": 5, "unit": "days"}}
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["fulfilment"]["auto_complete"] is True
    assert r.json()["fulfilment"]["buffer"] == {"value": 5, "unit": "days"}
    assert r.json()["fulfilment"]["max_attempts"] == 5


@pytest.mark.parametrize(
    ("block", "loc"),
    [
        ({"max_attempts": 0}, ["body", "fulfilment", "max_attempts"]),
        ({"buffer": {"value": -1, "unit": "days"}}, ["body", "fulfilment", "buffer", "value"]),
        (
            {"keep_results_for": {"value": 1, "unit": "fortnights"}},
            ["body", "fulfilment", "keep_results_for", "unit"],
        ),
        ({"surprise": True}, ["body", "fulfilment", "surprise"]),
    ],
)
async def test_bad_values_are_422_with_the_field_path(
    client: httpx.AsyncClient, auth: dict[str, str], block: dict[str, object], loc: list[str]
) -> None:
    body = copy.deepcopy(spotrak_body())
    body["fulfilment"] = block
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == loc
