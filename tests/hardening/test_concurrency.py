"""Concurrency (issue 8, item 7): races through the real stack, on SQLite and PostgreSQL.

`asyncio.gather` through the in-process client: on PostgreSQL the requests really overlap (each
has its own pooled connection, row locks decide); on SQLite the write lock serialises them. Either
way the outcome must be the same: one winner per state, a version and a timeline that agree,
and a consent projection equal to the newest event of the ledger.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, spotrak_body

N = 50
NOW = datetime(2027, 2, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


async def _ticket(client: httpx.AsyncClient, auth: dict[str, str]) -> str:
    r = await client.post(
        "/v1/dsars",
        headers=auth,
        json={
            "policy_key": "spotrak",
            "type": "access",
            "subject": {"id": "user-race", "email": "race@example.com"},
            "received_at": "2027-01-31T10:00:00+01:00",
            "channel": "email",
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _move(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tid: str,
    to: str,
    if_match: str | None = None,
) -> httpx.Response:
    headers = dict(auth)
    if if_match is not None:
        headers["If-Match"] = if_match
    body: dict[str, Any] = {"to": to}
    if to == "rejected":
        body["reason"] = "manifestly unfounded"
    return await client.post(f"/v1/dsars/{tid}/transitions", headers=headers, json=body)


async def _timeline(client: httpx.AsyncClient, auth: dict[str, str], tid: str) -> list[Any]:
    r = await client.get(f"/v1/dsars/{tid}/events", headers=auth, params={"limit": 500})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _assert_chain(events: list[dict[str, Any]], final: str) -> list[tuple[str, str]]:
    """The status changes form ONE chain from `received` to `final`: no state left twice."""
    moves = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "status_changed"]
    froms = Counter(f for f, _ in moves)
    assert all(n == 1 for n in froms.values()), f"a state was left twice: {moves}"
    step, chain = "received", []
    nxt = dict(moves)
    while step in nxt:
        chain.append((step, nxt[step]))
        step = nxt[step]
    assert step == final, f"the chain ends in {step}, not {final}: {moves}"
    assert len(chain) == len(moves), f"not one chain: {moves}"
    assert chain == moves, f"timeline out of order: {moves}"
    return chain


def _assert_losers_refused(responses: list[httpx.Response]) -> None:
    for r in responses:
        if r.status_code != 200:
            assert r.status_code in (409, 412), (r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_fifty_concurrent_transitions_one_winner_per_state(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    tid = await _ticket(client, spotrak)

    # received → in_progress, 50 times at once (half of them also sending If-Match: "1").
    first = await asyncio.gather(
        *[_move(client, spotrak, tid, "in_progress", '"1"' if i % 2 else None) for i in range(N)]
    )
    assert [r.status_code for r in first].count(200) == 1, Counter(r.status_code for r in first)
    _assert_losers_refused(first)
    won = next(r for r in first if r.status_code == 200)
    assert won.json()["version"] == 2
    assert won.headers["etag"] == '"2"'

    # in_progress → completed, 50 times at once.
    second = await asyncio.gather(
        *[_move(client, spotrak, tid, "completed", '"2"' if i % 2 else None) for i in range(N)]
    )
    assert [r.status_code for r in second].count(200) == 1, Counter(r.status_code for r in second)
    _assert_losers_refused(second)

    # completed is final: 50 more attempts all lose and change nothing.
    third = await asyncio.gather(*[_move(client, spotrak, tid, "withdrawn") for _ in range(N)])
    assert {r.status_code for r in third} == {409}

    ticket = (await client.get(f"/v1/dsars/{tid}", headers=spotrak)).json()
    assert (ticket["status"], ticket["version"]) == ("completed", 3)
    events = await _timeline(client, spotrak, tid)
    assert [e["kind"] for e in events].count("status_changed") == 2
    assert _assert_chain(events, "completed") == [
        ("received", "in_progress"),
        ("in_progress", "completed"),
    ]


async def test_fifty_concurrent_mixed_transitions_keep_version_and_timeline_consistent(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    """Racing different targets: several may win in turn (received → awaiting_verification →
    in_progress → …), but never two from the same state, and every win is one version and one
    event."""
    tid = await _ticket(client, spotrak)
    targets = ["awaiting_verification", "in_progress", "completed", "rejected", "withdrawn"]
    rnd = random.Random(8)
    responses = await asyncio.gather(
        *[_move(client, spotrak, tid, rnd.choice(targets)) for _ in range(N)]
    )
    _assert_losers_refused(responses)
    wins = [r.json() for r in responses if r.status_code == 200]
    assert wins, Counter(r.status_code for r in responses)
    assert sorted(w["version"] for w in wins) == list(range(2, 2 + len(wins)))

    ticket = (await client.get(f"/v1/dsars/{tid}", headers=spotrak)).json()
    assert ticket["version"] == 1 + len(wins)
    assert ticket["status"] == max(wins, key=lambda w: w["version"])["status"]
    events = await _timeline(client, spotrak, tid)
    chain = _assert_chain(events, ticket["status"])
    assert len(chain) == len(wins)
    assert [to for _, to in chain] == [
        w["status"] for w in sorted(wins, key=lambda w: w["version"])
    ]


async def test_fifty_concurrent_consent_events_project_the_newest(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    now = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
    clock.pinned = datetime(2026, 1, 1, tzinfo=UTC)
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text
    clock.pinned = now

    rnd = random.Random(7)
    offsets = rnd.sample(range(1, 10_000), N)  # distinct instants, sent in random order
    bodies = [
        {
            "policy_key": "spotrak",
            "subject_id": "subject-race",
            "purpose": "audience_cookies",
            "action": rnd.choice(["granted", "denied", "withdrawn"]),
            "occurred_at": (now - timedelta(seconds=s)).isoformat(),
            "source": "race",
        }
        for s in offsets
    ]
    responses = await asyncio.gather(
        *[client.post("/v1/consent-events", headers=auth, json=b) for b in bodies]
    )
    assert [x.status_code for x in responses] == [201] * N, [
        x.text for x in responses if x.status_code != 201
    ]
    created = [x.json() for x in responses]
    assert len({e["id"] for e in created}) == N
    newest = created[offsets.index(min(offsets))]  # the smallest offset is the newest instant

    r = await client.get("/v1/subjects/subject-race/consents", headers=auth)
    assert r.status_code == 200, r.text
    entry = next(c for c in r.json()["consents"] if c["purpose"] == "audience_cookies")
    assert entry["event_id"] == newest["id"]
    assert entry["state"] == newest["action"]
    assert datetime.fromisoformat(entry["since"]) == now - timedelta(seconds=min(offsets))

    history = await client.get(
        "/v1/consent-events",
        headers=auth,
        params={"subject_id": "subject-race", "purpose": "audience_cookies", "limit": 500},
    )
    assert len(history.json()["items"]) == N
    assert history.json()["items"][0]["id"] == newest["id"]  # newest first
