"""Shared steps of the fulfilment tests: a policy, systems, tickets moved to in_progress,
system tokens."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.security import mint_token
from app.events.models import OutboxEvent
from tests.conftest import TEST_KEYS, spotrak_body

# Received Sunday 2027-01-31 10:00 Paris: due (one month, no 31 Feb → 28 Feb, a Sunday →
# next working day) Monday 2027-03-01, end of day Paris.
RECEIVED = "2027-01-31T10:00:00+01:00"
AFTER_RECEIPT = datetime(2027, 2, 2, 9, 0, tzinfo=UTC)


def system_auth(tenant: str, system: str) -> dict[str, str]:
    token = mint_token(
        TEST_KEYS, tenant=tenant, scopes=["tasks:work"], sub=f"system:{system}", system=system
    )
    return {"Authorization": f"Bearer {token}"}


async def policy(
    client: httpx.AsyncClient, auth: dict[str, str], fulfilment: dict[str, Any] | None = None
) -> None:
    body = copy.deepcopy(spotrak_body())
    if fulfilment is not None:
        body["fulfilment"] = fulfilment
    r = await client.post("/v1/policies", headers=auth, json=body)
    assert r.status_code == 201, r.text


async def system(
    client: httpx.AsyncClient, auth: dict[str, str], key: str, **over: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": f"System {key}",
        "categories": ["business_data"],
        "handles": ["access", "erasure", "portability"],
        "delivery": {"mode": "pull"},
    }
    body.update(over)
    r = await client.post("/v1/systems", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def ticket(
    client: httpx.AsyncClient, auth: dict[str, str], type: str = "access", n: int = 0
) -> dict[str, Any]:
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "type": type,
            "subject": {"id": f"user-{n}", "email": f"person{n}@example.com", "name": "Jane"},
            "received_at": RECEIVED,
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def start(client: httpx.AsyncClient, auth: dict[str, str], tid: str) -> dict[str, Any]:
    r = await client.post(f"/v1/dsars/{tid}/transitions", headers=auth, json={"to": "in_progress"})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def tasks_of(
    client: httpx.AsyncClient, auth: dict[str, str], tid: str
) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/dsars/{tid}/tasks", headers=auth)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def outbox(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: str, type: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.tenant == tenant, OutboxEvent.type == type)
            .order_by(OutboxEvent.id)
        )
        return [dict(r.data) for r in rows]
