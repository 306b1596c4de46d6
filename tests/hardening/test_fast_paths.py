"""The hot routes (app/core/routing.py) answer exactly as the declared routes do.

Two apps on the same database, one with FAST_PATHS on and one with it off, each in its own
tenant with the same policy, receive the same requests at the same pinned instant: status,
content type, Location/ETag/Retry-After and body must be equal once generated ids are
replaced by placeholders. A counter on FastAPI's dependency solver shows which requests the
binder took and which it left to FastAPI.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import fastapi.routing
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.conftest import MutableClock, auth_headers, make_settings, token_for
from tests.consent.helpers import NOW, POLICY_AT, consent_policy, event
from tests.fulfilment.helpers import system_auth

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Pair = tuple[httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture
async def pair(database_url: str, clock: MutableClock) -> AsyncIterator[Pair]:
    clients = []
    apps = [
        create_app(
            make_settings(database_url, fast_paths=fast, rate_limit_writes=1000), clock=clock
        )
        for fast in (True, False)
    ]
    async with LifespanManager(apps[0]), LifespanManager(apps[1]):
        for a in apps:
            transport = httpx.ASGITransport(app=a, raise_app_exceptions=False)
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://t"))
        try:
            yield clients[0], clients[1]
        finally:
            for c in clients:
                await c.aclose()


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _normalise(text: str) -> str:
    seen: dict[str, str] = {}
    return UUID_RE.sub(lambda m: seen.setdefault(m.group(0), f"<id{len(seen)}>"), text)


def _answer(r: httpx.Response) -> dict[str, Any]:
    return {
        "status": r.status_code,
        "content-type": r.headers.get("content-type"),
        "location": _normalise(r.headers.get("location", "")),
        "etag": r.headers.get("etag"),
        "retry-after": r.headers.get("retry-after"),
        "body": _normalise(r.text),
    }


class Tenants:
    """One tenant per app, each holding the same policy."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        base = f"t-{uuid.uuid4().hex[:10]}"
        self.tenants = (base + "-fast", base + "-declared")

    async def setup(self, clock: MutableClock) -> None:
        clock.pinned = POLICY_AT
        for client, tenant in zip(self.pair, self.tenants, strict=True):
            r = await client.post(
                "/v1/policies", headers=auth_headers(tenant), json=consent_policy()
            )
            assert r.status_code == 201, r.text
        clock.pinned = NOW

    async def both(
        self,
        method: str,
        path: str,
        *,
        scopes: tuple[str, ...] | None = None,
        token: bool = True,
        system: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        answers = []
        for client, tenant in zip(self.pair, self.tenants, strict=True):
            h: dict[str, str] = {}
            if system is not None:
                h = system_auth(tenant, system)
            elif token:
                h = auth_headers(tenant) if scopes is None else auth_headers(tenant, scopes)
            h.update(headers or {})
            r = await client.request(method, path, headers=h, **kwargs)
            answers.append(_answer(r))
        return answers[0], answers[1]


@pytest.fixture
async def tenants(pair: Pair, clock: MutableClock) -> Tenants:
    t = Tenants(pair)
    await t.setup(clock)
    return t


CONSENT_CASES: list[tuple[str, dict[str, Any]]] = [
    ("plain event", {"json": event()}),
    ("late event", {"json": event(occurred_at="2026-06-01T00:00:00Z", action="denied")}),
    ("GPC", {"json": event(subject_id="gpc-1"), "headers": {"Sec-GPC": "1"}}),
    ("GPC 0", {"json": event(subject_id="gpc-2"), "headers": {"Sec-GPC": "0"}}),
    ("GPC header too long", {"json": event(), "headers": {"Sec-GPC": "1" * 9}}),
    ("unknown purpose", {"json": event(purpose="nope")}),
    ("unknown policy", {"json": event(policy_key="nope")}),
    ("future event", {"json": event(occurred_at="2027-03-11T00:00:00Z")}),
    ("missing field", {"json": {"policy_key": "spotrak"}}),
    ("wrong type", {"json": event(proof=[1, 2])}),
    (
        "malformed JSON",
        {"content": b'{"policy_key": ', "headers": {"Content-Type": "application/json"}},
    ),
    ("not JSON", {"content": b"policy_key=spotrak", "headers": {"Content-Type": "text/plain"}}),
    ("no body", {"headers": {"Content-Type": "application/json"}}),
    (
        "JSON with charset",
        {
            "content": httpx.Request("POST", "/", json=event()).content,
            "headers": {"Content-Type": "application/json; charset=utf-8"},
        },
    ),
    ("no token", {"json": event(), "token": False}),
    ("bad token", {"json": event(), "token": False, "headers": {"Authorization": "Bearer x.y.z"}}),
    ("basic auth", {"json": event(), "token": False, "headers": {"Authorization": "Basic eDp5"}}),
    ("read-only token", {"json": event(), "scopes": ("consent:read",)}),
    ("idempotency key", {"json": event(subject_id="idem"), "headers": {"Idempotency-Key": "k-1"}}),
]


@pytest.mark.parametrize("case", [c[0] for c in CONSENT_CASES])
async def test_recording_a_consent_event_answers_alike(tenants: Tenants, case: str) -> None:
    kwargs = dict(CONSENT_CASES)[case]
    fast, declared = await tenants.both("POST", "/v1/consent-events", **kwargs)
    assert fast == declared


READ_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("after events", "/v1/subjects/user-42/consents", {}),
    ("unknown subject", "/v1/subjects/nobody/consents", {}),
    ("encoded subject", "/v1/subjects/a%20b%2Fc/consents", {}),
    ("subject too long", "/v1/subjects/" + "x" * 201 + "/consents", {}),
    ("longest subject", "/v1/subjects/" + "x" * 200 + "/consents", {}),
    ("as_of", "/v1/subjects/user-42/consents?as_of=2027-03-02T00:00:00Z", {}),
    ("bad as_of", "/v1/subjects/user-42/consents?as_of=yesterday", {}),
    ("policy_key", "/v1/subjects/user-42/consents?policy_key=spotrak", {}),
    ("no token", "/v1/subjects/user-42/consents", {"token": False}),
    ("write-only token", "/v1/subjects/user-42/consents", {"scopes": ("consent:write",)}),
]


@pytest.mark.parametrize("case", [c[0] for c in READ_CASES])
async def test_reading_the_current_consents_answers_alike(tenants: Tenants, case: str) -> None:
    _, path, kwargs = next(c for c in READ_CASES if c[0] == case)
    for body in (event(), event(purpose="sale_of_data", action="denied")):
        await tenants.both("POST", "/v1/consent-events", json=body)
    fast, declared = await tenants.both("GET", path, **kwargs)
    assert fast == declared


def dsar(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_key": "spotrak",
        "type": "access",
        "subject": {"id": "user-42", "email": "someone@example.com"},
        "received_at": "2027-03-05T16:30:00+01:00",
        "channel": "email",
        "description": "Copy of my data",
    }
    body.update(over)
    return body


DSAR_CASES: list[tuple[str, dict[str, Any]]] = [
    ("back-dated", {"json": dsar()}),
    ("received now", {"json": {k: v for k, v in dsar().items() if k != "received_at"}}),
    ("erasure", {"json": dsar(type="erasure")}),
    ("future receipt", {"json": dsar(received_at="2027-04-01T00:00:00Z")}),
    ("type not offered", {"json": dsar(type="opt_out")}),
    ("type unknown", {"json": dsar(type="nonsense")}),
    ("unknown policy", {"json": dsar(policy_key="nope")}),
    ("missing subject", {"json": {"policy_key": "spotrak", "type": "access"}}),
    ("no token", {"json": dsar(), "token": False}),
    ("consent token", {"json": dsar(), "scopes": ("consent:write",)}),
    ("idempotency key", {"json": dsar(), "headers": {"Idempotency-Key": "k-2"}}),
]


@pytest.mark.parametrize("case", [c[0] for c in DSAR_CASES])
async def test_opening_a_dsar_answers_alike(tenants: Tenants, case: str) -> None:
    kwargs = dict(DSAR_CASES)[case]
    fast, declared = await tenants.both("POST", "/v1/dsars", **kwargs)
    assert fast == declared


CLAIM_CASES: list[tuple[str, dict[str, Any]]] = [
    ("claim", {"json": {"limit": 10, "lease_seconds": 60}, "system": "crm"}),
    ("defaults", {"json": {}, "system": "crm"}),
    ("limit too high", {"json": {"limit": 101}, "system": "crm"}),
    ("lease too short", {"json": {"lease_seconds": 5}, "system": "crm"}),
    ("unknown system", {"json": {"limit": 1}, "system": "nope"}),
    ("operator token", {"json": {"limit": 1}}),
    ("no token", {"json": {"limit": 1}, "token": False}),
]


@pytest.mark.parametrize("case", [c[0] for c in CLAIM_CASES])
async def test_claiming_tasks_answers_alike(
    tenants: Tenants, case: str, solver_calls: list[int]
) -> None:
    kwargs = dict(CLAIM_CASES)[case]
    system = {"key": "crm", "name": "CRM", "handles": ["access"], "delivery": {"mode": "pull"}}
    assert {a["status"] for a in await tenants.both("POST", "/v1/systems", json=system)} == {201}
    for _ in range(2):
        opened = await tenants.both("POST", "/v1/dsars", json=dsar())
        assert {a["status"] for a in opened} == {201}
    for client, tenant in zip(tenants.pair, tenants.tenants, strict=True):
        h = auth_headers(tenant)
        for t in (await client.get("/v1/dsars", headers=h)).json()["items"]:
            r = await client.post(
                f"/v1/dsars/{t['id']}/transitions", headers=h, json={"to": "in_progress"}
            )
            assert r.status_code == 200, r.text
    for n in range(2):  # the second finds nothing left to lease (or refuses alike)
        fast, declared = await tenants.both("POST", "/v1/tasks/claim", **kwargs)
        assert fast == declared
        if case == "claim" and n == 0:
            assert fast["body"].count('"status":"in_progress"') == 2
    if case == "claim":  # the pull systems' loop is served by the binder, not the solver
        before = solver_calls[0]
        fast_client, tenant = tenants.pair[0], tenants.tenants[0]
        r = await fast_client.post(
            "/v1/tasks/claim", headers=system_auth(tenant, "crm"), json={"limit": 1}
        )
        assert r.status_code == 200
        assert solver_calls[0] == before


async def test_the_binder_takes_what_it_binds_and_leaves_the_rest(
    client: httpx.AsyncClient, clock: MutableClock, tenant: str, solver_calls: list[int]
) -> None:
    auth = auth_headers(tenant)
    clock.pinned = POLICY_AT
    assert (
        await client.post("/v1/policies", headers=auth, json=consent_policy())
    ).status_code == 201
    clock.pinned = NOW
    after_setup = solver_calls[0]
    assert after_setup >= 1  # the policy route is not a hot one

    # every parameter the declared routes declare is bound: headers, query, body, token
    bound = [
        await client.post("/v1/consent-events", headers=auth, json=event()),
        await client.post(
            "/v1/consent-events", headers={**auth, "Sec-GPC": "1"}, json=event(subject_id="g")
        ),
        await client.post(
            "/v1/consent-events", headers={**auth, "Idempotency-Key": "a"}, json=event()
        ),
        await client.get("/v1/subjects/user-42/consents", headers=auth),
        await client.get("/v1/subjects/user-42/consents?as_of=2027-03-02T00:00:00Z", headers=auth),
        await client.get("/v1/subjects/user-42/consents?policy_key=spotrak", headers=auth),
        await client.post("/v1/dsars", headers=auth, json=dsar()),
    ]
    assert [r.status_code for r in bound] == [201, 201, 201, 200, 200, 200, 201]
    assert solver_calls[0] == after_setup  # none went through FastAPI's solver
    # a domain error raised by the service is answered by the app's handlers, on the hot path
    refused = await client.post("/v1/consent-events", headers=auth, json=event(purpose="nope"))
    assert refused.status_code == 422
    assert refused.json()["code"] == "consent_unknown_purpose"
    assert solver_calls[0] == after_setup

    left = [
        await client.post("/v1/consent-events", headers=auth, json=event(purpose=7)),
        await client.post("/v1/consent-events", headers={**auth, "Sec-GPC": "1" * 9}, json=event()),
        await client.get("/v1/subjects/user-42/consents?as_of=yesterday", headers=auth),
        await client.get("/v1/subjects/user-42/consents"),
        await client.post(
            "/v1/dsars",
            headers={"Authorization": f"Bearer {token_for(tenant, ['dsar:read'])}"},
            json=dsar(),
        ),
    ]
    assert [r.status_code for r in left] == [422, 422, 422, 401, 403]
    assert solver_calls[0] == after_setup + len(left)


async def test_the_write_limit_applies_on_the_fast_path(
    database_url: str, clock: MutableClock, tenant: str
) -> None:
    app = create_app(make_settings(database_url, rate_limit_writes=2), clock=clock)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            auth = auth_headers(tenant)
            clock.pinned = POLICY_AT
            assert (
                await c.post("/v1/policies", headers=auth, json=consent_policy())
            ).status_code == 201
            clock.pinned = NOW
            statuses = [
                (await c.post("/v1/consent-events", headers=auth, json=event())).status_code
                for _ in range(2)
            ]
            r = await c.post("/v1/consent-events", headers=auth, json=event())
    assert statuses == [201, 429]
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1


async def test_hot_requests_are_logged_and_counted_by_their_route_template(
    client: httpx.AsyncClient,
    clock: MutableClock,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = auth_headers(tenant)
    clock.pinned = POLICY_AT
    assert (
        await client.post("/v1/policies", headers=auth, json=consent_policy())
    ).status_code == 201
    clock.pinned = NOW
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="app.access"):
        r = await client.get("/v1/subjects/someone-identifiable/consents", headers=auth)
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    lines = [rec for rec in caplog.records if rec.name == "app.access"]
    assert [
        (rec.__dict__["route"], rec.__dict__["tenant"], rec.__dict__["status"]) for rec in lines
    ] == [("/v1/subjects/{subject_id}/consents", tenant, 200)]
    assert all("someone-identifiable" not in rec.getMessage() for rec in caplog.records)
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/subjects/{subject_id}/consents",status="200"' in metrics


async def test_hot_routes_answer_cors_like_every_route(
    database_url: str, clock: MutableClock, tenant: str
) -> None:
    app = create_app(make_settings(database_url, cors_origins="https://app.example"), clock=clock)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            auth = {**auth_headers(tenant), "Origin": "https://app.example"}
            clock.pinned = POLICY_AT
            assert (
                await c.post("/v1/policies", headers=auth, json=consent_policy())
            ).status_code == 201
            clock.pinned = NOW
            hot = await c.post("/v1/consent-events", headers=auth, json=event())
            declared = await c.get("/v1/policies", headers=auth)
            head = await c.head("/v1/subjects/user-42/consents", headers=auth)
    assert hot.status_code == 201
    assert hot.headers["access-control-allow-origin"] == "https://app.example"
    assert declared.headers["access-control-allow-origin"] == "https://app.example"
    assert head.status_code in (200, 405)  # HEAD: FastAPI's to answer (only GET is hot)


async def _status_when_the_client_leaves(app: Any, scope: dict[str, Any]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(next(m for m in sent if m["type"] == "http.response.start")["status"])


async def test_a_client_that_disconnects_before_its_body_gets_the_same_answer(
    database_url: str, clock: MutableClock, tenant: str
) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/consent-events",
        "raw_path": b"/v1/consent-events",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {token_for(tenant)}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    answers = []
    for fast in (True, False):
        app = create_app(make_settings(database_url, fast_paths=fast), clock=clock)
        async with LifespanManager(app):
            answers.append(await _status_when_the_client_leaves(app, dict(scope)))
    assert answers[0] == answers[1]
    assert answers[0] < 500
