"""Ops endpoints and the RFC 9457 error surface (404, 405, 413, 422, 500)."""

from __future__ import annotations

import logging

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.__main__ import openapi_document
from app.main import create_app
from tests.conftest import make_settings


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.get("/v1/policies/some-policy", headers=auth)
    text = (await client.get("/metrics")).text
    assert 'route="/v1/policies/{key}"' in text
    assert "some-policy" not in text
    assert "http_request_duration_seconds_bucket" in text


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "not_found"
    r = await client.delete("/v1/policies")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"


async def test_validation_error_lists_paths_and_never_echoes_input(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    secret_value = "jane.doe@example.com-SECRET"
    r = await client.post("/v1/policies", headers=auth, json={"key": secret_value, "title": 5})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_error"
    assert ["body", "key"] in [e["loc"] for e in body["errors"]]
    assert secret_value not in r.text


@pytest.mark.parametrize(
    "path",
    # /v1/consent-events and /v1/dsars have hot handlers (app/core/routing.py): same answer
    ["/v1/policies", "/v1/consent-events", "/v1/consent-events/batch", "/v1/dsars"],
)
async def test_malformed_json_is_the_declared_400_problem(
    client: httpx.AsyncClient, auth: dict[str, str], path: str
) -> None:
    r = await client.post(
        path, headers={**auth, "content-type": "application/json"}, content=b"{nope"
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_json"
    assert "nope" not in r.text
    declared = openapi_document()["paths"][path]["post"]["responses"]
    assert "400" in declared


async def test_body_over_the_limit_is_413_with_and_without_content_length(
    database_url: str, auth: dict[str, str]
) -> None:
    app = create_app(make_settings(database_url, max_body_bytes=2048))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/v1/policies", headers=auth, content=b"x" * 4096)
            assert r.status_code == 413
            assert r.json()["code"] == "payload_too_large"

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(4):
                    yield b"y" * 1024

            r = await c.post("/v1/policies", headers=auth, content=chunks())
            assert r.status_code == 413


async def test_unexpected_error_is_a_500_problem_without_internals(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(database_url))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail: password=hunter2")

    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            with caplog.at_level(logging.ERROR):
                r = await c.get("/boom", headers={"X-Request-Id": "req-123"})
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "hunter2" not in r.text
    assert "req-123" in r.json()["detail"]
    assert any(
        getattr(rec, "request_id", None) == "req-123" or "unhandled" in rec.getMessage()
        for rec in caplog.records
    )
