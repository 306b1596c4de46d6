"""Running the pruning phases to the end, and reading what they left (tests share one
database per backend: each test looks at its own tenant only)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.audit.models import AuditEntry
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


async def seal(app: FastAPI, at: datetime, patience: float = 60.0) -> None:
    """Seal until no entry of the database is left unsealed. On PostgreSQL an entry is sealed
    only once every older transaction on the whole server has ended (other test runs share
    it), so keep trying for a while instead of stopping at the first short batch."""
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        async with app.state.sessionmaker() as session:
            if await chain.seal(session, at) == chain.SEAL_BATCH:
                continue
            left = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.digest.is_(None))
            )
        if not left or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.2)


async def pruned_entries(
    client: httpx.AsyncClient, auth: dict[str, str], table: str
) -> list[dict[str, Any]]:
    r = await client.get(
        f"/v1/audit-events?action=data.pruned&object_id={table}&limit=500", headers=auth
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])
