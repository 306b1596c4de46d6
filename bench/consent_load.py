"""Load test of the consent ledger against its minimal reference (issue 5, item 8).

Starts, on loopback, the product (`uvicorn app.main:app`, one worker) and the reference
(`bench/consent_reference.py`, one worker) on one fresh PostgreSQL database built by Alembic,
seeds the ledger, then drives both with wrk (bounded: fixed connections and duration) and
prints every figure: req/s, p50/p99, errors, the product/reference ratios, batch ingest
events/s (1, 2 and 4 batches in flight) and the current-state read p99 with the seeded ledger.

    apt-get install -y wrk          # once
    .venv/bin/python bench/consent_load.py                       # 1,000,000 seeded events
    .venv/bin/python bench/consent_load.py --events 10000000     # the 10M target (slower seed)

Options: --pg-admin URL (default postgresql://postgres@127.0.0.1:5432/postgres),
--duration s, --connections n, --rounds n, --keep (keep the database).
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.security import KeyConfig, mint_token  # noqa: E402
from app.policies.schemas import SPOTRAK_EXAMPLE  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
TENANT = "bench"
POLICY_KEY = "bench"
PRODUCT_PORT = 8101
REFERENCE_PORT = 8102

WRITE_LUA = r"""
local path = os.getenv("BENCH_PATH")
local token = os.getenv("BENCH_TOKEN") or ""
local subjects = tonumber(os.getenv("BENCH_SUBJECTS"))
local actions = {"granted", "denied", "withdrawn"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("id", counter) end
init = function() math.randomseed(os.time() + (id or 0) * 7919) end
request = function()
  local body = string.format(
    '{"policy_key":"bench","subject_id":"s-%d","purpose":"audience_cookies",' ..
    '"action":"%s","source":"bench"}', math.random(subjects) - 1, actions[math.random(3)])
  return wrk.format(nil, path, nil, body)
end
"""

READ_LUA = r"""
local fmt = os.getenv("BENCH_PATH")
local token = os.getenv("BENCH_TOKEN") or ""
local subjects = tonumber(os.getenv("BENCH_SUBJECTS"))
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
init = function() math.randomseed(os.time()) end
request = function()
  return wrk.format("GET", string.format(fmt, math.random(subjects) - 1))
end
"""

DONE_LUA = r"""
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def log(msg: str) -> None:
    print(msg, flush=True)


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start_server(
    app: str, port: int, env: dict[str, str], logdir: Path, workers: int = 1
) -> subprocess.Popen[bytes]:
    out = (logdir / f"{port}.log").open("wb")
    return subprocess.Popen(
        [
            str(ROOT / ".venv/bin/uvicorn"),
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def migrate(env: dict[str, str]) -> None:
    """`alembic upgrade heads` on the database named by env["DATABASE_URL"]."""
    subprocess.run(
        [str(ROOT / ".venv/bin/alembic"), "upgrade", "heads"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def wrk(
    url: str, script: str, env: dict[str, str], duration: int, connections: int, threads: int = 1
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script + DONE_LUA)
        path = fh.name
    try:
        proc = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "10s",
                "-s",
                path,
                url,
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(path)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("BENCH_JSON "))
    data: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return data


def fmt(name: str, r: dict[str, Any]) -> str:
    return (
        f"  {name:<28} {r['rps']:8.0f} req/s   p50 {r['p50_us'] / 1000:6.2f} ms   "
        f"p99 {r['p99_us'] / 1000:6.2f} ms   errors {r['errors']} (of {r['requests']})"
    )


Case = tuple[str, str, str, dict[str, str]]  # label, url, wrk script, environment


def best_of_rounds(
    cases: dict[str, Case], rounds: int, duration: int, connections: int
) -> tuple[dict[str, dict[str, Any]], int]:
    """Warm every case up (3 s), then run them in alternation `rounds` times, so the product
    and its reference see the same machine; keep each case's best run. Also returns the
    errors counted over all the runs."""
    for _, url, script, env in cases.values():
        wrk(url, script, env, 3, connections)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in cases}
    for i in range(rounds):
        log(f"round {i + 1}")
        for key, (label, url, script, env) in cases.items():
            res = wrk(url, script, env, duration, connections)
            runs[key].append(res)
            log(fmt(label, res))
    errors = sum(r["errors"] for results in runs.values() for r in results)
    return {key: max(results, key=lambda r: r["rps"]) for key, results in runs.items()}, errors


async def seed(dsn: str, events: int, subjects: int) -> None:
    """`events` ledger rows over `subjects` subjects (and their projection), by SQL."""
    conn = await asyncpg.connect(dsn)
    try:
        chunk = 1_000_000
        done = 0
        while done < events:
            n = min(chunk, events - done)
            await conn.execute(
                """
                INSERT INTO consent_event (id, tenant, policy_key, policy_version, subject_id,
                    purpose, action, occurred_at, expires_at, recorded_at, source, proof, gpc,
                    erased, actor)
                SELECT gen_random_uuid(), $1, $2, 1, 's-' || (g % $3), 'audience_cookies',
                    (ARRAY['granted', 'denied', 'withdrawn'])[1 + g % 3],
                    now() - interval '400 days' + make_interval(secs => g), NULL, now(),
                    'seed', '{"seed": true}'::jsonb, false, false, 'seed'
                FROM generate_series($4::bigint, $5::bigint) AS g
                """,
                TENANT,
                POLICY_KEY,
                subjects,
                done,
                done + n - 1,
            )
            done += n
            log(f"  seeded {done:,} events")
        await conn.execute(
            """
            INSERT INTO consent_state (tenant, subject_id, policy_key, purpose, state, since,
                event_id, expires_at)
            SELECT DISTINCT ON (subject_id) tenant, subject_id, policy_key, purpose, action,
                occurred_at, id, expires_at
            FROM consent_event WHERE tenant = $1
            ORDER BY subject_id, occurred_at DESC, id DESC
            ON CONFLICT DO NOTHING
            """,
            TENANT,
        )
        await conn.execute("VACUUM ANALYZE consent_event")
        await conn.execute("VACUUM ANALYZE consent_state")
    finally:
        await conn.close()


async def batch_ingest(base: str, token: str, batches: int, concurrency: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    run = uuid.uuid4().hex[:6]

    def body(b: int) -> dict[str, Any]:
        return {
            "events": [
                {
                    "policy_key": POLICY_KEY,
                    "subject_id": f"batch-{run}-{b}-{i}",
                    "purpose": "audience_cookies",
                    "action": "granted" if i % 2 else "denied",
                    "source": "bench",
                }
                for i in range(1000)
            ]
        }

    bodies = [json.dumps(body(b)).encode() for b in range(batches)]
    latencies: list[float] = []
    errors = 0
    queue = list(range(batches))
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await client.post(
            "/v1/consent-events/batch",
            content=json.dumps(body(-1)),
            headers={**headers, "Content-Type": "application/json"},
        )

        async def worker() -> None:
            nonlocal errors
            while queue:
                b = queue.pop()
                t0 = time.perf_counter()
                r = await client.post(
                    "/v1/consent-events/batch",
                    content=bodies[b],
                    headers={**headers, "Content-Type": "application/json"},
                )
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json()["recorded"] != 1000:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - t0
    return {
        "events_per_s": batches * 1000 / elapsed,
        "batch_p50_ms": statistics.median(latencies) * 1000,
        "batch_max_ms": max(latencies) * 1000,
        "errors": errors,
    }


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin DSN"
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="ledger rows to seed")
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best kept")
    parser.add_argument("--batches", type=int, default=40, help="batches of 1,000 events")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2

    name = f"prapi_bench_{uuid.uuid4().hex[:8]}"
    base_dsn = args.pg_admin.rsplit("/", 1)[0]
    dsn = f"{base_dsn}/{name}"
    sa_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    await admin(args.pg_admin, f'CREATE DATABASE "{name}"')
    procs: list[subprocess.Popen[bytes]] = []
    logdir = Path(tempfile.mkdtemp(prefix="consent-bench-"))
    try:
        env = {**os.environ, "DATABASE_URL": sa_url, "AUTH_SECRET": SECRET, "APP_ENV": "dev"}
        await asyncio.to_thread(migrate, env)
        subjects = max(1, args.events // 10)
        log(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        pg = await asyncpg.connect(dsn)
        log(f"postgres: {await pg.fetchval('SHOW server_version')}")
        await pg.close()
        log(f"seeding {args.events:,} events over {subjects:,} subjects …")
        t0 = time.perf_counter()
        await seed(dsn, args.events, subjects)
        log(f"  seeded in {time.perf_counter() - t0:.0f} s")

        procs.append(start_server("app.main:app", PRODUCT_PORT, env, logdir))
        procs.append(
            start_server(
                "bench.consent_reference:app",
                REFERENCE_PORT,
                {**env, "REFERENCE_TENANT": TENANT},
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
            scopes=["policies:write", "consent:read", "consent:write"],
            ttl_seconds=24 * 3600,
            now=time.time() - 120,
        )
        policy = dict(SPOTRAK_EXAMPLE, key=POLICY_KEY)
        async with httpx.AsyncClient(base_url=product) as client:
            r = await client.post(
                "/v1/policies", json=policy, headers={"Authorization": f"Bearer {token}"}
            )
            r.raise_for_status()

        c, d = args.connections, args.duration
        write_env = {"BENCH_SUBJECTS": str(subjects)}
        log(f"warm-up (3 s each), then {args.rounds} rounds of {d} s, {c} connections, wrk -t1")

        def env(path: str, tok: str) -> dict[str, str]:
            return {**write_env, "BENCH_PATH": path, "BENCH_TOKEN": tok}

        bests, run_errors = best_of_rounds(
            {
                "rw": ("reference write", reference, WRITE_LUA, env("/consent-events", "")),
                "pw": ("product write", product, WRITE_LUA, env("/v1/consent-events", token)),
                "rr": (
                    "reference read",
                    reference,
                    READ_LUA,
                    env("/subjects/s-%d/consents", ""),
                ),
                "pr": (
                    "product read",
                    product,
                    READ_LUA,
                    env("/v1/subjects/s-%d/consents", token),
                ),
            },
            args.rounds,
            d,
            c,
        )

        def best(key: str) -> dict[str, Any]:
            return bests[key]

        ingest: dict[int, dict[str, Any]] = {}
        for in_flight in (1, 2, 4):
            log(f"batch ingest (1,000 events per call, {in_flight} in flight) …")
            ingest[in_flight] = await batch_ingest(product, token, args.batches, in_flight)
            log(
                f"  batch ingest, {in_flight} in flight    "
                f"{ingest[in_flight]['events_per_s']:8.0f} events/s   "
                f"p50 {ingest[in_flight]['batch_p50_ms']:.0f} ms per batch   "
                f"errors {ingest[in_flight]['errors']}"
            )
        batch_errors = sum(b["errors"] for b in ingest.values())
        log("current-state read latency at light load (4 connections) …")
        light = wrk(
            product + "/v1/subjects/s-0/consents",
            READ_LUA,
            {**write_env, "BENCH_PATH": "/v1/subjects/s-%d/consents", "BENCH_TOKEN": token},
            d,
            4,
        )
        log(fmt("product read, 4 conns", light))
        pw, rw, pr, rr = best("pw"), best("rw"), best("pr"), best("rr")
        total_errors = run_errors + batch_errors
        total_errors += light["errors"]
        summary = {
            "events_in_ledger": args.events,
            "write_rps": {"product": pw["rps"], "reference": rw["rps"]},
            "read_rps": {"product": pr["rps"], "reference": rr["rps"]},
            "write_ratio": pw["rps"] / rw["rps"],
            "read_ratio": pr["rps"] / rr["rps"],
            "write_p50_p99_ms": [pw["p50_us"] / 1000, pw["p99_us"] / 1000],
            "read_p50_p99_ms": [pr["p50_us"] / 1000, pr["p99_us"] / 1000],
            "reference_write_p50_p99_ms": [rw["p50_us"] / 1000, rw["p99_us"] / 1000],
            "reference_read_p50_p99_ms": [rr["p50_us"] / 1000, rr["p99_us"] / 1000],
            "batch_events_per_s": {str(k): v["events_per_s"] for k, v in ingest.items()},
            "light_read_p50_p99_ms": [light["p50_us"] / 1000, light["p99_us"] / 1000],
            "errors": total_errors,
        }
        log("")
        log(f"RESULT writes: product/reference = {summary['write_ratio']:.2f}  (target >= 0.6)")
        log(f"RESULT reads:  product/reference = {summary['read_ratio']:.2f}  (target >= 0.6)")
        log(
            "RESULT batch ingest = "
            + ", ".join(f"{v['events_per_s']:.0f}" for v in ingest.values())
            + " events/s at 1, 2, 4 batches in flight  (target >= 20,000)"
        )
        log(
            f"RESULT current-state read p99 with {args.events:,} events = "
            f"{light['p99_us'] / 1000:.2f} ms at 4 connections, {pr['p99_us'] / 1000:.2f} ms "
            f"at {c} (target < 10 ms)"
        )
        log(f"RESULT errors = {total_errors}  (target 0)")
        log("SUMMARY " + json.dumps(summary))
        return 0
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if not args.keep:
            await admin(args.pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            log(f"kept database {name}; server logs in {logdir}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
