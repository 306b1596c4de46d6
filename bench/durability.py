"""Durability under database faults (issue 8, item 6).

Starts a PRIVATE PostgreSQL (initdb into a temp dir, its own port and socket directory; the
shared server on 5432 is never touched), builds the schema with Alembic, starts the product
(`uvicorn app.main:app`, one worker) on it, and then:

* drives consent writes (`POST /v1/consent-events`) at a steady rate from a few concurrent
  clients; every write carries its own `Idempotency-Key` and is retried with the same key and
  the same bytes on connection errors, timeouts, 5xx and 409 until it is acknowledged (201,
  first time or replayed);
* meanwhile faults the database three times: `pg_ctl restart -m fast`, `pg_ctl stop -m fast`
  with the database left away for a few seconds, and a crash (`kill -9` of the postmaster and
  its processes) with the database left away too; the service itself is never restarted;
* probes the service all along: while the database is away every answer must be a 503
  `application/problem+json` that arrives within `--max-latency` seconds (never a hang, never
  a 500), and after each fault writes must succeed again within `--recover-within` seconds;
* at the end proves, by SQL on the ledger, that every acknowledged event is stored exactly
  once (the idempotency key rides in `proof`), and that the `consent_state` projection equals
  the newest ledger event per (tenant, subject, policy, purpose), also read through the API.

    .venv/bin/python bench/durability.py                 # ~60 s run, exit 1 on any loss
    .venv/bin/python bench/durability.py --control       # synchronous_commit=off + kill -9

`--control` runs the private server with `synchronous_commit=off` (and a long
`wal_writer_delay`) and crashes it right after bursts of acknowledged writes: the harness must
then report lost > 0 (that is what it is for); its exit code is 0 when it saw the loss.

Run as root, the PostgreSQL binaries are run as the `postgres` user (initdb refuses root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.security import KeyConfig, mint_token  # noqa: E402
from app.policies.schemas import SPOTRAK_EXAMPLE  # noqa: E402
from bench.consent_load import migrate, start_server, wait_up  # noqa: E402

SECRET = "durability-secret-" + "x" * 40
TENANT = "durability"
POLICY_KEY = "durable"
PURPOSES = ("audience_cookies",)
ACTIONS = ("granted", "denied", "withdrawn")
DB_NAME = "prapi"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- the private PostgreSQL ---------------------------------------------------------------


def pg_bindir() -> Path:
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise SystemExit("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return found[-1]


class PrivatePostgres:
    """One cluster in a temp dir, on its own port and socket directory."""

    def __init__(self, root: Path, port: int, settings: dict[str, str]) -> None:
        self.bindir = pg_bindir()
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.logfile = root / "postgres.log"
        self.port = port
        self.settings = settings
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [*self.as_user, str(self.bindir / args[0]), *args[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stdout}{proc.stderr}")

    def init(self) -> None:
        self.sock.mkdir(parents=True)
        if self.as_user:
            pw = pwd.getpwnam("postgres")
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        conf = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sock}'",
            "max_connections": "100",
            "fsync": "on",
            "full_page_writes": "on",
            "logging_collector": "off",
            **self.settings,
        }
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.write("\n# bench/durability.py\n")
            for k, v in conf.items():
                fh.write(f"{k} = {v}\n")

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "restart",
        )

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def crash(self) -> int:
        """kill -9 the postmaster and, at the same moment, every process it started (a crash:
        whatever sat in shared memory, e.g. WAL buffers not yet written, is gone)."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("no postmaster to kill")
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c, signal.SIGKILL)
        # Until the kernel has reaped them: a zombie still holds its pid, and a new postmaster
        # refuses to start while the pid in postmaster.pid answers kill(pid, 0).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_exists(p) for p in [pid, *children]):
            time.sleep(0.05)
        return len(children)

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _alive(pid)

    def dsn(self, db: str = DB_NAME) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


# ---- the service --------------------------------------------------------------------------


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens there (another run may hold it), else the next free one."""
    for port in range(preferred, preferred + 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port from {preferred}")


# ---- the run ------------------------------------------------------------------------------


@dataclass
class Attempt:
    kind: str  # "write" | "probe"
    started: float
    ended: float
    status: int | None  # None: transport error or client timeout
    error: str | None = None
    ctype: str = ""
    code: str | None = None

    @property
    def latency(self) -> float:
        return self.ended - self.started


@dataclass
class Fault:
    name: str
    began: float  # the database starts going away
    back: float = 0.0  # the database accepts connections again
    recovered: float | None = None  # first write acknowledged after `back`


@dataclass
class Run:
    t0: float
    attempts: list[Attempt] = field(default_factory=list)
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # key → response body
    replays: int = 0
    unacked: list[str] = field(default_factory=list)
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    stop_writing: bool = False
    burst_acks: list[float] = field(default_factory=list)


def now() -> float:
    return time.monotonic()


def _problem_code(r: httpx.Response) -> str | None:
    if not r.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    try:
        code = r.json().get("code")
    except ValueError:
        return None
    return str(code) if code is not None else None


async def deliver(
    client: httpx.AsyncClient,
    run: Run,
    key: str,
    body: bytes,
    headers: dict[str, str],
    give_up_at: float,
) -> float | None:
    """POST until acknowledged (201, first time or replayed); the same key and bytes each time.
    Returns the moment of the acknowledgement, None if it never came (in doubt)."""
    delay = 0.1
    while True:
        started = now()
        try:
            r = await client.post(
                "/v1/consent-events", content=body, headers={**headers, "Idempotency-Key": key}
            )
        except httpx.TransportError as exc:  # includes the client-side timeout
            run.attempts.append(Attempt("write", started, now(), None, type(exc).__name__))
        else:
            ended = now()
            run.attempts.append(
                Attempt(
                    "write",
                    started,
                    ended,
                    r.status_code,
                    None,
                    r.headers.get("content-type", ""),
                    _problem_code(r),
                )
            )
            if r.status_code == 201:
                if r.headers.get("idempotent-replayed") == "true":
                    run.replays += 1
                run.acked[key] = r.json()
                return ended
            if r.status_code < 500 and r.status_code != 409:
                run.rejected.append((key, r.status_code, r.text[:300]))
                return None
        if now() > give_up_at:
            run.unacked.append(key)
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def new_write(subjects: int, rnd: random.Random) -> tuple[str, bytes]:
    key = f"dur-{uuid.uuid4()}"
    occurred = datetime.now(UTC) - timedelta(seconds=rnd.uniform(0, 3600))
    body = {
        "policy_key": POLICY_KEY,
        "subject_id": f"subj-{rnd.randrange(subjects)}",
        "purpose": rnd.choice(PURPOSES),
        "action": rnd.choice(ACTIONS),
        "occurred_at": occurred.isoformat(),
        "source": "durability",
        "proof": {"key": key},
    }
    return key, json.dumps(body).encode()


async def writer(
    client: httpx.AsyncClient,
    run: Run,
    headers: dict[str, str],
    rate: float,
    subjects: int,
    seed: int,
    drain: float,
) -> None:
    rnd = random.Random(seed)
    interval = 1.0 / rate
    nxt = now()
    while not run.stop_writing:
        key, body = new_write(subjects, rnd)
        await deliver(client, run, key, body, headers, give_up_at=now() + drain + 60)
        nxt = max(nxt + interval, now())  # steady rate; no catch-up burst after an outage
        await asyncio.sleep(max(0.0, nxt - now()))


async def burst(
    client: httpx.AsyncClient, run: Run, headers: dict[str, str], n: int, conc: int, seed: int
) -> None:
    """`n` writes from `conc` clients as fast as they go (control mode, before a crash)."""
    rnd = random.Random(seed)
    todo = [new_write(50, rnd) for _ in range(n)]

    async def one() -> None:
        while todo:
            key, body = todo.pop()
            at = await deliver(client, run, key, body, headers, give_up_at=now() + 60)
            if at is not None:
                run.burst_acks.append(at)

    await asyncio.gather(*[one() for _ in range(conc)])


async def prober(client: httpx.AsyncClient, run: Run, headers: dict[str, str]) -> None:
    while not run.stop_writing:
        started = now()
        try:
            r = await client.get("/v1/subjects/subj-0/consents", headers=headers)
        except httpx.TransportError as exc:
            run.attempts.append(Attempt("probe", started, now(), None, type(exc).__name__))
        else:
            run.attempts.append(
                Attempt(
                    "probe",
                    started,
                    now(),
                    r.status_code,
                    None,
                    r.headers.get("content-type", ""),
                    _problem_code(r),
                )
            )
        await asyncio.sleep(max(0.0, 0.2 - (now() - started)))


async def wait_recovered(run: Run, fault: Fault, limit: float) -> None:
    """The first write acknowledged that was sent after the database came back."""
    deadline = fault.back + limit
    while now() < deadline:
        for a in run.attempts:
            if a.kind == "write" and a.status == 201 and a.started >= fault.back:
                fault.recovered = a.ended
                return
        await asyncio.sleep(0.1)


async def faults_normal(
    pg: PrivatePostgres, run: Run, duration: float, down: float, recover: float
) -> None:
    plan = [
        (0.2, "pg_ctl restart -m fast"),
        (0.45, f"pg_ctl stop -m fast, away {down:g} s, start"),
        (0.7, f"kill -9 postmaster + backends, away {down:g} s, start"),
    ]
    for at, name in plan:
        await asyncio.sleep(max(0.0, run.t0 + at * duration - now()))
        fault = Fault(name, now())
        run.faults.append(fault)
        log(f"fault: {name}")
        if name.startswith("pg_ctl restart"):
            await asyncio.to_thread(pg.restart, "fast")
        elif name.startswith("pg_ctl stop"):
            await asyncio.to_thread(pg.stop, "fast")
            await asyncio.sleep(down)
            await asyncio.to_thread(pg.start)
        else:
            killed = await asyncio.to_thread(pg.crash)
            log(f"  killed the postmaster and {killed} child processes")
            await asyncio.sleep(down)
            await asyncio.to_thread(pg.start)  # crash recovery replays the WAL
        fault.back = now()
        log(f"  database back after {fault.back - fault.began:.1f} s")
        await wait_recovered(run, fault, recover)
        if fault.recovered is not None:
            log(f"  service recovered {fault.recovered - fault.back:.2f} s after the database")
        else:
            log(f"  service NOT recovered within {recover:g} s")


async def faults_control(
    pg: PrivatePostgres,
    run: Run,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    duration: float,
    down: float,
    recover: float,
) -> None:
    for i, at in enumerate((0.25, 0.5, 0.75)):
        await asyncio.sleep(max(0.0, run.t0 + at * duration - now()))
        await burst(client, run, headers, n=400, conc=24, seed=1000 + i)
        fault = Fault("burst of acknowledged writes, then kill -9", now())
        killed = await asyncio.to_thread(pg.crash)
        last_ack = max(run.burst_acks) if run.burst_acks else fault.began
        run.faults.append(fault)
        log(
            f"fault: kill -9 postmaster + {killed} children "
            f"{(fault.began - last_ack) * 1000:.0f} ms after the last acknowledged write"
        )
        await asyncio.sleep(down)
        await asyncio.to_thread(pg.start)
        fault.back = now()
        await wait_recovered(run, fault, recover)


# ---- the verdict --------------------------------------------------------------------------


async def verify(
    pg: PrivatePostgres, run: Run, base: str, headers: dict[str, str]
) -> dict[str, Any]:
    conn = await asyncpg.connect(pg.dsn())
    try:
        rows = await conn.fetch(
            "SELECT id, proof->>'key' AS key, subject_id, action, occurred_at "
            "FROM consent_event WHERE tenant = $1",
            TENANT,
        )
        idem_rows = await conn.fetchval(
            "SELECT count(*) FROM idempotency_record WHERE tenant = $1 AND operation = $2",
            TENANT,
            "recordConsentEvent",
        )
        mismatches = await conn.fetch(
            """
            WITH newest AS (
                SELECT DISTINCT ON (subject_id, policy_key, purpose)
                    subject_id, policy_key, purpose, id, action, occurred_at, expires_at
                FROM consent_event WHERE tenant = $1
                ORDER BY subject_id, policy_key, purpose, occurred_at DESC, id DESC
            ), state AS (
                SELECT * FROM consent_state WHERE tenant = $1
            )
            SELECT n.subject_id AS ledger_subject, s.subject_id AS state_subject,
                   n.id AS newest_id, s.event_id AS state_event
            FROM newest n FULL JOIN state s USING (subject_id, policy_key, purpose)
            WHERE n.id IS DISTINCT FROM s.event_id
               OR n.action IS DISTINCT FROM s.state
               OR n.occurred_at IS DISTINCT FROM s.since
               OR n.expires_at IS DISTINCT FROM s.expires_at
            """,
            TENANT,
        )
        newest = {
            r["subject_id"]: str(r["id"])
            for r in await conn.fetch(
                """
                SELECT DISTINCT ON (subject_id) subject_id, id FROM consent_event
                WHERE tenant = $1 AND policy_key = $2 AND purpose = $3
                ORDER BY subject_id, occurred_at DESC, id DESC
                """,
                TENANT,
                POLICY_KEY,
                PURPOSES[0],
            )
        }
    finally:
        await conn.close()

    by_key: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    stored_ids = {str(r["id"]) for r in rows}
    acked_ids = {body["id"] for body in run.acked.values()}
    lost = sorted(k for k, body in run.acked.items() if body["id"] not in stored_ids)
    dup_keys = {k: len(v) for k, v in by_key.items() if len(v) > 1}
    duplicates = sum(n - 1 for n in dup_keys.values())
    unacked_stored = sorted(k for k in by_key if k not in run.acked)
    wrong_row = 0
    for k, body in run.acked.items():
        for r in by_key.get(k, []):
            if (
                str(r["id"]) != body["id"]
                or r["subject_id"] != body["subject_id"]
                or (r["action"] != body["action"])
            ):
                wrong_row += 1

    # The projection read through the API, subject by subject.
    api_mismatch = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for subject, event_id in sorted(newest.items()):
            r = await client.get(f"/v1/subjects/{subject}/consents", headers=headers)
            got = {c["purpose"]: c.get("event_id") for c in r.json()["consents"]}
            if r.status_code != 200 or got.get(PURPOSES[0]) != event_id:
                api_mismatch += 1
    return {
        "acknowledged": len(run.acked),
        "acknowledged_ids_distinct": len(acked_ids),
        "stored": len(rows),
        "idempotency_records": idem_rows,
        "duplicates": duplicates,
        "duplicate_keys": len(dup_keys),
        "lost": len(lost),
        "lost_keys_sample": lost[:5],
        "stored_but_never_acknowledged": len(unacked_stored),
        "rows_differing_from_their_ack": wrong_row,
        "projection_mismatches": len(mismatches),
        "projection_mismatches_via_api": api_mismatch,
        "subjects_checked_via_api": len(newest),
    }


def judge_outages(run: Run, max_latency: float) -> dict[str, Any]:
    """Every answer is a 2xx, a 409 (key in flight) or a 503 problem+json; none takes longer
    than `max_latency`; each fault with the database away for a while showed 503s."""
    statuses = Counter(
        str(a.status) if a.status is not None else a.error or "error" for a in run.attempts
    )
    bad_5xx = [
        a
        for a in run.attempts
        if a.status is not None
        and a.status >= 500
        and not (a.status == 503 and a.ctype.startswith("application/problem+json"))
    ]
    slow = [a for a in run.attempts if a.latency > max_latency]
    transport = [a for a in run.attempts if a.status is None]
    per_fault = []
    for f in run.faults:
        away = [a for a in run.attempts if f.began <= a.started < f.back]
        codes = Counter(a.code for a in away if a.status == 503)
        lat = [a.latency for a in away if a.status == 503]
        per_fault.append(
            {
                "fault": f.name,
                "database_away_s": round(f.back - f.began, 2),
                "answers_while_away": len(away),
                "503_problem_while_away": sum(codes.values()),
                "503_codes": dict(codes),
                "503_max_latency_s": round(max(lat), 3) if lat else None,
                "recovered_after_s": (
                    round(f.recovered - f.back, 2) if f.recovered is not None else None
                ),
            }
        )
    return {
        "statuses": dict(statuses),
        "non_problem_or_500_answers": len(bad_5xx),
        "bad_5xx_sample": [(a.kind, a.status, a.ctype, a.code) for a in bad_5xx[:5]],
        "answers_slower_than_max": len(slow),
        "max_latency_s": round(max((a.latency for a in run.attempts), default=0.0), 3),
        "p50_write_latency_ms": round(
            statistics.median([a.latency for a in run.attempts if a.kind == "write"] or [0]) * 1000,
            1,
        ),
        "transport_errors_or_timeouts": len(transport),
        "faults": per_fault,
    }


# ---- main ---------------------------------------------------------------------------------


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of writes")
    parser.add_argument("--clients", type=int, default=8, help="concurrent writers")
    parser.add_argument("--rate", type=float, default=80, help="writes per second, in all")
    parser.add_argument("--subjects", type=int, default=50, help="distinct subjects written")
    parser.add_argument("--down", type=float, default=4, help="seconds the database stays away")
    parser.add_argument("--pg-port", type=int, default=55432)
    parser.add_argument("--app-port", type=int, default=8131)
    parser.add_argument("--timeout", type=float, default=10, help="client timeout per request")
    parser.add_argument(
        "--max-latency", type=float, default=5, help="slower answers count as hangs"
    )
    parser.add_argument("--recover-within", type=float, default=15)
    parser.add_argument("--control", action="store_true", help="synchronous_commit=off run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data, logs)")
    args = parser.parse_args()

    settings = {"synchronous_commit": "on"}
    if args.control:
        # Commits are acknowledged before their WAL is written; the WAL writer wakes rarely.
        settings = {
            "synchronous_commit": "off",
            "wal_writer_delay": "10000ms",
            "wal_writer_flush_after": "0",
        }
    root = Path(tempfile.mkdtemp(prefix="prapi-durability-"))
    os.chmod(root, 0o755)
    pg = PrivatePostgres(root, free_port(args.pg_port), settings)
    args.app_port = free_port(args.app_port)
    service: subprocess.Popen[bytes] | None = None
    mode = "CONTROL (synchronous_commit=off)" if args.control else "normal"
    try:
        log(f"mode: {mode}; private PostgreSQL {pg.bindir.parent.name} in {root}, port {pg.port}")
        await asyncio.to_thread(pg.init)
        await asyncio.to_thread(pg.start)
        admin = await asyncpg.connect(pg.dsn("postgres"))
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
        log(
            f"  synchronous_commit = {await admin.fetchval('SHOW synchronous_commit')}, "
            f"fsync = {await admin.fetchval('SHOW fsync')}"
        )
        await admin.close()
        sa_url = pg.dsn().replace("postgresql://", "postgresql+asyncpg://", 1)
        env = {
            **os.environ,
            "DATABASE_URL": sa_url,
            "AUTH_SECRET": SECRET,
            "APP_ENV": "dev",
            "LOG_LEVEL": "WARNING",
        }
        await asyncio.to_thread(migrate, env)
        service = start_server("app.main:app", args.app_port, env, root)  # log: <port>.log
        base = f"http://127.0.0.1:{args.app_port}"
        await wait_up(base + "/healthz")
        service_pid = service.pid

        keys = KeyConfig("HS256", SECRET, SECRET, None, None, None)
        token = mint_token(
            keys,
            tenant=TENANT,
            scopes=["policies:write", "consent:read", "consent:write"],
            ttl_seconds=24 * 3600,
            now=time.time() - 120,
        )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        policy = dict(SPOTRAK_EXAMPLE, key=POLICY_KEY)  # v1 also governs earlier instants
        async with httpx.AsyncClient(base_url=base) as c:
            r = await c.post("/v1/policies", json=policy, headers=headers)
            if r.status_code != 201:
                raise RuntimeError(f"policy: {r.status_code} {r.text}")

        log(
            f"writing for {args.duration:g} s: {args.clients} clients, {args.rate:g} writes/s, "
            f"{args.subjects} subjects; client timeout {args.timeout:g} s"
        )
        limits = httpx.Limits(max_connections=args.clients + 32)
        async with httpx.AsyncClient(base_url=base, timeout=args.timeout, limits=limits) as client:
            run = Run(t0=now())
            drain = 30.0
            tasks = [
                asyncio.create_task(
                    writer(
                        client,
                        run,
                        headers,
                        args.rate / args.clients,
                        args.subjects,
                        seed=i,
                        drain=drain,
                    )
                )
                for i in range(args.clients)
            ]
            tasks.append(asyncio.create_task(prober(client, run, headers)))
            if args.control:
                await faults_control(
                    pg, run, client, headers, args.duration, args.down, args.recover_within
                )
            else:
                await faults_normal(pg, run, args.duration, args.down, args.recover_within)
            await asyncio.sleep(max(0.0, run.t0 + args.duration - now()))
            run.stop_writing = True
            log("stopping: in-flight writes finish (retrying until acknowledged)")
            await asyncio.gather(*tasks)

        service_alive = service.poll() is None and service.pid == service_pid
        verdict = await verify(pg, run, base, headers)
        outages = judge_outages(run, args.max_latency)
    finally:
        if service is not None and service.poll() is None:
            os.killpg(service.pid, signal.SIGTERM)
            try:
                service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
        if pg.is_running():
            try:
                pg.stop("immediate")
            except Exception as exc:  # best effort on the way out
                log(f"could not stop the private PostgreSQL: {exc}")
        if args.keep:
            log(f"kept {root} (data, postgres.log, {args.app_port}.log)")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"RESULT mode:                   {mode}")
    print(f"RESULT acknowledged:           {verdict['acknowledged']}")
    print(f"RESULT stored:                 {verdict['stored']}")
    print(f"RESULT duplicates:             {verdict['duplicates']}")
    print(f"RESULT lost:                   {verdict['lost']}")
    print(
        f"RESULT projection mismatches:  {verdict['projection_mismatches']} (SQL), "
        f"{verdict['projection_mismatches_via_api']} (API, "
        f"{verdict['subjects_checked_via_api']} subjects)"
    )
    print(f"RESULT replayed acks:          {run.replays}")
    print(f"RESULT never acknowledged:     {len(run.unacked)} (rejected {len(run.rejected)})")
    print(f"RESULT service restarted:      {'no' if service_alive else 'YES (or died)'}")
    print(f"RESULT answers:                {outages['statuses']}")
    print(f"RESULT 500s / non-problem 5xx: {outages['non_problem_or_500_answers']}")
    print(
        f"RESULT answers > {args.max_latency:g} s:        {outages['answers_slower_than_max']} "
        f"(max {outages['max_latency_s']} s)"
    )
    for f in outages["faults"]:
        print(f"RESULT fault: {json.dumps(f)}")
    print("SUMMARY " + json.dumps({"mode": mode, **verdict, **outages}, default=str))

    if args.control:
        if verdict["lost"] > 0:
            print(
                f"\nCONTROL: lost = {verdict['lost']} > 0, as expected: with synchronous_commit="
                "off the server acknowledges commits whose WAL was still in memory when it was "
                "killed. The harness detects loss."
            )
            return 0
        print("\nCONTROL: no loss observed — the control did not demonstrate detection this time")
        return 1

    failures = []
    if verdict["lost"]:
        failures.append("acknowledged events lost")
    if verdict["duplicates"] or verdict["stored_but_never_acknowledged"]:
        failures.append("duplicates or unacknowledged rows stored")
    if verdict["rows_differing_from_their_ack"]:
        failures.append("stored rows differ from their acknowledgement")
    if verdict["projection_mismatches"] or verdict["projection_mismatches_via_api"]:
        failures.append("projection differs from the ledger")
    if run.unacked or run.rejected:
        failures.append("writes never acknowledged")
    if not service_alive:
        failures.append("the service did not survive")
    if outages["non_problem_or_500_answers"]:
        failures.append("500 or non-problem 5xx answers")
    if outages["answers_slower_than_max"] or outages["transport_errors_or_timeouts"]:
        failures.append("hung or timed-out requests")
    for f in outages["faults"]:
        if f["recovered_after_s"] is None:
            failures.append(f"no recovery after: {f['fault']}")
        if f["database_away_s"] >= 2 and not f["503_problem_while_away"]:
            failures.append(f"no 503 problem while the database was away: {f['fault']}")
    print("\nPASS" if not failures else "\nFAIL: " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
