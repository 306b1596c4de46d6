"""The reports (issue 17, DESIGN §15) over 1,000,000 tickets on PostgreSQL.

1. Creates a fresh database (Alembic), publishes a GDPR and a CCPA policy through the API.
2. Seeds server-side with `INSERT … SELECT … FROM generate_series` (no row crosses the wire):
   `--tickets` DSAR tickets in one tenant over two years (a realistic mix: completed on time
   and late, rejected with reason codes, withdrawn, open, overdue), `--events` consent events
   (a tenth of them GPC opt-outs) with their current states, and 200 breach incidents.
3. Times every report through the app (in-process ASGI: routing, auth, SQL, JSON or CSV),
   best and median of `--rounds`, JSON and CSV, and prints the figures as a Markdown table.

    .venv/bin/python bench/reports.py                   # 1,000,000 tickets, 1,000,000 events
    .venv/bin/python bench/reports.py --tickets 100000  # quicker

Options: --pg-admin URL (default postgresql://postgres@127.0.0.1:5432/postgres), --rounds n,
--keep (keep the database), --database NAME (time again on a database kept by --keep).

Each report is timed next to a reference measured in the same rounds: a bare `count(*)` of the
rows it reads (the same range, the same index), so that the ratio travels between machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.core.security import ALL_SCOPES, KeyConfig, mint_token  # noqa: E402
from app.main import create_app  # noqa: E402
from app.policies.schemas import SPOTRAK_EXAMPLE  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
TENANT = "bench"
NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)

TICKETS_SQL = """
INSERT INTO dsar_ticket (id, tenant, policy_key, policy_version, type, requester, status,
    is_open, subject_id, received_at, clock_started_at, due_at, due_date, due_sort,
    first_due_at, provisional, extension_allowed, extended, explanation, status_reason,
    status_reason_code, closed_at, created_at, updated_at, version)
SELECT gen_random_uuid(), $1, s.policy_key, 1, s.type, 'subject', s.status,
    s.status IN ('received', 'in_progress'), 'subject-' || s.i, s.received, s.received,
    s.due, s.due::date, COALESCE(CASE WHEN s.status IN ('received', 'in_progress') THEN s.due END,
        '9999-12-31'::timestamptz),
    s.due, false, true, false, $4::jsonb,
    CASE WHEN s.status = 'rejected' THEN 'bench' END,
    CASE WHEN s.status = 'rejected'
        THEN (ARRAY['identity_not_verified', 'manifestly_unfounded', 'excessive', 'exemption',
                    'no_data', 'other'])[1 + (s.i % 6)::int] END,
    CASE WHEN s.status IN ('completed', 'rejected', 'withdrawn')
        THEN s.received + make_interval(secs => 3600 + (s.i * 7919) % (60 * 86400)) END,
    s.received, s.received, 1
FROM (
    SELECT i,
        CASE WHEN i % 3 = 0 THEN 'calco' ELSE 'spotrak' END AS policy_key,
        (ARRAY['access', 'erasure', 'rectification', 'opt_out'])[1 + (i % 4)::int] AS type,
        (ARRAY['completed', 'completed', 'completed', 'completed', 'completed', 'rejected',
               'withdrawn', 'received', 'in_progress', 'completed'])[1 + ((i / 7) % 10)::int]
            AS status,
        $2::timestamptz - make_interval(secs => (i * 104729) % (730 * 86400)) AS received,
        $2::timestamptz - make_interval(secs => (i * 104729) % (730 * 86400))
            + interval '30 days' AS due
    FROM generate_series(1::bigint, $3::bigint) AS i
) AS s
"""

# A ticket's explanation as the API writes it (three steps): it makes the rows as wide as real
# ones, which is what a report must not read.
EXPLANATION = json.dumps(
    [
        {
            "rule": "GDPR Art. 12(3)",
            "source": "Regulation (EU) 2016/679 Art. 12(3): one month of receipt of the request",
            "detail": "one month from 2027-01-31 (receipt, Europe/Paris) → 2027-02-28, no "
            "corresponding day in February: the last day of the month",
        },
        {
            "rule": "Reg. 1182/71 Art. 3(4)",
            "source": "Regulation (EEC, Euratom) No 1182/71 Art. 3(4): a period ending on a "
            "public holiday, Sunday or Saturday ends with the next working day",
            "detail": "2027-02-28 is a Sunday → next working day 2027-03-01",
        },
        {
            "rule": "GDPR Art. 12(3)",
            "source": "Regulation (EU) 2016/679 Art. 12(3): extension by two further months",
            "detail": "extension allowed: two further months, the subject told within the first",
        },
    ]
)

EVENTS_SQL = """
INSERT INTO consent_event (id, tenant, policy_key, policy_version, subject_id, purpose, action,
    occurred_at, recorded_at, expires_at, source, proof, gpc, erased, actor)
SELECT gen_random_uuid(), $1, 'spotrak', 1, 'subject-' || (i % 200000), 'audience_cookies',
    CASE WHEN i % 10 = 0 THEN 'denied'
         ELSE (ARRAY['granted', 'granted', 'denied', 'withdrawn'])[1 + (i % 4)::int] END,
    $2::timestamptz - make_interval(secs => (i * 7919) % (365 * 86400)), $2, NULL, 'bench',
    NULL, i % 10 = 0, false, 'bench'
FROM generate_series(1::bigint, $3::bigint) AS i
"""

STATES_SQL = """
INSERT INTO consent_state (tenant, subject_id, policy_key, purpose, state, since, event_id,
    expires_at)
SELECT DISTINCT ON (subject_id) tenant, subject_id, policy_key, purpose, action, occurred_at, id,
    NULL
FROM consent_event WHERE tenant = $1
ORDER BY subject_id, occurred_at DESC, id DESC
"""

BREACHES_SQL = """
INSERT INTO breach_incident (id, tenant, policy_key, policy_version, title, aware_at,
    occurred_at, data_categories, subjects_affected, risk, role, description, status,
    authority_notification_required, authority_due_at, subjects_notification_required,
    subjects_due_at, controller_notification_required, next_due_at, explanation, created_at,
    updated_at, version)
SELECT gen_random_uuid(), $1, 'spotrak', 1, 'Incident ' || i,
    $2::timestamptz - make_interval(days => i * 3), NULL, '["contact"]'::jsonb, 100 * i,
    'high_risk', 'controller', NULL, 'open', true,
    $2::timestamptz - make_interval(days => i * 3) + interval '72 hours', true,
    $2::timestamptz - make_interval(days => i * 3) + interval '72 hours', false,
    $2::timestamptz - make_interval(days => i * 3) + interval '72 hours', '[]'::jsonb, $2, $2, 1
FROM generate_series(1, 200) AS i
"""


def ccpa_policy() -> dict[str, Any]:
    body = dict(SPOTRAK_EXAMPLE)
    body["key"] = "calco"
    body["jurisdiction"] = {
        "regime": "ccpa_cpra",
        "country": "US",
        "subdivision": "CA",
        "timezone": "America/Los_Angeles",
    }
    body["rights"] = ["access", "rectification", "erasure", "opt_out"]
    body.pop("response", None)
    body.pop("breach", None)
    return body


def alembic_upgrade(url: str) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(cfg, "heads")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def timed(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    case: tuple[str, str, dict[str, Any], str, tuple[Any, ...]],
    headers: dict[str, str],
    rounds: int,
) -> dict[str, list[float]]:
    """The report as JSON, as CSV, and its reference (a bare count(*) of the rows it reads),
    in alternating rounds."""
    _, path, params, ref_sql, ref_args = case
    times: dict[str, list[float]] = {"json": [], "csv": [], "ref": []}
    await client.get(path, params=params, headers=headers)  # warm
    for _ in range(rounds):
        for kind, extra in (("json", {}), ("csv", {"Accept": "text/csv"})):
            t0 = time.perf_counter()
            r = await client.get(path, params=params, headers={**headers, **extra})
            times[kind].append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        t0 = time.perf_counter()
        await conn.fetchval(ref_sql, *ref_args)
        times["ref"].append(time.perf_counter() - t0)
    return times


def cases() -> list[tuple[str, str, dict[str, Any], str, tuple[Any, ...]]]:
    tickets = (
        "SELECT count(*) FROM dsar_ticket WHERE tenant = $1 AND received_at >= $2 "
        "AND received_at < $3"
    )
    events = (
        "SELECT count(*) FROM consent_event WHERE tenant = $1 AND occurred_at >= $2 "
        "AND occurred_at < $3"
    )

    def d(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    two_years = (TENANT, d("2025-01-15"), d("2027-01-15"))
    return [
        (
            "DSAR, 2 years (1,000,000 tickets), by regime and type",
            "/v1/reports/dsar",
            {"from": "2025-01-15", "to": "2027-01-15"},
            tickets,
            two_years,
        ),
        (
            "DSAR, 2 years, by regime, type and policy",
            "/v1/reports/dsar",
            {"from": "2025-01-15", "to": "2027-01-15", "group_by": "regime,type,policy"},
            tickets,
            two_years,
        ),
        (
            "DSAR, one quarter, by type",
            "/v1/reports/dsar",
            {"from": "2026-10-01", "to": "2027-01-01", "group_by": "type"},
            tickets,
            (TENANT, d("2026-10-01"), d("2027-01-01")),
        ),
        (
            "CCPA metrics, 2026",
            "/v1/reports/ccpa-metrics",
            {"year": 2026},
            tickets,
            (TENANT, d("2026-01-01T08:00:00"), d("2027-01-01T08:00:00")),
        ),
        (
            "consent, 1 year by day",
            "/v1/reports/consent",
            {"from": "2026-01-15", "to": "2027-01-15", "interval": "day"},
            events,
            (TENANT, d("2026-01-15"), d("2027-01-15")),
        ),
        (
            "consent, 1 year by month",
            "/v1/reports/consent",
            {"from": "2026-01-15", "to": "2027-01-15", "interval": "month"},
            events,
            (TENANT, d("2026-01-15"), d("2027-01-15")),
        ),
        (
            "breach register, all",
            "/v1/reports/breaches",
            {},
            "SELECT count(*) FROM breach_incident WHERE tenant = $1",
            (TENANT,),
        ),
    ]


async def seed(client: httpx.AsyncClient, dsn: str, headers: dict[str, str], args: Any) -> None:
    for body in (dict(SPOTRAK_EXAMPLE), ccpa_policy()):
        r = await client.post("/v1/policies", json=body, headers=headers)
        assert r.status_code == 201, r.text
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        await conn.execute(TICKETS_SQL, TENANT, NOW, args.tickets, EXPLANATION)
        t_tickets = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute(EVENTS_SQL, TENANT, NOW, args.events)
        await conn.execute(STATES_SQL, TENANT)
        t_events = time.perf_counter() - t0
        await conn.execute(BREACHES_SQL, TENANT, NOW)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    print(
        f"seeded {args.tickets:,} tickets in {t_tickets:.1f} s, {args.events:,} consent "
        f"events (+ states) in {t_events:.1f} s, 200 breach incidents"
    )


def ms(xs: list[float]) -> str:
    return f"{min(xs) * 1000:,.0f} / {statistics.median(xs) * 1000:,.0f} ms"


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the database (for --database)")
    ap.add_argument("--database", help="an existing database seeded by a --keep run")
    args = ap.parse_args()

    name = args.database or f"prapi_bench_reports_{uuid.uuid4().hex[:8]}"
    if not args.database:
        admin = await asyncpg.connect(args.pg_admin)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    dsn = args.pg_admin.rsplit("/", 1)[0] + "/" + name
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    clock_now = datetime(2024, 1, 1, tzinfo=UTC)  # the policies' publication
    try:
        alembic_upgrade(url)
        settings = Settings(
            database_url=url,
            auth_secret=SECRET,
            worker_in_process=False,
            statement_timeout_ms=120_000,
        )
        app = create_app(settings, clock=lambda: clock_now)
        keys = KeyConfig("HS256", SECRET, SECRET, None, None, None)
        headers = {
            "Authorization": "Bearer "
            + mint_token(keys, tenant=TENANT, scopes=list(ALL_SCOPES), ttl_seconds=86400)
        }
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=120
            ) as client:
                if not args.database:
                    await seed(client, dsn, headers, args)
                clock_now = NOW
                conn = await asyncpg.connect(dsn)
                try:
                    version = await conn.fetchval("SHOW server_version")
                    n = await conn.fetchval("SELECT count(*) FROM dsar_ticket")
                    print(f"PostgreSQL {version}; {n:,} tickets; load {os.getloadavg()}")
                    print()
                    print(
                        "| report | JSON best / median | CSV best / median | reference "
                        "count(*) best / median | JSON median / reference |"
                    )
                    print("|---|---|---|---|---|")
                    for case in cases():
                        t = await timed(client, conn, case, headers, args.rounds)
                        ratio = statistics.median(t["json"]) / statistics.median(t["ref"])
                        print(
                            f"| {case[0]} | {ms(t['json'])} | {ms(t['csv'])} | "
                            f"{ms(t['ref'])} | {ratio:.1f} |",
                            flush=True,
                        )
                    print(f"load {os.getloadavg()}")
                finally:
                    await conn.close()
    finally:
        if not args.keep and not args.database:
            admin = await asyncpg.connect(args.pg_admin)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
        elif not args.database:
            print(f"kept database {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
