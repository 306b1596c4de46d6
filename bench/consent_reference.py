"""The minimal reference the consent ledger is measured against (issue 5, item 8).

FastAPI + asyncpg and nothing else: no auth, no policy lookup, no idempotency, no
middleware. It does the same database work as the product's hot paths, on the product's
own tables (same rows, same indexes):

- POST /consent-events: in one transaction, INSERT the event and UPSERT the projection
  (overwriting only with a newer `occurred_at`) — two statements, as one would write it;
- GET /subjects/{subject_id}/consents: one SELECT of the projection rows.

Run: DATABASE_URL=postgresql://… uvicorn bench.consent_reference:app --port 8102
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

TENANT = os.environ.get("REFERENCE_TENANT", "bench-reference")

INSERT_EVENT = """
INSERT INTO consent_event (id, tenant, policy_key, policy_version, subject_id, purpose, action,
    occurred_at, expires_at, recorded_at, source, proof, gpc, erased, actor)
VALUES ($1, $2, $3, 1, $4, $5, $6, $7, NULL, $8, $9, $10::jsonb, false, false, 'reference')
"""
UPSERT_STATE = """
INSERT INTO consent_state AS cs (tenant, subject_id, policy_key, purpose, state, since,
    event_id, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
ON CONFLICT (tenant, subject_id, policy_key, purpose) DO UPDATE
    SET state = excluded.state, since = excluded.since, event_id = excluded.event_id,
        expires_at = excluded.expires_at
    WHERE (cs.since, cs.event_id) < (excluded.since, excluded.event_id)
"""
SELECT_STATES = """
SELECT policy_key, purpose, state, since, expires_at, event_id FROM consent_state
WHERE tenant = $1 AND subject_id = $2
"""


class EventIn(BaseModel):
    policy_key: str
    subject_id: str
    purpose: str
    action: str
    occurred_at: AwareDatetime | None = None
    source: str | None = None
    proof: dict[str, Any] | None = None


def _dsn() -> str:
    url = os.environ["DATABASE_URL"]
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(_dsn(), min_size=10, max_size=20)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.post("/consent-events", status_code=201)
async def record(body: EventIn) -> JSONResponse:
    now = datetime.now(UTC)
    occurred_at = body.occurred_at or now
    event_id = uuid.uuid4()
    proof = json.dumps(body.proof) if body.proof is not None else None
    pool: asyncpg.Pool = app.state.pool
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            INSERT_EVENT,
            event_id,
            TENANT,
            body.policy_key,
            body.subject_id,
            body.purpose,
            body.action,
            occurred_at,
            now,
            body.source,
            proof,
        )
        await conn.execute(
            UPSERT_STATE,
            TENANT,
            body.subject_id,
            body.policy_key,
            body.purpose,
            body.action,
            occurred_at,
            event_id,
        )
    return JSONResponse(
        {
            "id": str(event_id),
            "subject_id": body.subject_id,
            "purpose": body.purpose,
            "action": body.action,
            "occurred_at": occurred_at.isoformat(),
        },
        status_code=201,
    )


@app.get("/subjects/{subject_id}/consents")
async def consents(subject_id: str) -> JSONResponse:
    pool: asyncpg.Pool = app.state.pool
    rows = await pool.fetch(SELECT_STATES, TENANT, subject_id)
    return JSONResponse(
        {
            "subject_id": subject_id,
            "consents": [
                {
                    "policy_key": r["policy_key"],
                    "purpose": r["purpose"],
                    "state": r["state"],
                    "since": r["since"].isoformat(),
                    "expires_at": r["expires_at"].isoformat() if r["expires_at"] else None,
                    "event_id": str(r["event_id"]),
                }
                for r in rows
            ],
        }
    )
