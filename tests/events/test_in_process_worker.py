"""The embedded default: the worker loop runs inside the server process (SQLite), started
and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from asgi_lifespan import LifespanManager

from app.core.secretbox import Keyring
from app.main import create_app
from app.webhooks.models import WebhookSubscription
from app.webhooks.signing import secret_context
from tests.conftest import make_settings
from tests.events.helpers import Receiver, subscribe


async def test_in_process_worker_delivers_a_ping(database_url: str, auth: dict[str, str]) -> None:
    # Default on for SQLite only; switched on explicitly here, so both databases run it.
    settings = make_settings(database_url, worker_in_process=True, worker_interval_seconds=0.05)
    app = create_app(settings)
    async with LifespanManager(app), Receiver() as rx:
        assert app.state.worker_task is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            hook = await subscribe(client, auth, rx.url, ["dsar.created"])
            r = await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=auth)
            assert r.status_code == 200
            for _ in range(100):
                if rx.requests:
                    break
                await asyncio.sleep(0.05)
            assert len(rx.requests) == 1
            assert rx.requests[0].verifies(hook["secret"])
            await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
    assert app.state.worker_task.done()


async def test_in_process_worker_counts_deliveries_held_back_by_an_unreadable_secret(
    database_url: str, auth: dict[str, str]
) -> None:
    """GET /metrics says when no configured key opens a signing secret (the worker also logs
    an error naming SECRETS_KEY_OLD): webhook_secret_unreadable_total."""
    settings = make_settings(database_url, worker_in_process=True, worker_interval_seconds=0.05)
    app = create_app(settings)
    async with LifespanManager(app), Receiver() as rx:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            hook = await subscribe(client, auth, rx.url, ["dsar.created"])
            # sealed under a key this process does not have (SECRETS_KEY changed, no _OLD)
            async with app.state.sessionmaker() as session:
                sub = await session.get(WebhookSubscription, uuid.UUID(hook["id"]))
                assert sub is not None
                other = Keyring("the-key-before-the-last-change-" + "o" * 30)
                sub.secret_ciphertext = other.seal(hook["secret"], secret_context(sub.id))
                await session.commit()
            r = await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=auth)
            assert r.status_code == 200
            held = 0.0
            for _ in range(100):
                metrics = (await client.get("/metrics")).text
                held = _sample(metrics, "webhook_secret_unreadable_total")
                if held >= 1:
                    break
                await asyncio.sleep(0.05)
            assert held >= 1
            assert rx.requests == []
            r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
            [d] = r.json()["items"]
            assert (d["status"], d["attempt_count"]) == ("pending", 0)
            await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_worker_in_process_defaults_follow_the_database() -> None:
    assert make_settings("sqlite+aiosqlite:///x.db", worker_in_process=None).run_worker_in_process
    pg = make_settings("postgresql+asyncpg://u@h/db", worker_in_process=None)
    assert not pg.run_worker_in_process
