"""Running the pruning phases to the end, and reading what they left (tests share one
database per backend: each test looks at its own tenant only); EXPLAINing a batch's
statements to show that none reads a hot table whole."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import chain
from app.audit.models import AuditEntry
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.pruning import jobs

MICRO = timedelta(microseconds=1)
HOT = (
    "idempotency_record",
    "outbox_event",
    "webhook_delivery",
    "webhook_attempt",
    "fulfilment_task",
    "dsar_ticket",
    "dsar_event",
    "breach_incident",
    "breach_notification",
    "breach_event",
    "reminder_sent",
    "retention_sweep",
    "retention_event",
    "retention_expiry",
)


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


@asynccontextmanager
async def explained(
    database_url: str,
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], list[str]]]:
    """A sessionmaker whose every SELECT/UPDATE/DELETE is EXPLAINed first (PostgreSQL: with
    sequential scans disabled, so the plan shows whether an index path exists at all — on a
    test-sized table the planner would otherwise rightly prefer a scan; SQLite: EXPLAIN
    QUERY PLAN)."""
    engine = create_engine(database_url)
    plans: list[str] = []
    is_pg = database_url.startswith("postgresql")

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _explain(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if many or head not in ("SELECT", "UPDATE", "DELETE") or "SET rowid = rowid" in statement:
            return  # (SQLite's write lock: an UPDATE of no row)
        if is_pg:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).fetchall()
            plans.append("\n".join(str(r[0]) for r in rows))
        else:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            plans.append("\n".join(str(r[-1]) for r in rows))

    try:
        yield create_sessionmaker(engine), plans
    finally:
        await engine.dispose()


def assert_no_scan(plans: list[str], *indexes: str) -> None:
    """No plan reads a hot table whole; on PostgreSQL the batch's own index serves it (SQLite,
    without statistics, may pick another index of the table: still a search, not a scan)."""
    text = "\n".join(plans)
    assert "Index" in text or "SEARCH" in text, plans  # the batch's statements were explained
    for table in HOT:
        assert not re.search(rf"Seq Scan on {table}\b", text), text
        assert not re.search(rf"^SCAN {table}$", text, re.MULTILINE), text
    if "Index" in text:  # PostgreSQL's plans
        for index in indexes:
            assert index in text, (index, plans)


def assert_reads(plans: list[str], table: str, index: str) -> None:
    """The batch's own index serves it on SQLite too (`assert_no_scan` lets SQLite's planner,
    without statistics, take another index of the table): it is named in a plan, and no plan
    reads `table` through a range of another index and then sorts what it found (every row of
    the kind, to keep the oldest few)."""
    assert index in "\n".join(plans), (index, plans)
    for plan in plans:
        if re.search(rf"^SEARCH {table} USING", plan, re.MULTILINE):
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
