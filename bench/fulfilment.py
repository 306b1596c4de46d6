"""Fulfilment benchmark (issue 15, item 8), on PostgreSQL, in-process (no HTTP server):

1. Moving a ticket to `in_progress` with 10 systems (10 tasks + 10 outbox rows, half of
   them push jobs with their deliveries) against the same transition in a tenant without
   systems, through the ASGI app, in alternating rounds. Target: at most 2x.
2. `claim` latency with 1,000,000 tasks in the table (bulk-loaded with COPY: 100,000 tickets
   x 10 systems, a fifth still pending) and 4 concurrent claimers, each claim its own
   transaction through `FulfilmentService.claim`. Target: p99 < 20 ms.
3. 8 concurrent claimers draining 5,000 pending tasks of one system: every task claimed
   exactly once, counted from the claims' answers and checked in the database.

    .venv/bin/python bench/fulfilment.py [--tasks 1000000] [--claims 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.config import Settings  # noqa: E402
from app.core.security import KeyConfig, Principal, mint_token  # noqa: E402
from app.core.uow import UnitOfWork  # noqa: E402
from app.fulfilment.schemas import TaskClaimIn  # noqa: E402
from app.fulfilment.service import FulfilmentConfig, FulfilmentService  # noqa: E402
from app.main import create_app  # noqa: E402
from app.policies.schemas import SPOTRAK_EXAMPLE  # noqa: E402
from bench.consent_load import admin, log, migrate  # noqa: E402
from bench.dsar import COLUMNS, ticket_rows  # noqa: E402

SECRET = "bench-secret-" + "z" * 40
PG = "postgresql://postgres@127.0.0.1:5432"
TASK_COLUMNS = [
    "id", "tenant", "dsar_id", "system_id", "system_key", "type", "subject", "status",
    "due_at", "explanation", "available_at", "lease_until", "attempts", "retry_exhausted",
    "records_affected", "reason", "data", "proof", "result_digest", "reported_at",
    "overdue_at", "purge_after", "data_purged_at", "created_at", "updated_at", "version",
]  # fmt: skip


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def transition_cost(client: httpx.AsyncClient, rounds: int, per_round: int) -> dict[str, Any]:
    keys = KeyConfig("HS256", SECRET, SECRET, None, None, None)
    scopes = ["dsar:write", "dsar:read", "policies:write", "systems:manage"]
    auth = {
        t: {"Authorization": f"Bearer {mint_token(keys, tenant=t, scopes=scopes)}"}
        for t in ("plain", "fanned")
    }
    for tenant, h in auth.items():
        body = dict(SPOTRAK_EXAMPLE)
        body["key"] = "spotrak"
        r = await client.post("/v1/policies", headers=h, json=body)
        assert r.status_code == 201, r.text
        if tenant == "fanned":
            for i in range(10):
                delivery = (
                    {"mode": "push", "url": f"https://jobs{i}.example.com/hook"}
                    if i % 2
                    else {"mode": "pull"}
                )
                r = await client.post(
                    "/v1/systems",
                    headers=h,
                    json={
                        "key": f"sys-{i}",
                        "name": f"System {i}",
                        "handles": ["access"],
                        "delivery": delivery,
                    },
                )
                assert r.status_code == 201, r.text

    async def one(tenant: str) -> float:
        h = auth[tenant]
        r = await client.post(
            "/v1/dsars",
            headers=h,
            json={"policy_key": "spotrak", "type": "access", "subject": {"id": "s"}},
        )
        tid = r.json()["id"]
        t0 = time.perf_counter()
        r = await client.post(f"/v1/dsars/{tid}/transitions", headers=h, json={"to": "in_progress"})
        elapsed = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200, r.text
        expected = 10 if tenant == "fanned" else 0
        assert r.json()["tasks_summary"]["total"] == expected
        return elapsed

    times: dict[str, list[float]] = {"plain": [], "fanned": []}
    for _ in range(rounds):
        for tenant in ("plain", "fanned"):
            for _ in range(per_round):
                times[tenant].append(await one(tenant))
    med = {t: statistics.median(v) for t, v in times.items()}
    return {
        "plain_ms_p50": round(med["plain"], 2),
        "fanned_ms_p50": round(med["fanned"], 2),
        "plain_ms_p99": round(pct(times["plain"], 99), 2),
        "fanned_ms_p99": round(pct(times["fanned"], 99), 2),
        "ratio_p50": round(med["fanned"] / med["plain"], 2),
        "samples_each": len(times["plain"]),
    }


async def seed_tasks(dsn: str, tasks: int, now: datetime) -> list[uuid.UUID]:
    """100,000 tickets x 10 systems (or tasks/10 tickets); a fifth of the tasks pending."""
    tickets = tasks // 10
    conn = await asyncpg.connect(dsn)
    try:
        systems = []
        for i in range(10):
            sid = uuid.uuid4()
            systems.append(sid)
            await conn.execute(
                "INSERT INTO fulfilment_system (id, tenant, key, name, categories, handles, mode,"
                " subscription_id, task_within, contact_email, active, created_at, updated_at,"
                " version) VALUES ($1, 'bench', $2, $2, '[]', '[\"access\"]', 'pull', NULL,"
                " NULL, NULL, true, $3, $3, 1)",
                sid,
                f"seed-{i}",
                now,
            )
        chunk = 20_000
        subject = json.dumps({"id": "seed", "email": None, "name": None})
        for start in range(0, tickets, chunk):
            rows = ticket_rows(start, min(chunk, tickets - start), now)
            await conn.copy_records_to_table("dsar_ticket", records=rows, columns=COLUMNS)
            task_rows = []
            for row in rows:
                for k, sid in enumerate(systems):
                    pending = (hash((row[0], k)) % 5) == 0
                    task_rows.append((
                        uuid.uuid4(), "bench", row[0], sid, f"seed-{k}", "access", subject,
                        "pending" if pending else "completed", now + timedelta(days=20), "[]",
                        now - timedelta(minutes=1), None, 0 if pending else 1, False,
                        None if pending else 1, None, None, None, None,
                        None if pending else now, None, None, None, now, now, 1,
                    ))  # fmt: skip
            await conn.copy_records_to_table(
                "fulfilment_task", records=task_rows, columns=TASK_COLUMNS
            )
            log(f"  seeded {start + len(rows):,} tickets, {(start + len(rows)) * 10:,} tasks")
        await conn.execute("ANALYZE fulfilment_task")
        await conn.execute("ANALYZE dsar_ticket")
        return systems
    finally:
        await conn.close()


def service(app: Any, session: Any) -> FulfilmentService:
    config = FulfilmentConfig(frozenset(), 1 << 20, 60.0, 3600.0, app.state.secrets)
    # as a request's unit of work (app/core/deps.py): the session, and the bare pool behind it
    return FulfilmentService(UnitOfWork(session, app.state.raw_pool), app.state.clock, config)


async def claim_latency(app: Any, claimers: int, claims: int) -> dict[str, Any]:
    times: list[float] = []
    got = Counter[str]()

    async def claimer(n: int) -> None:
        who = Principal(
            sub="bench", tenant="bench", scopes=frozenset({"tasks:work"}), system=f"seed-{n % 10}"
        )
        for _ in range(claims // claimers):
            async with app.state.sessionmaker() as session:
                t0 = time.perf_counter()
                items = await service(app, session).claim(
                    who, TaskClaimIn(limit=10, lease_seconds=600)
                )
                times.append((time.perf_counter() - t0) * 1000)
                got.update(str(i.id) for i in items)

    await asyncio.gather(*(claimer(n) for n in range(claimers)))
    return {
        "claims": len(times),
        "p50_ms": round(pct(times, 50), 2),
        "p99_ms": round(pct(times, 99), 2),
        "max_ms": round(max(times), 2),
        "tasks_leased": sum(got.values()),
        "leased_twice": sum(1 for c in got.values() if c > 1),
    }


async def drain(app: Any, dsn: str, claimers: int, tasks: int, now: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        sid = uuid.uuid4()
        await conn.execute(
            "INSERT INTO fulfilment_system (id, tenant, key, name, categories, handles, mode,"
            " subscription_id, task_within, contact_email, active, created_at, updated_at,"
            " version) VALUES ($1, 'bench', 'drain', 'drain', '[]', '[\"access\"]', 'pull', NULL,"
            " NULL, NULL, true, $2, $2, 1)",
            sid,
            now,
        )
        ids = await conn.fetch("SELECT id FROM dsar_ticket WHERE tenant = 'bench' LIMIT $1", tasks)
        subject = json.dumps({"id": "seed", "email": None, "name": None})
        rows = [
            (uuid.uuid4(), "bench", r["id"], sid, "drain", "access", subject, "pending",
             None, "[]", now - timedelta(minutes=1), None, 0, False, None, None, None, None,
             None, None, None, None, None, now, now, 1)
            for r in ids
        ]  # fmt: skip
        await conn.copy_records_to_table("fulfilment_task", records=rows, columns=TASK_COLUMNS)
    finally:
        await conn.close()
    seen: list[str] = []
    who = Principal(sub="bench", tenant="bench", scopes=frozenset({"tasks:work"}), system="drain")

    async def claimer() -> None:
        while True:
            async with app.state.sessionmaker() as session:
                items = await service(app, session).claim(
                    who, TaskClaimIn(limit=10, lease_seconds=3600)
                )
            if not items:
                return
            seen.extend(str(i.id) for i in items)

    await asyncio.gather(*(claimer() for _ in range(claimers)))
    conn = await asyncpg.connect(dsn)
    try:
        in_db = await conn.fetchval(
            "SELECT count(*) FROM fulfilment_task WHERE system_key = 'drain'"
            " AND status = 'in_progress'"
        )
    finally:
        await conn.close()
    counts = Counter(seen)
    return {
        "tasks": len(rows),
        "claimers": claimers,
        "claimed": len(seen),
        "distinct": len(counts),
        "doubly_leased": sum(1 for c in counts.values() if c > 1),
        "lost": len(rows) - len(counts),
        "in_progress_in_db": in_db,
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=2_000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=40)
    args = parser.parse_args()
    name = f"bench_fulfilment_{uuid.uuid4().hex[:8]}"
    await admin(f"{PG}/postgres", f'CREATE DATABASE "{name}"')
    sa_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    dsn = f"{PG}/{name}"
    results: dict[str, Any] = {}
    try:
        migrate({**os.environ, "DATABASE_URL": sa_url})
        settings = Settings(
            database_url=sa_url, auth_secret=SECRET, worker_in_process=False, log_level="WARNING"
        )
        app = create_app(settings)
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                log("1. in_progress transition, 10 systems vs none")
                results["transition"] = await transition_cost(client, args.rounds, args.per_round)
                log(json.dumps(results["transition"]))
            now = datetime.now(UTC)
            log(f"2. seeding {args.tasks:,} tasks")
            t0 = time.perf_counter()
            await seed_tasks(dsn, args.tasks, now)
            log(f"  seeded in {time.perf_counter() - t0:.0f} s")
            results["claim"] = await claim_latency(app, args.claimers, args.claims)
            log(json.dumps(results["claim"]))
            log("3. 8 claimers draining 5,000 tasks")
            results["drain"] = await drain(app, dsn, 8, 5_000, now)
            log(json.dumps(results["drain"]))
    finally:
        await admin(f"{PG}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
