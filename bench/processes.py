"""Consent write throughput as several processes (issue 18, DESIGN §16), in one run.

On one fresh PostgreSQL database built by Alembic and seeded like `consent_load.py`, starts
four servers side by side on loopback:

- `direct-1w`: `uvicorn app.main:app --workers 1`, straight to PostgreSQL;
- `direct-2w`: the same with `--workers 2`;
- `bouncer-1w` / `bouncer-2w`: the same two through a private pgbouncer 1.24 in transaction
  mode keeping prepared statements (`max_prepared_statements = 200`; `DB_POOLER=pgbouncer`,
  `DB_POOLER_PREPARED_STATEMENTS=true`; the cache listener direct through
  `DATABASE_LISTEN_URL`): the recommended production set-up;
- `unnamed-1w`: one worker through the distribution's pgbouncer (1.18 on Debian 12), which
  keeps no prepared statement (`DB_POOLER=pgbouncer` alone: every statement parsed and
  planned with each execution), for comparison;

then drives `POST /v1/consent-events` with wrk, the cases in alternation for `--rounds`
rounds (the order rotated each round, so none always runs first on a noisy machine), and
prints every run, the best and the median of each case, and the ratios: 2 workers / 1 worker
and pgbouncer / direct (target: pgbouncer costs at most 15 %, a ratio ≥ 0.85).

    apt-get install -y wrk pgbouncer && scripts/build-pgbouncer    # once
    .venv/bin/python bench/processes.py --events 100000 --duration 10 --rounds 4

Options: --pg-admin URL, --events n, --duration s, --connections n, --rounds n, --keep.
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
from bench.consent_load import (  # noqa: E402
    POLICY_KEY,
    SECRET,
    TENANT,
    WRITE_LUA,
    admin,
    fmt,
    migrate,
    seed,
    start_server,
    wait_up,
    wrk,
)
from tests.live import free_port  # noqa: E402
from tests.pgbouncer import binary_of, launch_pgbouncer, version_of  # noqa: E402

CASES = ("direct-1w", "direct-2w", "bouncer-1w", "bouncer-2w", "unnamed-1w")


def log(msg: str) -> None:
    print(msg, flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=100_000, help="ledger rows to seed")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2
    for prepared, how in ((True, "scripts/build-pgbouncer"), (False, "apt-get install pgbouncer")):
        if binary_of(prepared) is None:
            log(f"pgbouncer {'1.21+' if prepared else '(the distribution)'} is missing: {how}")
            return 2

    name = f"prapi_bench_{uuid.uuid4().hex[:8]}"
    base_dsn = args.pg_admin.rsplit("/", 1)[0]
    dsn = f"{base_dsn}/{name}"
    direct_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    await admin(args.pg_admin, f'CREATE DATABASE "{name}"')
    procs: list[subprocess.Popen[bytes]] = []
    logdir = Path(tempfile.mkdtemp(prefix="processes-bench-"))
    bouncers = []
    try:
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "DB_", "REDIS_", "RATE_"))
        }
        base_env |= {"AUTH_SECRET": SECRET, "APP_ENV": "dev", "DATABASE_URL": direct_url}
        await asyncio.to_thread(migrate, base_env)
        log(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        log(f"python {platform.python_version()}, load average at start: {load_average()}")
        pg = await asyncpg.connect(dsn)
        log(f"postgres: {await pg.fetchval('SHOW server_version')}")
        await pg.close()
        subjects = max(1, args.events // 10)
        log(f"seeding {args.events:,} events over {subjects:,} subjects …")
        await seed(dsn, args.events, subjects)

        env_of = {"direct": base_env}
        for route, prepared in (("bouncer", True), ("unnamed", False)):
            bouncer = launch_pgbouncer(
                logdir / route, "127.0.0.1", 5432, pool_size=20, prepared=prepared
            )
            bouncers.append(bouncer)
            log(
                f"{route}: pgbouncer {version_of(binary_of(prepared) or '?')} on port "
                f"{bouncer.port}, pool_mode=transaction, default_pool_size=20"
                + (", max_prepared_statements=200" if prepared else "")
            )
            env_of[route] = base_env | {
                "DATABASE_URL": bouncer.url_for(direct_url),
                "DB_POOLER": "pgbouncer",
                "DB_POOLER_PREPARED_STATEMENTS": "true" if prepared else "false",
                "DATABASE_LISTEN_URL": direct_url,
            }
        urls: dict[str, str] = {}
        for case in CASES:
            route, workers = case.split("-")
            port = free_port()
            procs.append(start_server("app.main:app", port, env_of[route], logdir, int(workers[0])))
            urls[case] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            await wait_up(url + "/readyz")

        keys = KeyConfig("HS256", SECRET, SECRET, None, None, None)
        token = mint_token(
            keys,
            tenant=TENANT,
            scopes=["policies:write", "consent:read", "consent:write"],
            ttl_seconds=24 * 3600,
            now=time.time() - 120,
        )
        async with httpx.AsyncClient(base_url=urls["direct-1w"]) as client:
            r = await client.post(
                "/v1/policies",
                json=dict(SPOTRAK_EXAMPLE, key=POLICY_KEY),
                headers={"Authorization": f"Bearer {token}"},
            )
            r.raise_for_status()

        wenv = {
            "BENCH_SUBJECTS": str(subjects),
            "BENCH_PATH": "/v1/consent-events",
            "BENCH_TOKEN": token,
        }
        c, d = args.connections, args.duration
        log(f"warm-up (3 s each), then {args.rounds} rounds of {d} s, {c} connections, wrk -t1")
        for url in urls.values():
            wrk(url, WRITE_LUA, wenv, 3, c)
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        loads: list[str] = []
        for i in range(args.rounds):
            order = CASES[i % len(CASES) :] + CASES[: i % len(CASES)]
            log(f"round {i + 1} (load average {load_average()})")
            loads.append(load_average())
            for case in order:
                res = wrk(urls[case], WRITE_LUA, wenv, d, c)
                runs[case].append(res)
                log(fmt(case, res))
        errors = sum(r["errors"] for rs in runs.values() for r in rs)
        best = {case: max(r["rps"] for r in rs) for case, rs in runs.items()}
        median = {case: statistics.median(r["rps"] for r in rs) for case, rs in runs.items()}

        # per round, the ratio of two cases run minutes apart at most
        def ratios(num: str, den: str) -> list[float]:
            return [b["rps"] / a["rps"] for a, b in zip(runs[den], runs[num], strict=True)]

        # per round, the ratio of two cases run minutes apart at most
        per_round = {
            "bouncer/direct, 1 worker": ratios("bouncer-1w", "direct-1w"),
            "bouncer/direct, 2 workers": ratios("bouncer-2w", "direct-2w"),
            "unnamed/direct, 1 worker": ratios("unnamed-1w", "direct-1w"),
            "2 workers/1 worker, direct": ratios("direct-2w", "direct-1w"),
        }
        log("")
        for case in CASES:
            log(f"RESULT {case:<11} best {best[case]:7.0f} req/s   median {median[case]:7.0f}")
        for label, ratios in per_round.items():
            log(
                f"RESULT {label:<27} median of rounds {statistics.median(ratios):.2f}   "
                f"rounds {', '.join(f'{x:.2f}' for x in ratios)}"
            )
        for label in ("bouncer/direct, 1 worker", "bouncer/direct, 2 workers"):
            cost = 1 - statistics.median(per_round[label])
            log(
                f"RESULT pgbouncer cost ({label}): {cost:+.0%} (median of rounds; "
                f"target ≤ 15 %) {'PASS' if cost <= 0.15 else 'MISS'}"
            )
        log(f"RESULT errors = {errors}  (target 0); load average at end {load_average()}")
        log(
            "SUMMARY "
            + json.dumps(
                {
                    "best_rps": best,
                    "median_rps": median,
                    "per_round_ratios": per_round,
                    "load_average_per_round": loads,
                    "errors": errors,
                }
            )
        )
        return 0
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for bouncer in bouncers:
            bouncer.stop()
        if not args.keep:
            await admin(args.pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            log(f"kept database {name}; logs in {logdir}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
