"""Rules-module throughput, in process (issue 3 item 8). Not a test: it prints figures.

    .venv/bin/python bench/rules.py [--records 1000000] [--dsar 20000]

* `evaluate_retention` over 1,000,000 records: a realistic mix of categories (months, years,
  hours, keep-0-at-an-event, indefinite), triggers (collection, account closure, contract
  end, last activity), records whose trigger event has not happened, and a few unknown
  categories. Target (issue 3): >= 500,000 records/s.
* `dsar_deadlines` calls/s across the seed regimes, types and instants.
* the same retention evaluation through the API: 1,000,000 records in calls of 10,000 to a
  real server (uvicorn, one worker, SQLite). Target (issue 3): >= 50,000 records/s.

Each figure is printed with a ratio against a reference measured in the same run on the same
machine, so the numbers travel between machines: for retention, a bare loop that builds the
same result dicts with `datetime + timedelta`; for deadlines, a loop of `datetime + timedelta`
plus one end-of-day conversion.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.rules import deadlines, regimes
from app.rules.retention import evaluate_retention

RETENTION_TARGET = 500_000

POLICY: dict[str, Any] = {
    "key": "bench",
    "title": "Bench policy",
    "controller": {"name": "Bench", "country": "FR"},
    "jurisdiction": {"regime": "gdpr", "country": "FR", "timezone": "Europe/Paris"},
    "rights": ["access", "erasure"],
    "retention": [
        {
            "category": "technical_logs",
            "keep_for": {"value": 12, "unit": "months"},
            "starts_at": "collected",
            "then": "delete",
        },
        {
            "category": "audience_cookies",
            "keep_for": {"value": 13, "unit": "months"},
            "starts_at": "collected",
            "then": "delete",
        },
        {
            "category": "session_logs",
            "keep_for": {"value": 72, "unit": "hours"},
            "starts_at": "collected",
            "then": "delete",
        },
        {
            "category": "account_data",
            "keep_for": {"value": 3, "unit": "years"},
            "starts_at": "account_closed",
            "then": "anonymize",
        },
        {
            "category": "business_data",
            "keep_for": {"value": 0, "unit": "days"},
            "starts_at": "contract_ended",
            "then": "archive",
        },
        {
            "category": "marketing",
            "keep_for": {"value": 36, "unit": "months"},
            "starts_at": "last_activity",
            "then": "delete",
        },
        {
            "category": "invoices",
            "keep_for": {"value": 10, "unit": "years"},
            "starts_at": "collected",
            "then": "archive",
        },
        {"category": "comments", "keep_for": None, "starts_at": "collected", "then": "review"},
    ],
}
# (category, weight, trigger event or None, probability that the event has happened)
MIX: list[tuple[str, int, str | None, float]] = [
    ("technical_logs", 30, None, 1.0),
    ("audience_cookies", 15, None, 1.0),
    ("session_logs", 10, None, 1.0),
    ("account_data", 15, "account_closed", 0.3),
    ("business_data", 10, "contract_ended", 0.5),
    ("marketing", 10, "last_activity", 0.9),
    ("invoices", 5, None, 1.0),
    ("comments", 4, None, 1.0),
    ("legacy_unknown", 1, None, 1.0),
]


def make_records(n: int, seed: int = 8) -> list[dict[str, Any]]:
    """Records as a JSON API would deliver them after parsing: aware UTC datetimes with
    second precision (many records share a collection day, as real exports do)."""
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    span = 3 * 365 * 86_400
    categories = [c for c, w, _, _ in MIX for _ in range(w)]
    spec = {c: (event, p) for c, _, event, p in MIX}
    records: list[dict[str, Any]] = []
    append = records.append
    for _ in range(n):
        category = rng.choice(categories)
        collected = base + timedelta(seconds=rng.randrange(span))
        record: dict[str, Any] = {"category": category, "collected_at": collected}
        event, p = spec[category]
        if event is not None and rng.random() < p:
            record["events"] = {event: collected + timedelta(days=rng.randrange(1, 700))}
        append(record)
    return records


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def reference_retention(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The floor: read each record and build the same result dict with datetime + timedelta."""
    year = timedelta(days=365)
    out: list[dict[str, Any]] = []
    append = out.append
    for record in records:
        category = record["category"]
        append(
            {
                "category": category,
                "state": "running",
                "expires_at": record["collected_at"] + year,
                "then": "delete",
                "explanation_ref": category + ":running",
            }
        )
    return out


def bench_retention(n: int) -> None:
    resolved = regimes.resolve(POLICY)
    records = make_records(n)
    evaluate_retention(resolved, records[:1000])  # warm the holiday and zone caches
    t_ref = timed(lambda: reference_retention(records))
    holder: dict[str, Any] = {}
    t_rules = timed(lambda: holder.setdefault("out", evaluate_retention(resolved, records)))
    results = holder["out"]["results"]
    assert len(results) == n
    states: dict[str, int] = {}
    for r in results:
        key = r.get("state", "problem")
        states[key] = states.get(key, 0) + 1
    rate, ref_rate = n / t_rules, n / t_ref
    print(f"evaluate_retention: {n:,} records in {t_rules:.2f} s = {rate:,.0f} records/s")
    print(f"  reference (bare loop, same dicts, datetime + timedelta): {ref_rate:,.0f} records/s")
    print(f"  ratio rules/reference: {rate / ref_rate:.2f}")
    verdict = "meets" if rate >= RETENTION_TARGET else "BELOW"
    share = rate / RETENTION_TARGET
    print(f"  issue 3 target >= {RETENTION_TARGET:,} records/s: {verdict} ({share:.2f}x)")
    print(f"  states: {dict(sorted(states.items()))}")


SEEDS = ["spotrak", "officetrax", "calitrak", "protrack", "caltryx"]


def bench_dsar(n: int) -> None:
    import json

    root = Path(__file__).resolve().parents[1] / "examples" / "policies"
    policies = [regimes.resolve(json.loads((root / f"{k}.json").read_text())) for k in SEEDS]
    policies.append(
        regimes.resolve(
            {
                **POLICY,
                "jurisdiction": {
                    "regime": "ccpa_cpra",
                    "country": "US",
                    "timezone": "America/Los_Angeles",
                },
            }
        )
    )
    policies.append(
        regimes.resolve(
            {
                **POLICY,
                "jurisdiction": {
                    "regime": "uk_gdpr",
                    "country": "GB",
                    "subdivision": "ENG",
                    "timezone": "Europe/London",
                },
            }
        )
    )
    rng = random.Random(3)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    calls = [
        (
            rng.choice(policies),
            rng.choice(["access", "erasure", "rectification"]),
            base + timedelta(seconds=rng.randrange(4 * 365 * 86_400)),
        )
        for _ in range(n)
    ]
    for p, t, at in calls[:500]:  # warm the calendars for every year used
        deadlines.dsar_deadlines(p, type=t, received_at=at, extended=True)

    def run() -> None:
        for p, t, at in calls:
            deadlines.dsar_deadlines(p, type=t, received_at=at)

    def reference() -> None:
        month = timedelta(days=30)
        for _, _, at in calls:
            (at + month).replace(hour=23, minute=59, second=59, microsecond=999_999)

    t_rules = timed(run)
    t_ref = timed(reference)
    rate, ref_rate = n / t_rules, n / t_ref
    print(
        f"dsar_deadlines: {n:,} calls in {t_rules:.2f} s = {rate:,.0f} calls/s "
        f"({1e6 / rate:.0f} µs per call, with explanation)"
    )
    print(f"  reference (datetime + timedelta + end of day): {ref_rate:,.0f} calls/s")
    print(f"  ratio rules/reference: {rate / ref_rate:.4f}")


API_TARGET = 50_000


def bench_api(n: int, batch: int = 10_000) -> None:
    """`POST /v1/policies/{key}/retention` in batches of 10,000 through a real server: uvicorn,
    one worker, on the embedded SQLite default, JSON in and out over loopback."""
    import asyncio
    import os
    import signal
    import tempfile

    import httpx

    from app.core.security import KeyConfig, mint_token
    from bench.consent_load import migrate, start_server, wait_up

    secret = "bench-rules-" + "z" * 40
    tmp = Path(tempfile.mkdtemp(prefix="rules-bench-"))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        "AUTH_SECRET": secret,
        "APP_ENV": "dev",
        "LOG_LEVEL": "WARNING",
    }
    migrate(env)
    port = 8131
    proc = start_server("app.main:app", port, env, tmp)
    keys = KeyConfig("HS256", secret, secret, None, None, None)
    token = mint_token(keys, tenant="bench", scopes=["policies:read", "policies:write"])
    records = make_records(batch)
    body = json.dumps(
        {
            "records": [
                {
                    **r,
                    "collected_at": r["collected_at"].isoformat(),
                    **(
                        {"events": {k: v.isoformat() for k, v in r["events"].items()}}
                        if "events" in r
                        else {}
                    ),
                }
                for r in records
            ]
        }
    )

    async def run() -> float:
        base = f"http://127.0.0.1:{port}"
        await wait_up(base + "/healthz")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
            r = await client.post("/v1/policies", content=json.dumps(POLICY))
            r.raise_for_status()
            for _ in range(2):  # warm-up
                (await client.post("/v1/policies/bench/retention", content=body)).raise_for_status()
            calls = max(1, n // batch)
            t0 = time.perf_counter()
            for _ in range(calls):
                r = await client.post("/v1/policies/bench/retention", content=body)
                r.raise_for_status()
            elapsed = time.perf_counter() - t0
            assert len(r.json()["results"]) == batch
            return calls * batch / elapsed

    try:
        rate = asyncio.run(run())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    verdict = "meets" if rate >= API_TARGET else "BELOW"
    print(f"POST /v1/policies/{{key}}/retention, batches of {batch:,}: {rate:,.0f} records/s")
    print(f"  issue 3 target >= {API_TARGET:,} records/s: {verdict} ({rate / API_TARGET:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dsar", type=int, default=20_000)
    parser.add_argument("--api-records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}")
    bench_retention(args.records)
    bench_dsar(args.dsar)
    if args.api_records:
        bench_api(args.api_records)


if __name__ == "__main__":
    main()
