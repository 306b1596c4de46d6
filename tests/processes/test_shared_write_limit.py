"""DESIGN §16: with REDIS_URL the write limit is one limit for every process (a fixed window
per tenant in Redis, app/core/ratelimit.py); Redis unreachable → writes pass, a warning says
so, never a 500. Real Redis on 127.0.0.1:6379 (TEST_REDIS_URL); each test its own keys."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.core.ratelimit import RateLimited, RedisWriteLimiter
from app.main import create_app
from tests.conftest import auth_headers, make_settings, spotrak_body
from tests.live import free_port
from tests.processes.servers import uvicorn

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own (other engineers' runs share the server); its keys
    are deleted afterwards."""
    name = f"prapi-test:{uuid.uuid4().hex[:12]}:"
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError as exc:
        pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc}", pytrace=False)
    try:
        yield name
        keys = [k async for k in client.scan_iter(match=name + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_the_window_counts_in_redis_and_a_refusal_takes_nothing(prefix: str) -> None:
    limiter = RedisWriteLimiter(REDIS_URL, 3, prefix=prefix)
    try:
        for _ in range(3):
            await limiter.check("acme")
        for _ in range(2):
            with pytest.raises(RateLimited) as refused:
                await limiter.check("acme")
            assert 1 <= refused.value.retry_after <= 60
        await limiter.check("other")  # per tenant
        raw = aioredis.Redis.from_url(REDIS_URL)
        try:
            assert await raw.get(prefix + "acme") == b"3"  # refusals took nothing
            assert 0 < await raw.pttl(prefix + "acme") <= 60_000
        finally:
            await raw.aclose()
    finally:
        await limiter.close()


async def test_two_limiters_share_one_count(prefix: str) -> None:
    """Two processes' limiters: the tenant's writes through both add up."""
    a = RedisWriteLimiter(REDIS_URL, 3, prefix=prefix)
    b = RedisWriteLimiter(REDIS_URL, 3, prefix=prefix)
    try:
        await a.check("acme")
        await b.check("acme")
        await a.check("acme")
        with pytest.raises(RateLimited):
            await b.check("acme")
        with pytest.raises(RateLimited):
            await a.check("acme")
    finally:
        await a.close()
        await b.close()


async def test_redis_unreachable_lets_writes_through_with_one_warning(
    database_url: str, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.ratelimit")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(make_settings(database_url, rate_limit_writes=2, redis_url=closed))
    headers = auth_headers(tenant)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for i in range(5):  # over the limit of 2: nothing to count with, nothing refused
                r = await c.post("/v1/policies", headers=headers, json=spotrak_body(f"pol-{i}"))
                assert r.status_code == 201, r.text
    down = [r for r in caplog.records if getattr(r, "event", None) == "rate_limit_redis_down"]
    assert len(down) == 1
    assert down[0].levelno == logging.WARNING


async def test_the_limiter_says_when_redis_answers_again(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.ratelimit")
    limiter = RedisWriteLimiter(f"redis://127.0.0.1:{free_port()}/0", 1, prefix=prefix)
    working = RedisWriteLimiter(REDIS_URL, 1, prefix=prefix)
    try:
        await limiter.check("acme")  # unreachable: passes
        await limiter.check("acme")  # within the retry pause: not even tried
        assert limiter.passed_unchecked == 2
        limiter.script, limiter.skip_until = working.script, 0.0  # Redis is back
        await limiter.check("acme")
        with pytest.raises(RateLimited):
            await limiter.check("acme")
    finally:
        await limiter.close()
        await working.close()
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events == ["rate_limit_redis_down", "rate_limit_redis_back"]


async def test_two_apps_enforce_one_limit(database_url: str, tenant: str, prefix: str) -> None:
    apps = [
        create_app(
            make_settings(
                database_url,
                rate_limit_writes=4,
                redis_url=REDIS_URL,
                rate_limit_redis_prefix=prefix,
            )
        )
        for _ in range(2)
    ]
    headers = auth_headers(tenant)
    async with LifespanManager(apps[0]), LifespanManager(apps[1]):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://t")
            for a in apps
        ]
        statuses = []
        for i in range(6):
            r = await clients[i % 2].post(
                "/v1/policies", headers=headers, json=spotrak_body(f"pol-{i}")
            )
            statuses.append(r.status_code)
        for c in clients:
            await c.aclose()
    assert statuses == [201, 201, 201, 201, 429, 429]


async def test_two_server_processes_share_the_limit(
    pg_url: str, tmp_path: Path, prefix: str
) -> None:
    settings = {"RATE_LIMIT_WRITES": "5", "REDIS_URL": REDIS_URL, "RATE_LIMIT_REDIS_PREFIX": prefix}
    headers = auth_headers(f"t-{uuid.uuid4().hex[:12]}")
    with uvicorn(tmp_path, pg_url, **settings) as one, uvicorn(tmp_path, pg_url, **settings) as two:
        statuses = []
        async with httpx.AsyncClient(timeout=30) as c:
            for i in range(8):
                server = (one, two)[i % 2]
                r = await c.post(
                    f"{server.url}/v1/policies", headers=headers, json=spotrak_body(f"pol-{i}")
                )
                statuses.append(r.status_code)
    assert statuses == [201] * 5 + [429] * 3
