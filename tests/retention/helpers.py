"""Shared steps of the retention tests: a policy with sweepable and per-subject rules,
systems, a worker that looks for sweeps every round, system tokens."""

from __future__ import annotations

import copy
from typing import Any

import httpx
from fastapi import FastAPI

from app.worker import Worker
from tests.conftest import spotrak_body
from tests.fulfilment.helpers import system_auth

__all__ = ["policy", "system", "system_auth", "worker"]


def policy_body(
    key: str = "spotrak", keep_logs: dict[str, Any] | None = None, tz: str = "Europe/Paris"
) -> dict[str, Any]:
    body = copy.deepcopy(spotrak_body(key))
    body["jurisdiction"]["timezone"] = tz
    body["retention"] = [
        {
            "category": "technical_logs",
            "keep_for": keep_logs or {"value": 1, "unit": "months"},
            "starts_at": "collected",
            "then": "delete",
        },
        {
            "category": "business_data",
            "keep_for": {"value": 3, "unit": "years"},
            "starts_at": "contract_ended",
            "then": "archive",
        },
        {
            "category": "support_tickets",
            "keep_for": {"value": 6, "unit": "months"},
            "starts_at": "account_closed",
            "then": "anonymize",
        },
        {
            "category": "marketing_profile",
            "keep_for": {"value": 30, "unit": "days"},
            "starts_at": "last_activity",
            "then": "delete",
        },
        {"category": "legal_archive", "keep_for": None, "starts_at": "collected", "then": "review"},
    ]
    return body


async def policy(client: httpx.AsyncClient, auth: dict[str, str], **kw: Any) -> dict[str, Any]:
    r = await client.post("/v1/policies", headers=auth, json=policy_body(**kw))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def system(
    client: httpx.AsyncClient, auth: dict[str, str], key: str, categories: list[str], **over: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": f"System {key}",
        "categories": categories,
        "handles": ["access", "erasure"],
        "delivery": {"mode": "pull"},
    }
    body.update(over)
    r = await client.post("/v1/systems", headers=auth, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def worker(app: FastAPI) -> Worker:
    """A worker that looks for the day's sweeps every round (tests pin the clock)."""
    settings = app.state.settings.model_copy(update={"retention_sweep_check_seconds": 0})
    return Worker(app.state.sessionmaker, settings, clock=app.state.clock)


async def sweeps(
    client: httpx.AsyncClient, auth: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    r = await client.get("/v1/retention/sweeps", headers=auth, params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def tasks(
    client: httpx.AsyncClient, auth: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    r = await client.get("/v1/tasks", headers=auth, params={"limit": "500", **params})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])
