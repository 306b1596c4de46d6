"""Running the pruning phases to the end, and reading what they left (tests share one
database per backend: each test looks at its own tenant only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.core.config import Settings
from app.pruning import jobs


async def prune(
    app: FastAPI,
    at: datetime,
    settings: Settings | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> int:
    """Every pruning phase, batch after batch, until none finds anything at `at`."""
    make = sessionmaker or app.state.sessionmaker
    total = 0
    for phase in jobs.phases(settings or app.state.settings):
        for _ in range(10_000):
            async with make() as session:
                n = await phase.run(session, at)
            total += n
            if n == 0:
                break
    return total


async def seal(app: FastAPI, at: datetime) -> None:
    while True:
        async with app.state.sessionmaker() as session:
            if await chain.seal(session, at) < chain.SEAL_BATCH:
                return


async def pruned_entries(
    client: httpx.AsyncClient, auth: dict[str, str], table: str
) -> list[dict[str, Any]]:
    r = await client.get(
        f"/v1/audit-events?action=data.pruned&object_id={table}&limit=500", headers=auth
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])
