"""Fulfilment benchmark (issue 15, item 8), on PostgreSQL 127.0.0.1:5432, in-process through
the ASGI app (no HTTP server), each part printing PASS or MISS against its target:

1. `transition`: `POST /v1/dsars/{id}/transitions` to `in_progress` in a tenant with 10
   systems (10 tasks + 10 `task.created` events, 5 of them push systems with their jobs and
   deliveries) against the same transition in a tenant without systems, one of each in
   turn (the order swapped every round) so that both see the same load. Target: the median
   with systems at most 2x the median without.
2. `claim`: `POST /v1/tasks/claim` (limit 10) with 1,000,000 tasks in the table (COPY:
   100,000 tickets x 10 systems, a fifth pending) and 4 concurrent claimers: the service
   as it runs (uvicorn, one worker) and wrk with 4 connections, each the worker of its own
   pull system (`--claim-mode loop`: the 4 claimers as coroutines in this process, beside
   the app, as the first version of this script measured: a claim's latency then includes
   the other claimers' Python work). Target: p99 < 20 ms, no task leased twice.
3. `drain`: 8 concurrent claimers draining 5,000 pending tasks of one system: every task
   claimed exactly once, counted from the claims' answers and checked in the database.

    .venv/bin/python bench/fulfilment.py                     # all three, fresh database
    .venv/bin/python bench/fulfilment.py --parts transition  # the transition alone (~1 min)
    .venv/bin/python bench/fulfilment.py --parts claim,drain --database bench_ff --keep
        # seed once, keep it; later runs with --database bench_ff reuse it (leases reset)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
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
from bench.consent_load import admin, log, migrate, start_server, wait_up  # noqa: E402
from bench.dsar import COLUMNS, ticket_rows  # noqa: E402

SECRET = "bench-secret-" + "z" * 40
PG = "postgresql://postgres@127.0.0.1:5432"
CLAIM_PORT = 8115
TASK_COLUMNS = [
    "id", "tenant", "dsar_id", "system_id", "system_key", "type", "subject", "status",
    "due_at", "explanation", "available_at", "lease_until", "attempts", "retry_exhausted",
    "records_affected", "reason", "data", "proof", "result_digest", "reported_at",
    "overdue_at", "purge_after", "data_purged_at", "created_at", "updated_at", "version",
]  # fmt: skip


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def keys() -> KeyConfig:
    return KeyConfig("HS256", SECRET, SECRET, None, None, None)


def settings(sa_url: str) -> Settings:
    return Settings(
        database_url=sa_url, auth_secret=SECRET, worker_in_process=False, log_level="WARNING"
    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def transition_cost(
    client: httpx.AsyncClient, rounds: int, per_round: int, warmup: int
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    scopes = ["dsar:write", "dsar:read", "policies:write", "systems:manage"]
    auth = {
        kind: {
            "Authorization": f"Bearer {mint_token(keys(), tenant=f'{kind}-{run}', scopes=scopes)}"
        }
        for kind in ("plain", "fanned")
    }
    for kind, h in auth.items():
        body = dict(SPOTRAK_EXAMPLE)
        body["key"] = "spotrak"
        r = await client.post("/v1/policies", headers=h, json=body)
        assert r.status_code == 201, r.text
        if kind == "fanned":
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

    async def one(kind: str) -> float:
        h = auth[kind]
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
        expected = 10 if kind == "fanned" else 0
        assert r.json()["tasks_summary"]["total"] == expected
        return elapsed

    for _ in range(warmup):
        await one("plain")
        await one("fanned")
    times: dict[str, list[float]] = {"plain": [], "fanned": []}
    by_round: list[float] = []
    for n in range(rounds):
        order = ("plain", "fanned") if n % 2 == 0 else ("fanned", "plain")
        mine: dict[str, list[float]] = {"plain": [], "fanned": []}
        for _ in range(per_round):
            for kind in order:
                mine[kind].append(await one(kind))
        by_round.append(statistics.median(mine["fanned"]) / statistics.median(mine["plain"]))
        for kind in mine:
            times[kind].extend(mine[kind])
    med = {t: statistics.median(v) for t, v in times.items()}
    return {
        "plain_ms_p50": round(med["plain"], 2),
        "fanned_ms_p50": round(med["fanned"], 2),
        "plain_ms_p99": round(pct(times["plain"], 99), 2),
        "fanned_ms_p99": round(pct(times["fanned"], 99), 2),
        "ratio_p50": round(med["fanned"] / med["plain"], 2),
        "ratio_by_round": [round(x, 2) for x in by_round],
        "samples_each": len(times["plain"]),
    }


def v7(ms: int, seq: int) -> uuid.UUID:
    """A UUIDv7 for the instant `ms`, as app/core/ids.py makes them."""
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=ms << 80 | 0x7 << 76 | (seq & 0xFFF) << 64 | 0b10 << 62 | rand)


async def seed_tasks(dsn: str, tasks: int, now: datetime, shape: str) -> list[uuid.UUID]:
    """100,000 tickets x 10 systems (or tasks/10 tickets); a fifth of the tasks pending, spread
    over the whole history. `ordered` writes what the service writes: tickets arriving one
    after another over 100 days, each ticket's ten tasks created together, ids UUIDv7 of
    their creation instant, a pending task claimable since its creation. `random` is this
    script's first seed: random UUIDv4 ids and one instant for all 1,000,000 tasks (which
    the service never writes: every claimed row then sits on its own page of each index)."""
    tickets = tasks // 10
    span = timedelta(days=100)
    id_at = COLUMNS.index("id")
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
                now - span,
            )
        chunk = 20_000
        subject = json.dumps({"id": "seed", "email": None, "name": None})
        for start in range(0, tickets, chunk):
            rows = ticket_rows(start, min(chunk, tickets - start), now)
            task_rows = []
            for n, row in enumerate(rows):
                if shape == "ordered":
                    at = now - span + span * (start + n) / tickets
                    ms = int(at.timestamp() * 1000)
                    row = (v7(ms, 0), *row[id_at + 1 :])
                    rows[n] = row
                    ids = [v7(ms, 1 + k) for k in range(len(systems))]
                else:
                    at = now - timedelta(minutes=1)
                    ids = [uuid.uuid4() for _ in systems]
                for k, sid in enumerate(systems):
                    pending = (hash((row[0], k)) % 5) == 0
                    task_rows.append((
                        ids[k], "bench", row[0], sid, f"seed-{k}", "access", subject,
                        "pending" if pending else "completed", now + timedelta(days=20), "[]",
                        at, None, 0 if pending else 1, False,
                        None if pending else 1, None, None, None, None,
                        None if pending else now, None, None, None, at, at, 1,
                    ))  # fmt: skip
            await conn.copy_records_to_table("dsar_ticket", records=rows, columns=COLUMNS)
            await conn.copy_records_to_table(
                "fulfilment_task", records=task_rows, columns=TASK_COLUMNS
            )
            log(f"  seeded {start + len(rows):,} tickets, {(start + len(rows)) * 10:,} tasks")
        await conn.execute("ANALYZE dsar_ticket")
        return systems
    finally:
        await conn.close()


def service(app: Any, session: Any) -> FulfilmentService:
    config = FulfilmentConfig(frozenset(), 1 << 20, 60.0, 3600.0, app.state.secrets)
    # as a request's unit of work (app/core/deps.py): the session, and the bare pool behind it
    return FulfilmentService(UnitOfWork(session, app.state.raw_pool), app.state.clock, config)


async def reset_leases(dsn: str) -> None:
    """The seeded tasks an earlier run leased (a reused database) are pending again, and the
    table is vacuumed (visibility map, statistics) so that every run starts from the same
    state."""
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.execute(
            "UPDATE fulfilment_task SET status = 'pending', lease_until = NULL,"
            " available_at = created_at, version = 1 WHERE tenant = 'bench'"
            " AND status = 'in_progress' AND system_key LIKE 'seed-%'"
        )
        log(f"  leases reset: {n}")
        await conn.execute("VACUUM ANALYZE fulfilment_task")
    finally:
        await conn.close()


async def claimer(
    app: Any, n: int, claims: int, warmup: int, start_at: float, via: str
) -> tuple[list[float], list[str]]:
    """One pull system's worker: `warmup` claims (not counted), then `claims` timed ones
    from `start_at` (so that the claimers run together)."""
    system = f"seed-{n % 10}"
    token = mint_token(keys(), tenant="bench", scopes=["tasks:work"], system=system)
    headers = {"Authorization": f"Bearer {token}"}
    who = Principal(sub="bench", tenant="bench", scopes=frozenset({"tasks:work"}), system=system)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def one() -> list[str]:
            if via == "service":
                async with app.state.sessionmaker() as session:
                    items = await service(app, session).claim(
                        who, TaskClaimIn(limit=10, lease_seconds=600)
                    )
                return [str(i.id) for i in items]
            r = await client.post(
                "/v1/tasks/claim", headers=headers, json={"limit": 10, "lease_seconds": 600}
            )
            assert r.status_code == 200, r.text
            return [i["id"] for i in r.json()["items"]]

        got: list[str] = []
        for _ in range(warmup):
            got.extend(await one())
        await asyncio.sleep(max(0.0, start_at - time.time()))
        times: list[float] = []
        for _ in range(claims):
            t0 = time.perf_counter()
            ids = await one()
            times.append((time.perf_counter() - t0) * 1000)
            got.extend(ids)
    return times, got


CLAIM_LUA = r"""
local tokens = {}
for t in string.gmatch(os.getenv("BENCH_TOKENS"), "[^,]+") do table.insert(tokens, t) end
local n = 0
setup = function(thread)
  n = n + 1
  thread:set("token", tokens[(n - 1) % #tokens + 1])
end
init = function()
  wrk.method = "POST"
  wrk.path = "/v1/tasks/claim"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.body = '{"limit":10,"lease_seconds":600}'
end
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


async def claim_server(sa_url: str, dsn: str, claimers: int, duration: int) -> dict[str, Any]:
    """The service as it runs (uvicorn, one worker, the worker loop off) and `claimers` wrk
    connections, one thread each, each the worker of its own pull system: a closed loop, so
    exactly `claimers` claims are in flight. Doubly leased tasks are counted in the database:
    every claim bumps `version` (1 after the reset), so a task leased twice shows 3."""
    env = {
        **os.environ,
        "DATABASE_URL": sa_url,
        "AUTH_SECRET": SECRET,
        "APP_ENV": "dev",
        "WORKER_IN_PROCESS": "false",
    }
    tokens = ",".join(
        mint_token(keys(), tenant="bench", scopes=["tasks:work"], system=f"seed-{n % 10}")
        for n in range(claimers)
    )
    with tempfile.TemporaryDirectory() as logdir:
        server = start_server("app.main:app", CLAIM_PORT, env, Path(logdir))
        try:
            url = f"http://127.0.0.1:{CLAIM_PORT}"
            await wait_up(f"{url}/healthz")
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
                fh.write(CLAIM_LUA)
                script = fh.name
            try:
                command = ["wrk", f"-t{claimers}", f"-c{claimers}", "--timeout", "10s", "-s"]
                for seconds in (3, duration):  # a warm-up run (pools, prepared statements)
                    proc = await asyncio.to_thread(
                        subprocess.run,
                        [*command, script, f"-d{seconds}s", url],
                        env={**os.environ, "BENCH_TOKENS": tokens},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
            finally:
                os.unlink(script)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    conn = await asyncpg.connect(dsn)
    try:
        leased, twice = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE version >= 2), count(*) FILTER (WHERE version > 2)"
            " FROM fulfilment_task WHERE tenant = 'bench' AND system_key LIKE 'seed-%'"
            " AND status = 'in_progress'"
        )
    finally:
        await conn.close()
    return {
        "mode": "server",
        "via": "http (uvicorn + wrk)",
        "claims": data["requests"],
        "claims_per_s": round(data["requests"] / (data["duration_us"] / 1e6)),
        "errors": data["errors"],
        "p50_ms": round(data["p50_us"] / 1000, 2),
        "p90_ms": round(data["p90_us"] / 1000, 2),
        "p99_ms": round(data["p99_us"] / 1000, 2),
        "max_ms": round(data["max_us"] / 1000, 2),
        "tasks_leased": leased,
        "leased_twice": twice,
    }


async def claim_latency(app: Any, claimers: int, claims: int, via: str) -> dict[str, Any]:
    """The claimers as coroutines in this process's event loop, beside the app."""
    start_at = time.time() + 1.0
    results = await asyncio.gather(
        *(claimer(app, n, claims // claimers, 5, start_at, via) for n in range(claimers))
    )
    times = [t for ts, _ in results for t in ts]
    got = Counter(i for _, ids in results for i in ids)
    return {
        "mode": "loop",
        "via": via,
        "claims": len(times),
        "errors": 0,
        "p50_ms": round(pct(times, 50), 2),
        "p90_ms": round(pct(times, 90), 2),
        "p99_ms": round(pct(times, 99), 2),
        "max_ms": round(max(times), 2),
        "tasks_leased": sum(got.values()),
        "leased_twice": sum(1 for c in got.values() if c > 1),
    }


async def drain(app: Any, dsn: str, claimers: int, tasks: int, now: datetime) -> dict[str, Any]:
    key = f"drain-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(dsn)
    try:
        sid = uuid.uuid4()
        await conn.execute(
            "INSERT INTO fulfilment_system (id, tenant, key, name, categories, handles, mode,"
            " subscription_id, task_within, contact_email, active, created_at, updated_at,"
            " version) VALUES ($1, 'bench', $2, $2, '[]', '[\"access\"]', 'pull', NULL,"
            " NULL, NULL, true, $3, $3, 1)",
            sid,
            key,
            now,
        )
        ids = await conn.fetch("SELECT id FROM dsar_ticket WHERE tenant = 'bench' LIMIT $1", tasks)
        subject = json.dumps({"id": "seed", "email": None, "name": None})
        rows = [
            (uuid.uuid4(), "bench", r["id"], sid, key, "access", subject, "pending",
             None, "[]", now - timedelta(minutes=1), None, 0, False, None, None, None, None,
             None, None, None, None, None, now, now, 1)
            for r in ids
        ]  # fmt: skip
        await conn.copy_records_to_table("fulfilment_task", records=rows, columns=TASK_COLUMNS)
    finally:
        await conn.close()
    seen: list[str] = []
    who = Principal(sub="bench", tenant="bench", scopes=frozenset({"tasks:work"}), system=key)

    async def one_claimer() -> None:
        while True:
            async with app.state.sessionmaker() as session:
                items = await service(app, session).claim(
                    who, TaskClaimIn(limit=10, lease_seconds=3600)
                )
            if not items:
                return
            seen.extend(str(i.id) for i in items)

    await asyncio.gather(*(one_claimer() for _ in range(claimers)))
    conn = await asyncpg.connect(dsn)
    try:
        in_db = await conn.fetchval(
            "SELECT count(*) FROM fulfilment_task WHERE system_key = $1 AND status = 'in_progress'",
            key,
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


def verdicts(results: dict[str, Any]) -> list[str]:
    out = []
    if "transition" in results:
        r = results["transition"]
        ok = r["ratio_p50"] <= 2.0
        out.append(
            f"transition: with 10 systems / without = {r['ratio_p50']:.2f}x "
            f"({r['fanned_ms_p50']} / {r['plain_ms_p50']} ms, rounds {r['ratio_by_round']}); "
            f"target <= 2x: {'PASS' if ok else 'MISS'}"
        )
    if "claim" in results:
        r = results["claim"]
        ok = r["p99_ms"] < 20.0 and r["leased_twice"] == 0 and r["errors"] == 0
        out.append(
            f"claim: p99 {r['p99_ms']} ms (p50 {r['p50_ms']}, max {r['max_ms']}; "
            f"{r['claims']} claims, {r['mode']}, via {r['via']}), {r['errors']} errors, "
            f"{r['leased_twice']} leased twice; target p99 < 20 ms: {'PASS' if ok else 'MISS'}"
        )
    if "drain" in results:
        r = results["drain"]
        ok = r["doubly_leased"] == 0 and r["lost"] == 0 and r["in_progress_in_db"] == r["tasks"]
        out.append(
            f"drain: {r['claimed']} claimed of {r['tasks']}, {r['doubly_leased']} doubly leased, "
            f"{r['lost']} lost, {r['in_progress_in_db']} in_progress in the database; "
            f"target 0 and 0: {'PASS' if ok else 'MISS'}"
        )
    return out


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="transition,claim,drain")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=2_000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--claim-mode", choices=("server", "loop"), default="server")
    parser.add_argument(
        "--claim-via",
        choices=("http", "service"),
        default="service",
        help="--claim-mode loop: through the ASGI app or the service call",
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk (server)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", choices=("ordered", "random"), default="ordered")
    parser.add_argument("--database", help="reuse this database (created and seeded if absent)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    name = args.database or f"bench_fulfilment_{uuid.uuid4().hex[:8]}"
    sa_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    dsn = f"{PG}/{name}"
    admin_conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        exists = await admin_conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await admin_conn.close()
    if not exists:
        await admin(f"{PG}/postgres", f'CREATE DATABASE "{name}"')
    results: dict[str, Any] = {"load_average_start": load()}
    log(f"database {name}; load average {load()}")
    try:
        migrate({**os.environ, "DATABASE_URL": sa_url})
        app = create_app(settings(sa_url))
        async with LifespanManager(app):
            if "transition" in parts:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                    log("1. in_progress transition, 10 systems vs none")
                    results["transition"] = await transition_cost(
                        client, args.rounds, args.per_round, args.warmup
                    )
                    log(json.dumps(results["transition"]))
            now = datetime.now(UTC)
            if parts & {"claim", "drain"}:
                conn = await asyncpg.connect(dsn)
                try:
                    seeded = await conn.fetchval(
                        "SELECT count(*) FROM fulfilment_system WHERE tenant = 'bench'"
                    )
                finally:
                    await conn.close()
                if not seeded:
                    log(f"2. seeding {args.tasks:,} tasks ({args.seed})")
                    t0 = time.perf_counter()
                    await seed_tasks(dsn, args.tasks, now, args.seed)
                    log(f"  seeded in {time.perf_counter() - t0:.0f} s")
                await reset_leases(dsn)
            if "claim" in parts:
                log(f"2. claim, {args.claimers} claimers ({args.claim_mode})")
                if args.claim_mode == "server":
                    results["claim"] = await claim_server(sa_url, dsn, args.claimers, args.duration)
                else:
                    results["claim"] = await claim_latency(
                        app, args.claimers, args.claims, args.claim_via
                    )
                log(json.dumps(results["claim"]))
            if "drain" in parts:
                log("3. 8 claimers draining 5,000 tasks")
                results["drain"] = await drain(app, dsn, 8, 5_000, now)
                log(json.dumps(results["drain"]))
    finally:
        if not args.keep:
            await admin(f"{PG}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["load_average_end"] = load()
    print(json.dumps(results, indent=2))
    for line in verdicts(results):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
