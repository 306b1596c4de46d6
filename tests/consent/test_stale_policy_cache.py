"""A consent event is never refused on the policy cache's word alone (DESIGN §16): a version
that defines the purpose may have been published through another process a moment ago, its
notification still on the way. The refusal path reads the policy's versions afresh."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from app.policies import cache
from tests.conftest import spotrak_body

NEW = {"key": "newsletter", "lawful_basis": "consent", "default": "denied"}


def _event(purpose: str, subject: str = "user-1") -> dict[str, Any]:
    return {"policy_key": "spotrak", "subject_id": subject, "purpose": purpose, "action": "granted"}


async def _settled(epoch: int, invalidations: int) -> None:
    """Until the cache has seen `invalidations` since `epoch`: on PostgreSQL a write's own
    invalidation and then its notification, which arrives a moment later."""
    for _ in range(500):
        if cache.VERSIONS.stamp() >= epoch + invalidations:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the notification never arrived")


async def _publish_behind_the_cache(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], tenant: str, backend: str
) -> None:
    """Version 2 (one more purpose, in force at once) published while this process's cache
    keeps version 1 — as if another process had published it and its notification had not
    arrived yet."""
    heard = 2 if backend == "postgresql" else 1
    listener = app.state.listener
    for _ in range(500):  # the app's listener is up (coming up, it clears the caches)
        if listener is None or listener.live:
            break
        await asyncio.sleep(0.01)
    epoch = cache.VERSIONS.stamp()
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    await _settled(epoch, heard)
    r = await client.post("/v1/consent-events", headers=auth, json=_event("audience_cookies"))
    assert r.status_code == 201, r.text
    stale = cache.VERSIONS.get((tenant, "spotrak"))
    assert stale is not None
    assert [v.version for v in stale] == [1]
    v2 = spotrak_body()
    v2["consent_purposes"] = [*v2["consent_purposes"], NEW]
    v2["change_notice"] = {"value": 0, "unit": "days"}
    epoch = cache.VERSIONS.stamp()
    r = await client.put("/v1/policies/spotrak", headers=auth, json=v2)
    assert r.status_code == 201, r.text
    await _settled(epoch, heard)
    cache.VERSIONS.put((tenant, "spotrak"), stale)


async def test_an_event_for_a_purpose_the_cache_does_not_know_yet_is_recorded(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], tenant: str, backend: str
) -> None:
    await _publish_behind_the_cache(app, client, auth, tenant, backend)
    r = await client.post("/v1/consent-events", headers=auth, json=_event("newsletter"))
    assert r.status_code == 201, r.text
    assert r.json()["policy_version"] == 2
    # a purpose no version defines is still refused, after the fresh read
    r = await client.post("/v1/consent-events", headers=auth, json=_event("nothing"))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "consent_unknown_purpose"
    assert "newsletter" in r.json()["defined"]


async def test_a_batch_reads_the_policy_afresh_once_for_such_a_purpose(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], tenant: str, backend: str
) -> None:
    await _publish_behind_the_cache(app, client, auth, tenant, backend)
    batch = {
        "events": [
            _event("newsletter", "a"),
            _event("nothing", "b"),
            _event("newsletter", "c"),
            _event("audience_cookies", "d"),
        ]
    }
    r = await client.post("/v1/consent-events/batch", headers=auth, json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["recorded"], body["rejected"]) == (3, 1)
    versions = [x.get("policy_version") for x in body["results"]]
    assert versions[0] == versions[2] == versions[3] == 2
    assert body["results"][1]["code"] == "consent_unknown_purpose"
