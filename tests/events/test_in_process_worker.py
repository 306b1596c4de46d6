"""The embedded default: the worker loop runs inside the server process (SQLite), started
and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio

import httpx
from asgi_lifespan import LifespanManager

from app.main import create_app
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


def test_worker_in_process_defaults_follow_the_database() -> None:
    assert make_settings("sqlite+aiosqlite:///x.db", worker_in_process=None).run_worker_in_process
    pg = make_settings("postgresql+asyncpg://u@h/db", worker_in_process=None)
    assert not pg.run_worker_in_process
