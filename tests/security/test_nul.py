"""U+0000 anywhere in the input is a 422 problem on both databases, and nothing is written.

PostgreSQL cannot store NUL in text or jsonb: before this check such a value was a 500 there
(and stored on SQLite). Bodies are checked once parsed (app/core/routing.py), paths and query
strings by the middleware.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.core.routing import nul_location
from tests.conftest import auth_headers, spotrak_body


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()  # json.dumps writes U+0000 as the escape \u0000


async def _policy(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text


def _assert_nul_problem(r: httpx.Response, loc: list[Any]) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"] == [
        {"loc": loc, "msg": "U+0000 (NUL) is not accepted in text", "type": "string_nul"}
    ]


WRITES: list[tuple[str, str, dict[str, Any], list[Any]]] = [
    (
        "/v1/consent-events",
        "consent",
        {
            "policy_key": "spotrak",
            "subject_id": "user\x0042",
            "purpose": "audience_cookies",
            "action": "granted",
        },
        ["body", "subject_id"],
    ),
    (
        "/v1/consent-events",
        "consent",
        {
            "policy_key": "spotrak",
            "subject_id": "user-42",
            "purpose": "audience_cookies",
            "action": "granted",
            "proof": {"banner": ["v1", "text\x00"]},
        },
        ["body", "proof", "banner", 1],
    ),
    (
        "/v1/consent-events/batch",
        "consent",
        {
            "events": [
                {
                    "policy_key": "spotrak",
                    "subject_id": "ok",
                    "purpose": "audience_cookies",
                    "action": "granted",
                },
                {
                    "policy_key": "spotrak",
                    "subject_id": "user-42",
                    "purpose": "audience_cookies",
                    "action": "granted",
                    "source": "\x00",
                },
            ]
        },
        ["body", "events", 1, "source"],
    ),
    (
        "/v1/dsars",
        "dsar",
        {
            "policy_key": "spotrak",
            "type": "access",
            "subject": {"id": "user-42"},
            "description": "Please send\x00 my data",
        },
        ["body", "description"],
    ),
]


@pytest.mark.parametrize("case", range(len(WRITES)))
async def test_a_body_with_nul_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, tenant: str, case: int
) -> None:
    path, kind, body, loc = WRITES[case]
    auth = {**auth_headers(tenant), "Content-Type": "application/json"}
    await _policy(client, auth)
    for extra in ({}, {"Idempotency-Key": f"nul-{case}"}):  # the fast path and the declared one
        r = await client.post(path, headers={**auth, **extra}, content=_raw(body))
        _assert_nul_problem(r, loc)
    listing = "/v1/consent-events" if kind == "consent" else "/v1/dsars"
    r = await client.get(listing, headers=auth)
    assert r.status_code == 200
    assert r.json()["items"] == []


async def test_a_policy_with_nul_is_refused(client: httpx.AsyncClient, tenant: str) -> None:
    auth = {**auth_headers(tenant), "Content-Type": "application/json"}
    body = spotrak_body()
    body["title"] = "Spotrak\x00"
    r = await client.post("/v1/policies", headers=auth, content=_raw(body))
    _assert_nul_problem(r, ["body", "title"])
    assert (await client.get("/v1/policies", headers=auth)).json()["items"] == []


async def test_nul_in_a_path_or_a_query_is_refused(client: httpx.AsyncClient, tenant: str) -> None:
    auth = auth_headers(tenant)
    await _policy(client, auth)
    r = await client.get("/v1/subjects/user%0042/consents", headers=auth)
    _assert_nul_problem(r, ["path"])
    r = await client.delete("/v1/subjects/user%0042", headers=auth)
    _assert_nul_problem(r, ["path"])
    r = await client.get("/v1/consent-events?subject_id=user%0042", headers=auth)
    _assert_nul_problem(r, ["query"])


async def test_text_that_only_looks_like_an_escape_is_kept(
    client: httpx.AsyncClient, tenant: str
) -> None:
    """A backslash followed by "u0000" is ordinary text (JSON `\\\\u0000`), and `%2500` in a
    query is the text "%00"."""
    auth = {**auth_headers(tenant), "Content-Type": "application/json"}
    await _policy(client, auth)
    body = {"policy_key": "spotrak", "type": "access", "subject": {"id": "u"}}
    body["description"] = "a literal \\u0000"
    r = await client.post("/v1/dsars", headers=auth, content=_raw(body))
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "a literal \\u0000"
    r = await client.get("/v1/consent-events?subject_id=%2500", headers=auth)
    assert r.status_code == 200


def test_nul_location_finds_the_first_key_or_value_in_document_order() -> None:
    assert nul_location({"a": "x", "b": ["y", {"c\x00": 1}], "d": "\x00"}) == ["b", 1]
    assert nul_location([{"a": 1}, "ok", ["\x00"]]) == [2, 0]
    assert nul_location({"a": [1, 2.5, None, True, "fine"]}) is None
