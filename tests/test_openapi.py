"""openapi.json is what the app serves, and reads well in a generated client."""

from __future__ import annotations

import json
import re

import httpx

from app.__main__ import openapi_document
from tests.conftest import ROOT

ROUTES = {
    ("post", "/v1/policies"): "createPolicy",
    ("get", "/v1/policies"): "listPolicies",
    ("get", "/v1/policies/{key}"): "getPolicy",
    ("put", "/v1/policies/{key}"): "publishPolicyVersion",
    ("get", "/v1/policies/{key}/versions"): "listPolicyVersions",
    ("get", "/v1/policies/{key}/versions/{version}"): "getPolicyVersion",
}


def test_openapi_json_is_current() -> None:
    committed = json.loads((ROOT / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "openapi.json is stale: run `python -m app openapi > openapi.json` and commit it"
    )


async def test_served_document_equals_the_committed_one(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    assert served == json.loads((ROOT / "openapi.json").read_text())


def test_route_table_operation_ids() -> None:
    doc = openapi_document()
    for (method, path), op_id in ROUTES.items():
        assert doc["paths"][path][method]["operationId"] == op_id


def test_every_operation_has_tag_summary_camelcase_id_and_problem_responses() -> None:
    doc = openapi_document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert re.fullmatch(r"[a-z][a-zA-Z]+", op["operationId"]), (method, path)
            assert op.get("tags"), (method, path)
            assert op.get("summary"), (method, path)
            if path.startswith("/v1/"):
                for code in ("401", "403", "422"):
                    assert "application/problem+json" in op["responses"][code]["content"]
                if method in ("post", "put", "patch") and "requestBody" in op:
                    body = op["requestBody"]["content"]["application/json"]
                    schema = body["schema"]
                    if "$ref" in schema:
                        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
                    assert body.get("examples") or schema.get("examples"), (method, path)


def test_component_schema_names_are_unique_and_unmangled() -> None:
    """Two models with one class name become `app__x__schemas__Y` keys with one title, and
    openapi-python-client then drops every model that uses either (DESIGN §12)."""
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    mangled = [name for name in schemas if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name)]
    assert mangled == [], f"mangled schema names (rename a model): {mangled}"
    retitled = {name: s["title"] for name, s in schemas.items() if s.get("title", name) != name}
    assert retitled == {}, f"schemas whose title is not their name: {retitled}"
    folded: dict[str, list[str]] = {}
    for name in schemas:  # generators derive file and class names from these, case-folded
        folded.setdefault(re.sub(r"[^a-z0-9]", "", name.lower()), []).append(name)
    assert [names for names in folded.values() if len(names) > 1] == []
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(doc)))
    assert refs <= set(schemas), f"dangling references: {sorted(refs - set(schemas))}"
