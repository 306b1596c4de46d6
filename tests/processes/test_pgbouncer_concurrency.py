"""DESIGN §16: through pgbouncer in transaction mode the whole API works. Here with more
client connections than server connections (a pool of 3), so that consecutive statements of
one client land on different server connections: a prepared statement that outlived its
transaction, or a name two clients share, fails at once. Both ways: the distribution's
pgbouncer with unnamed statements, and 1.24 keeping the named ones
(DB_POOLER_PREPARED_STATEMENTS), where the statements must really be kept on the servers."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from app.core.listen import asyncpg_dsn
from app.main import create_app
from tests.conftest import auth_headers, make_settings, spotrak_body
from tests.pgbouncer import start_pgbouncer


@pytest.mark.parametrize("prepared", [False, True], ids=["unnamed", "prepared"])
async def test_concurrent_requests_through_a_small_transaction_pool(
    pg_url: str, tmp_path: Path, prepared: bool
) -> None:
    pg = make_url(pg_url)
    bouncer = start_pgbouncer(
        tmp_path / "pgbouncer",
        pg.host or "127.0.0.1",
        pg.port or 5432,
        pool_size=3,
        prepared=prepared,
        admin=True,
    )
    try:
        pooled = bouncer.url_for(pg_url)
        settings = make_settings(
            pooled,
            db_pooler="pgbouncer",
            db_pooler_prepared_statements=prepared,
            database_listen_url=pg_url,
            db_pool_size=8,
        )
        app = create_app(settings)
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        headers = auth_headers(tenant)
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                r = await c.post("/v1/policies", headers=headers, json=spotrak_body())
                assert r.status_code == 201, r.text

                async def write(i: int) -> httpx.Response:
                    body: dict[str, Any] = {
                        "policy_key": "spotrak",
                        "subject_id": f"s-{i % 7}",
                        "purpose": "audience_cookies",
                        "action": ("granted", "denied", "withdrawn")[i % 3],
                    }
                    return await c.post("/v1/consent-events", headers=headers, json=body)

                async def read(i: int) -> httpx.Response:
                    return await c.get(f"/v1/subjects/s-{i % 7}/consents", headers=headers)

                async def dsar(i: int) -> httpx.Response:
                    body = {
                        "policy_key": "spotrak",
                        "type": "access",
                        "subject": {"id": f"d-{i}"},
                        "received_at": "2026-01-30T10:00:00+01:00",
                        "channel": "email",
                    }
                    return await c.post("/v1/dsars", headers=headers, json=body)

                for _ in range(3):
                    answers = await asyncio.gather(
                        *[write(i) for i in range(30)],
                        *[read(i) for i in range(30)],
                        *[dsar(i) for i in range(8)],
                        c.get("/v1/policies/spotrak", headers=headers),
                        c.get("/v1/dsars", headers=headers),
                    )
                    bad = [
                        (r.request.url.path, r.status_code) for r in answers if r.status_code >= 300
                    ]
                    assert bad == []
            kept = prepared_statements_on_servers(bouncer.port)
        # unnamed: nothing prepared outlives a statement; prepared: the servers keep them
        assert (sum(kept) > 0) is prepared, kept
        dsn = asyncpg_dsn(pg_url)
        assert dsn is not None
        conn = await asyncpg.connect(dsn)
        try:
            count = "SELECT count(*) FROM consent_event WHERE tenant = $1"
            assert await conn.fetchval(count, tenant) == 3 * 30
            count = "SELECT count(*) FROM dsar_ticket WHERE tenant = $1"
            assert await conn.fetchval(count, tenant) == 3 * 8
        finally:
            await conn.close()
    finally:
        bouncer.stop()


def prepared_statements_on_servers(port: int) -> list[int]:
    """pgbouncer's console (`SHOW SERVERS`, simple protocol only, hence psql): how many
    prepared statements each server connection keeps (the column exists from 1.21; older
    ones keep none)."""
    console = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "pgbouncer"]
    out = subprocess.run(
        [*console, "-X", "-A", "-F", "\t", "-c", "SHOW SERVERS"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = out.stdout.splitlines()
    header = lines[0].split("\t")
    if "prepared_statements" not in header:
        return []
    column = header.index("prepared_statements")
    return [int(line.split("\t")[column]) for line in lines[1:] if "\t" in line]
