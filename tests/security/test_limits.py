"""Limits (issue 8, item 4): bounded schemas, list limits, the write rate limit, the request
deadline, the database statement timeout and a database that is away — each answered with a
documented problem, never a hang or a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from app.__main__ import openapi_document
from app.main import create_app
from tests.conftest import auth_headers, make_settings, spotrak_body


def _unbounded(doc: dict[str, Any]) -> list[str]:
    """Every string, array and map a caller can send, without an upper bound."""
    comps = doc["components"]["schemas"]
    seen: set[str] = set()
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}[{i}]")
            return
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                walk(comps[name], name)
            return
        kind = node.get("type")
        bounded_format = node.get("format") in ("date-time", "date", "uuid")
        if (
            kind == "string"
            and not bounded_format
            and not {"maxLength", "enum", "const"} & set(node)
        ):
            found.append(f"{where}: string without maxLength")
        # the consent batch's bound is a 413 (DESIGN §7), stated in its description (a schema
        # bound would make 1,001 events a schema-invalid request, expected to be 400/422)
        batch = node.get("description") == "Up to 1,000 events (more is 413)"
        if kind == "array" and "maxItems" not in node and not batch:
            found.append(f"{where}: array without maxItems")
        is_map = kind == "object" and isinstance(node.get("additionalProperties"), dict)
        if is_map and "maxProperties" not in node:
            found.append(f"{where}: map without maxProperties")
        for key, child in node.items():
            walk(child, f"{where}.{key}")

    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                walk(param.get("schema", {}), f"{method.upper()} {path} ?{param['name']}")
            for media in op.get("requestBody", {}).get("content", {}).values():
                walk(media.get("schema", {}), f"{method.upper()} {path} body")
    return found


def test_every_input_string_array_and_map_is_bounded() -> None:
    assert _unbounded(openapi_document()) == []


def test_limits_are_documented_on_every_operation() -> None:
    doc = openapi_document()
    for path, item in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            for code in ("400", "413", "422", "429", "503"):
                assert code in op["responses"], (method, path, code)
            assert "Retry-After" in op["responses"]["429"]["headers"]


async def test_every_list_refuses_a_limit_over_500(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    doc = openapi_document()
    lists = [
        path
        for path, item in doc["paths"].items()
        if "get" in item and any(p["name"] == "limit" for p in item["get"].get("parameters", []))
    ]
    assert len(lists) >= 4
    for path in lists:
        url = path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace("{key}", "x-y-z")
        r = await client.get(url, headers=auth, params={"limit": 501})
        assert r.status_code == 422, (path, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"] == ["query", "limit"]


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, rate_limit_writes=3))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_writes_over_the_tenant_rate_are_429_with_retry_after(
    limited: httpx.AsyncClient, tenant: str
) -> None:
    a, other = auth_headers(tenant), auth_headers(tenant + "-b")
    statuses = []
    for i in range(4):
        r = await limited.post("/v1/policies", headers=a, json=spotrak_body(f"pol-{i}"))
        statuses.append(r.status_code)
    assert statuses == [201, 201, 201, 429]
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["code"] == "rate_limited"
    # reads are not limited, and the limit is per tenant
    assert (await limited.get("/v1/policies", headers=a)).status_code == 200
    r = await limited.post("/v1/policies", headers=other, json=spotrak_body())
    assert r.status_code == 201


async def test_a_request_past_its_deadline_is_a_503_problem(database_url: str) -> None:
    app = create_app(make_settings(database_url, request_timeout_seconds=0.2))

    @app.get("/slow")
    async def slow() -> None:
        await asyncio.sleep(5)

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            started = time.monotonic()
            r = await c.get("/slow")
    assert time.monotonic() - started < 2
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "request_timeout"


async def test_statement_timeout_is_set_and_a_runaway_query_is_a_503(
    database_url: str, backend: str
) -> None:
    if backend != "postgresql":
        # SQLite has no server to cancel a statement; its bound is the lock wait
        app = create_app(make_settings(database_url))
        async with LifespanManager(app), app.state.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
        return
    app = create_app(make_settings(database_url, statement_timeout_ms=300))

    @app.get("/runaway")
    async def runaway() -> None:
        async with app.state.sessionmaker() as session:
            await session.execute(text("SELECT pg_sleep(3)"))

    async with LifespanManager(app):
        async with app.state.engine.connect() as conn:
            assert (await conn.execute(text("SHOW statement_timeout"))).scalar() == "300ms"
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            started = time.monotonic()
            r = await c.get("/runaway")
    assert time.monotonic() - started < 2.5
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_a_database_that_is_away_gives_503_problems_fast(tenant: str) -> None:
    # nothing listens on port 1: the connection is refused at once
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/none"
    app = create_app(make_settings(url))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            started = time.monotonic()
            ready = await c.get("/readyz")
            write = await c.post("/v1/policies", headers=auth_headers(tenant), json=spotrak_body())
            health = await c.get("/healthz")
    assert time.monotonic() - started < 12
    assert ready.status_code == 503
    assert write.status_code == 503
    assert write.headers["content-type"] == "application/problem+json"
    assert write.json()["code"] == "database_unavailable"
    assert health.status_code == 200


async def test_a_lost_connection_on_the_bare_pool_is_a_503_problem(
    client: httpx.AsyncClient, auth: dict[str, str], backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot paths' bare asyncpg pool (app/core/rawpg.py) maps outages like the ORM does."""
    import asyncpg

    from app.core import rawpg

    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    event = {
        "policy_key": "spotrak",
        "subject_id": "u-1",
        "purpose": "audience_cookies",
        "action": "granted",
    }
    assert (await client.post("/v1/consent-events", headers=auth, json=event)).status_code == 201

    async def lost(*_: Any) -> list[Any]:
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")

    monkeypatch.setattr(rawpg, "fetch", lost)
    r = await client.post("/v1/consent-events", headers=auth, json=event)
    if backend == "sqlite":
        assert r.status_code == 201  # SQLite never uses the bare pool
        return
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "database_unavailable"


async def test_every_list_refuses_a_tampered_cursor(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """A cursor is opaque: one this service did not issue (a naive instant, a bare string, a
    wrong shape) is a 422 problem on the `cursor` field, never a 500 from the database."""
    from app.core.pagination import encode_cursor

    assert (await client.post("/v1/policies", headers=auth, json=spotrak_body())).status_code == 201
    dsar = await client.post(
        "/v1/dsars",
        headers=auth,
        json={"policy_key": "spotrak", "type": "access", "subject": {"id": "u-1"}},
    )
    assert dsar.status_code == 201
    tampered = [
        encode_cursor(["2027-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"]),
        encode_cursor(["not-a-date", "not-a-uuid"]),
        encode_cursor([True]),
        "%%%",
    ]
    doc = openapi_document()
    lists = [
        path
        for path, item in doc["paths"].items()
        if "get" in item and any(p["name"] == "cursor" for p in item["get"].get("parameters", []))
    ]
    assert len(lists) >= 6
    for path in lists:
        url = path.replace("{id}", dsar.json()["id"]).replace("{key}", "spotrak")
        for cursor in tampered:
            r = await client.get(url, headers=auth, params={"cursor": cursor})
            if r.status_code == 404:  # a path id of another kind (webhook): no list to page
                continue
            assert r.status_code == 422, (path, cursor, r.status_code, r.text[:200])
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["errors"][0]["loc"] == ["query", "cursor"], (path, r.text[:200])
