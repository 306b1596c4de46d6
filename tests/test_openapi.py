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
