"""The five seed policies (examples/policies/*.json) load through the API as written."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "examples" / "policies").glob("*.json"))


def test_there_are_five_seed_policies() -> None:
    assert len(EXAMPLES) == 5, [p.name for p in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
async def test_seed_policy_loads_and_reads_back(
    client: httpx.AsyncClient, auth: dict[str, str], path: object
) -> None:
    body = json.loads(ROOT.joinpath(path).read_text())  # type: ignore[arg-type]
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"] == body["key"]
    assert created["version"] == 1
    assert created["jurisdiction"]["regime"] == body["jurisdiction"]["regime"]
    assert created["response"]["default"]["source"]
    got = await client.get(f"/v1/policies/{body['key']}", headers=auth)
    assert got.json() == created
