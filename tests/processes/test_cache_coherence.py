"""DESIGN §16: a policy created or published through one process is in force in every other
at once — PostgreSQL LISTEN/NOTIFY drops the other processes' cached versions; their TTL is
only the fallback of a process whose listener is down."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.core.listen import APPLICATION_NAME, Listener, asyncpg_dsn
from app.main import create_app
from app.policies import cache
from tests.conftest import auth_headers, make_settings, spotrak_body
from tests.live import free_port
from tests.processes.servers import uvicorn

AT = datetime(2026, 1, 1, tzinfo=UTC)
PURPOSE = {"key": "newsletter", "lawful_basis": "consent", "default": "denied"}


def v2_with_new_purpose(key: str) -> dict[str, Any]:
    """The policy again with one more purpose, in force at once (no change notice)."""
    body = spotrak_body(key)
    body["consent_purposes"] = [*body["consent_purposes"], PURPOSE]
    body["change_notice"] = {"value": 0, "unit": "days"}
    return body


def consent(key: str, purpose: str, subject: str = "user-1") -> dict[str, Any]:
    return {"policy_key": key, "subject_id": subject, "purpose": purpose, "action": "granted"}


async def purposes_read(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    r = await client.get("/v1/subjects/user-1/consents", headers=headers)
    assert r.status_code == 200, r.text
    return sorted(c["purpose"] for c in r.json()["consents"])


async def check_publish_seen_elsewhere(a: str, b: str) -> None:
    """Prime the caches of `b`, publish through `a`, and at once through `b`: a consent event
    for an old purpose records the new version, the current-state read lists the new purpose
    (both served from `b`'s caches, which only a notification can have dropped), and an event
    for the new purpose is accepted."""
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    headers = auth_headers(tenant)
    key = "spotrak"
    async with (
        httpx.AsyncClient(base_url=a, timeout=30) as ca,
        httpx.AsyncClient(base_url=b, timeout=30) as cb,
    ):
        r = await ca.post("/v1/policies", headers=headers, json=spotrak_body(key))
        assert r.status_code == 201, r.text
        # b caches version 1 and the tenant's purposes
        r = await cb.post(
            "/v1/consent-events", headers=headers, json=consent(key, "audience_cookies")
        )
        assert r.status_code == 201, r.text
        assert r.json()["policy_version"] == 1
        assert await purposes_read(cb, headers) == ["audience_cookies"]
        r = await cb.post("/v1/consent-events", headers=headers, json=consent(key, "newsletter"))
        assert r.status_code == 422, r.text

        r = await ca.put(f"/v1/policies/{key}", headers=headers, json=v2_with_new_purpose(key))
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 2

        # no sleep: b answers from its caches, dropped by a's notification
        r = await cb.post(
            "/v1/consent-events", headers=headers, json=consent(key, "audience_cookies")
        )
        assert r.status_code == 201, r.text
        assert r.json()["policy_version"] == 2
        assert await purposes_read(cb, headers) == ["audience_cookies", "newsletter"]
        r = await cb.post("/v1/consent-events", headers=headers, json=consent(key, "newsletter"))
        assert r.status_code == 201, r.text
        assert r.json()["policy_version"] == 2
        r = await cb.get(f"/v1/policies/{key}", headers=headers)
        assert r.json()["version"] == 2


async def test_a_version_published_through_one_process_governs_in_another_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    with uvicorn(tmp_path, pg_url) as one, uvicorn(tmp_path, pg_url) as two:
        await check_publish_seen_elsewhere(one.url, two.url)
        await check_publish_seen_elsewhere(two.url, one.url)

        # both listeners killed: each process logs it, reconnects, and hears again
        dsn = asyncpg_dsn(pg_url)
        assert dsn is not None
        admin = await asyncpg.connect(dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )
        finally:
            await admin.close()
        assert killed == 2
        for server in (one, two):
            await _wait(lambda s=server: s.log_lines("cache_listener_up") == 2, "reconnection")
            assert server.log_lines("cache_listener_down") == 1
        await check_publish_seen_elsewhere(one.url, two.url)


async def test_uvicorn_workers_share_what_is_published(pg_url: str, tmp_path: Path) -> None:
    """`--workers 2`: connections land on either worker. Every read after the publication,
    each on a new connection, sees it — whichever worker cached the old version."""
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    headers = auth_headers(tenant)
    with uvicorn(tmp_path, pg_url, workers=2) as server:

        async def fresh(method: str, path: str, **kw: Any) -> httpx.Response:
            # a new connection each time: the kernel hands it to either worker
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
                return await c.request(method, path, headers=headers, **kw)

        r = await fresh("POST", "/v1/policies", json=spotrak_body("spotrak"))
        assert r.status_code == 201, r.text
        for i in range(16):  # both workers cache version 1
            r = await fresh(
                "POST", "/v1/consent-events", json=consent("spotrak", "audience_cookies", f"s{i}")
            )
            assert r.status_code == 201, r.text
            assert r.json()["policy_version"] == 1
        r = await fresh("PUT", "/v1/policies/spotrak", json=v2_with_new_purpose("spotrak"))
        assert r.status_code == 201, r.text
        for i in range(16):
            r = await fresh(
                "POST", "/v1/consent-events", json=consent("spotrak", "audience_cookies", f"s{i}")
            )
            assert r.status_code == 201, r.text
            assert r.json()["policy_version"] == 2, f"request {i} served from a stale cache"
            r = await fresh(
                "POST", "/v1/consent-events", json=consent("spotrak", "newsletter", f"s{i}")
            )
            assert r.status_code == 201, r.text


async def _wait(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_the_listener_reconnects_after_its_backend_is_killed(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_terminate_backend on the listener: it says so in the log, the caches fall back to
    their TTL (and drop what they hold when it is back: a notification may have been lost),
    it reconnects by itself, and notifications are heard again."""
    app = create_app(make_settings(pg_url))
    dsn = asyncpg_dsn(pg_url)
    assert dsn is not None
    caplog.set_level(logging.INFO, logger="app.listen")
    async with LifespanManager(app):
        listener = app.state.listener
        await _wait(lambda: listener.live, "the listener")
        assert cache.VERSIONS.listening >= 1
        snapshot = cache.VersionSnapshot("p", 1, AT, AT, {})
        cache.VERSIONS.put(("acme", "p"), [snapshot])

        admin = await asyncpg.connect(dsn)
        try:
            pid = listener.backend_pid
            assert pid is not None
            name = await admin.fetchval(
                "SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid
            )
            assert name == APPLICATION_NAME
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await _wait(
                lambda: any(
                    getattr(r, "event", None) == "cache_listener_down" for r in caplog.records
                ),
                "the down log line",
            )
            gauge = app.state.metrics.cache_listener_up
            await _wait(lambda: listener.live and listener.connects == 2, "the reconnection")
            assert gauge._value.get() == 1
            assert listener.backend_pid != pid
            up = [r for r in caplog.records if getattr(r, "event", None) == "cache_listener_up"]
            assert getattr(up[-1], "reconnected", None) is True
            assert cache.VERSIONS.get(("acme", "p")) is None  # dropped on reconnecting

            # heard again: another connection's NOTIFY drops the entry
            cache.VERSIONS.put(("acme", "p"), [snapshot])
            await admin.execute(
                "SELECT pg_notify($1, $2)", cache.CHANNEL, cache.announcement("acme", "p")
            )
            await _wait(lambda: cache.VERSIONS.get(("acme", "p")) is None, "the notification")
        finally:
            await admin.close()
    assert not listener.live


async def test_a_listener_that_cannot_connect_logs_it_and_keeps_trying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DATABASE_LISTEN_URL pointing nowhere: the service serves (on its TTL), logs once that
    the listener is down, and keeps retrying."""
    caplog.set_level(logging.INFO, logger="app.listen")
    calls: list[str] = []
    listener = Listener(
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
        {cache.CHANNEL: lambda p: calls.append(p)},
        on_up=lambda _r: calls.append("up"),
        on_down=lambda: calls.append("down"),
        max_backoff=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 5)
    down = [r for r in caplog.records if getattr(r, "event", None) == "cache_listener_down"]
    assert len(down) == 1  # once per outage, not once per attempt
    assert calls == []  # never up, so never down either


async def test_publish_answers_once_its_own_listener_heard_the_change(pg_url: str) -> None:
    """PostgreSQL signals every listening session at commit: when the publishing process's
    own listener has heard it, so have the others' (modulo their scheduling). The answer
    waits for that, so a client reading elsewhere next does not race the notification."""
    app = create_app(make_settings(pg_url))
    headers = auth_headers(f"t-{uuid.uuid4().hex[:12]}")
    async with LifespanManager(app):
        await _wait(lambda: app.state.listener.live, "the listener")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            epoch = cache.VERSIONS.stamp()
            r = await c.post("/v1/policies", headers=headers, json=spotrak_body())
            assert r.status_code == 201, r.text
            assert cache.VERSIONS.stamp() >= epoch + 2  # its own invalidation, then heard
            epoch = cache.VERSIONS.stamp()
            r = await c.put("/v1/policies/spotrak", headers=headers, json=spotrak_body())
            assert r.status_code == 201, r.text
            assert cache.VERSIONS.stamp() >= epoch + 2
    assert cache._ECHOES == {}
