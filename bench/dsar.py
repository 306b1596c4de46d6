"""DSAR benchmark (issue 4, item 8): create throughput against the consent reference write, and
overdue-list latency at 10k, 100k and 1M tickets in one tenant, on PostgreSQL.

1. Starts the product (`uvicorn app.main:app`, one worker) and the minimal reference
   (`bench/consent_reference.py`: FastAPI + asyncpg, insert + upsert, nothing else) on one fresh
   database, and drives `POST /v1/dsars` and the reference write with wrk in alternating
   rounds. Prints req/s, p50/p99 and the ratio (target ≥ 0.5).
2. Bulk-loads tickets with COPY (a realistic mix: a third overdue, half open and on track, the
   rest closed) up to each size, ANALYZEs, then times `GET /v1/dsars?sla=overdue&limit=50`
   (first page and a deep cursor page) through the running product, and prints the plan of the
   list query (it must be an index scan). Target: p99 < 50 ms at 1,000,000 tickets.

    apt-get install -y wrk
    .venv/bin/python bench/dsar.py [--sizes 10000,100000,1000000] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.security import KeyConfig, mint_token  # noqa: E402
from app.policies.schemas import SPOTRAK_EXAMPLE  # noqa: E402
from bench.consent_load import (  # noqa: E402
    WRITE_LUA,
    admin,
    best_of_rounds,
    fmt,
    log,
    migrate,
    start_server,
    wait_up,
)

SECRET = "bench-secret-" + "y" * 40
TENANT = "bench"
PRODUCT_PORT = 8111
REFERENCE_PORT = 8112

CREATE_LUA = r"""
local path = os.getenv("BENCH_PATH")
local token = os.getenv("BENCH_TOKEN") or ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
local types = {"access", "erasure", "rectification", "portability"}
init = function() math.randomseed(os.time()) end
request = function()
  local body = string.format(
    '{"policy_key":"bench","type":"%s","subject":{"id":"s-%d"},"channel":"web"}',
    types[math.random(4)], math.random(1000000))
  return wrk.format(nil, path, nil, body)
end
"""

COLUMNS = [
    "id",
    "tenant",
    "policy_key",
    "policy_version",
    "type",
    "requester",
    "status",
    "is_open",
    "subject_id",
    "subject_email",
    "subject_name",
    "channel",
    "description",
    "received_at",
    "clock_started_at",
    "verified_at",
    "acknowledge_by",
    "due_at",
    "due_date",
    "due_sort",
    "first_due_at",
    "provisional",
    "extension_allowed",
    "extended",
    "extension_reason",
    "extension_notice_by",
    "explanation",
    "status_reason",
    "closed_at",
    "created_at",
    "updated_at",
    "version",
]


def ticket_rows(start: int, count: int, now: datetime) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(start, start + count):
        kind = i % 6  # 0,1 overdue · 2,3,4 open on track · 5 closed
        received = now - timedelta(days=40 if kind < 2 else 5, minutes=i % 1440)
        due = received + timedelta(days=30)
        is_open = kind != 5
        status = "in_progress" if is_open else "completed"
        rows.append(
            (
                uuid.uuid4(),
                TENANT,
                "bench",
                1,
                "access",
                "subject",
                status,
                is_open,
                f"seed-{i}",
                None,
                None,
                "email",
                None,
                received,
                received,
                None,
                received.date() + timedelta(days=7),
                due,
                due.date(),
                due,
                due,
                False,
                True,
                False,
                None,
                None,
                "[]",
                None,
                None if is_open else received + timedelta(days=10),
                received,
                received,
                1,
            )
        )
    return rows


async def seed_to(dsn: str, have: int, want: int, now: datetime) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        chunk = 50_000
        for start in range(have, want, chunk):
            rows = ticket_rows(start, min(chunk, want - start), now)
            await conn.copy_records_to_table("dsar_ticket", records=rows, columns=COLUMNS)
        await conn.execute("ANALYZE dsar_ticket")
    finally:
        await conn.close()


async def plan(dsn: str, now: datetime) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT * FROM dsar_ticket "
            "WHERE tenant = $1 AND is_open IS true AND due_sort < $2 "
            "ORDER BY due_sort, id LIMIT 51",
            TENANT,
            now,
        )
        return "\n".join("    " + r[0] for r in rows)
    finally:
        await conn.close()


async def list_latency(base: str, token: str, samples: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    first: list[float] = []
    deep: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        cursor = None
        for _ in range(20):  # walk some pages to get a deep cursor
            r = await client.get(
                "/v1/dsars",
                params={"sla": "overdue", "limit": 500, **({"cursor": cursor} if cursor else {})},
            )
            r.raise_for_status()
            cursor = r.json()["next_cursor"] or cursor
        for i in range(samples):
            params: dict[str, Any] = {"sla": "overdue", "limit": 50}
            target = first
            if i % 2 and cursor:
                params["cursor"] = cursor
                target = deep
            t0 = time.perf_counter()
            r = await client.get("/v1/dsars", params=params)
            target.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            assert len(r.json()["items"]) == 50

    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]

    return {
        "first_p50": q(first, 50),
        "first_p99": q(first, 99),
        "deep_p50": q(deep, 50) if deep else float("nan"),
        "deep_p99": q(deep, 99) if deep else float("nan"),
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=400, help="list requests per size")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]

    name = f"prapi_bench_dsar_{uuid.uuid4().hex[:8]}"
    dsn = f"{args.pg_admin.rsplit('/', 1)[0]}/{name}"
    sa_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    await admin(args.pg_admin, f'CREATE DATABASE "{name}"')
    procs: list[subprocess.Popen[bytes]] = []
    logdir = Path(tempfile.mkdtemp(prefix="dsar-bench-"))
    try:
        env = {**os.environ, "DATABASE_URL": sa_url, "AUTH_SECRET": SECRET, "APP_ENV": "dev"}
        await asyncio.to_thread(migrate, env)
        log(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        procs.append(start_server("app.main:app", PRODUCT_PORT, env, logdir))
        procs.append(
            start_server(
                "bench.consent_reference:app",
                REFERENCE_PORT,
                {**env, "REFERENCE_TENANT": "bench-reference"},
                logdir,
            )
        )
        product = f"http://127.0.0.1:{PRODUCT_PORT}"
        reference = f"http://127.0.0.1:{REFERENCE_PORT}"
        await wait_up(product + "/healthz")
        await wait_up(reference + "/openapi.json")
        keys = KeyConfig("HS256", SECRET, SECRET, None, None, None)
        token = mint_token(
            keys,
            tenant=TENANT,
            scopes=["policies:write", "dsar:read", "dsar:write"],
            ttl_seconds=24 * 3600,
            now=time.time() - 120,
        )
        async with httpx.AsyncClient(base_url=product) as client:
            r = await client.post(
                "/v1/policies",
                json=dict(SPOTRAK_EXAMPLE, key="bench"),
                headers={"Authorization": f"Bearer {token}"},
            )
            r.raise_for_status()
        # the consent reference writes into consent_state/consent_event with its own tenant
        log("\n== POST /v1/dsars against the reference write (insert + upsert) ==")
        c, d = args.connections, args.duration
        bests, _ = best_of_rounds(
            {
                "ref": (
                    "reference write",
                    reference,
                    WRITE_LUA,
                    {
                        "BENCH_PATH": "/consent-events",
                        "BENCH_TOKEN": "",
                        "BENCH_SUBJECTS": "100000",
                    },
                ),
                "dsar": (
                    "POST /v1/dsars",
                    product,
                    CREATE_LUA,
                    {"BENCH_PATH": "/v1/dsars", "BENCH_TOKEN": token},
                ),
            },
            args.rounds,
            d,
            c,
        )
        ref, prod = bests["ref"], bests["dsar"]
        log(fmt("reference write", ref))
        log(fmt("POST /v1/dsars", prod))
        log(f"  ratio createDsar / reference: {prod['rps'] / ref['rps']:.2f} (target ≥ 0.50)")

        log("\n== GET /v1/dsars?sla=overdue at scale ==")
        conn = await asyncpg.connect(dsn)
        have = int(
            await conn.fetchval("SELECT count(*) FROM dsar_ticket WHERE tenant = $1", TENANT)
        )
        await conn.close()
        now = datetime.now(UTC)
        table = []
        created = have  # the tickets POSTed above (all on track) come on top of each size
        seeded = 0
        for size in sizes:
            t0 = time.perf_counter()
            want = max(seeded, size)
            await seed_to(dsn, seeded, want, now)
            seeded = want
            have = created + seeded
            log(f"  {have:>9,} tickets (seeded in {time.perf_counter() - t0:.0f} s)")
            lat = await list_latency(product, token, args.samples)
            table.append((have, lat))
            log(
                f"    first page p50 {lat['first_p50']:.2f} ms  p99 {lat['first_p99']:.2f} ms · "
                f"deep page p50 {lat['deep_p50']:.2f} ms  p99 {lat['deep_p99']:.2f} ms"
            )
        log("  plan of the overdue list query at the largest size:")
        log(await plan(dsn, now))
        log(
            "\nsummary (json): "
            + json.dumps(
                {
                    "create_rps": prod["rps"],
                    "reference_rps": ref["rps"],
                    "ratio": prod["rps"] / ref["rps"],
                    "list": {str(n): v for n, v in table},
                }
            )
        )
        return 0
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=10)
        if not args.keep:
            await admin(args.pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
