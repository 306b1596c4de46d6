"""Every subject that can be recorded can be read, exported and erased (issue 12, item 2).

Ids come from other systems: e-mail addresses, URNs, paths, any Unicode. They travel in the
path percent-encoded; an id no URL can carry is refused when it is written (422, nothing
recorded) instead of being recorded and stranded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import MutableClock
from tests.consent.helpers import NOW, POLICY_AT, consent_policy, event

AWKWARD = [
    "tenant/42",
    "100%",
    "%2F",
    "a+b",
    "what?",
    "frag#ment",
    "a;b=c",
    "jane doe",
    "José",
    "東京",
    "jane.doe+tag@example.com",
    "urn:example:tenant/42",
    "/leading",
    "trailing/",
    "a//b",
    "...",
    ".hidden/x.",
    "tenant/42/..x/x..",  # `..x` is not a dot segment
    "é/東京 ?#;+%/ok",
]

REFUSED = [
    pytest.param("..", id="dot-dot"),
    pytest.param(".", id="dot"),
    pytest.param("a/../b", id="dot-dot-segment"),
    pytest.param("./a", id="dot-segment"),
    pytest.param("tenant/..", id="trailing-dot-dot"),
    pytest.param("line\nbreak", id="newline"),
    pytest.param("tab\there", id="tab"),
    pytest.param("del\x7f", id="DEL"),
    pytest.param("c1\x85", id="C1-control"),
    pytest.param("", id="empty"),
    pytest.param("x" * 201, id="too-long"),
]


def url(subject_id: str, suffix: str = "") -> str:
    return f"/v1/subjects/{quote(subject_id, safe='')}{suffix}"


@pytest.fixture
async def spotrak(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> dict[str, str]:
    clock.pinned = POLICY_AT
    r = await client.post("/v1/policies", headers=auth, json=consent_policy())
    assert r.status_code == 201, r.text
    clock.pinned = NOW
    return auth


async def _record(client: httpx.AsyncClient, auth: dict[str, str], subject_id: str) -> Any:
    r = await client.post("/v1/consent-events", headers=auth, json=event(subject_id=subject_id))
    assert r.status_code == 201, r.text
    assert r.json()["subject_id"] == subject_id
    return r.json()


async def _dsar(client: httpx.AsyncClient, auth: dict[str, str], subject_id: str) -> httpx.Response:
    return await client.post(
        "/v1/dsars",
        headers=auth,
        json={"policy_key": "spotrak", "type": "erasure", "subject": {"id": subject_id}},
    )


@pytest.mark.parametrize("subject_id", AWKWARD)
async def test_an_awkward_id_is_recorded_read_exported_and_erased(
    client: httpx.AsyncClient, spotrak: dict[str, str], subject_id: str
) -> None:
    recorded = await _record(client, spotrak, subject_id)
    ticket = await _dsar(client, spotrak, subject_id)
    assert ticket.status_code == 201, ticket.text

    # the consents read: its hot handler (no query) and the declared route (a query) agree
    fast = await client.get(url(subject_id, "/consents"), headers=spotrak)
    declared = await client.get(
        url(subject_id, "/consents"), headers=spotrak, params={"policy_key": "spotrak"}
    )
    for r in (fast, declared):
        assert r.status_code == 200, r.text
        assert r.json()["subject_id"] == subject_id
        states = {c["purpose"]: c["state"] for c in r.json()["consents"]}
        assert states["audience_cookies"] == "granted"
    assert fast.json() == declared.json()

    exported = await client.get(url(subject_id, "/export"), headers=spotrak)
    assert exported.status_code == 200, exported.text
    body = exported.json()
    assert body["subject_id"] == subject_id
    assert [e["id"] for e in body["consent_events"]] == [recorded["id"]]
    assert [t["id"] for t in body["dsar_tickets"]] == [ticket.json()["id"]]

    erased = await client.delete(url(subject_id), headers=spotrak)
    assert erased.status_code == 204, erased.text
    assert (await client.get(url(subject_id, "/export"), headers=spotrak)).status_code == 404
    after = (await client.get(url(subject_id, "/consents"), headers=spotrak)).json()
    assert {c["state"] for c in after["consents"]} == {"not_set"}


async def test_ids_ending_like_a_route_reach_their_own_subject(
    client: httpx.AsyncClient, spotrak: dict[str, str]
) -> None:
    """`{subject_id:path}` routes: a GET ending in `/consents` or `/export` reads the id before
    it, DELETE takes the whole rest; ids that look like those ends stay apart."""
    ids = ["a", "a/consents", "a/export", "consents", "export", "a/consents/export"]
    for subject_id in ids:
        await _record(client, spotrak, subject_id)
    for subject_id in ids:
        r = await client.get(url(subject_id, "/consents"), headers=spotrak)
        assert r.json()["subject_id"] == subject_id
        exported = (await client.get(url(subject_id, "/export"), headers=spotrak)).json()
        assert exported["subject_id"] == subject_id
        assert len(exported["consent_events"]) == 1
    # erasing `a/consents` and `a/export` leaves `a` (and the others) alone
    for subject_id in ("a/consents", "a/export"):
        assert (await client.delete(url(subject_id), headers=spotrak)).status_code == 204
        assert (await client.get(url(subject_id, "/export"), headers=spotrak)).status_code == 404
    for subject_id in ("a", "consents", "export", "a/consents/export"):
        exported = await client.get(url(subject_id, "/export"), headers=spotrak)
        assert exported.status_code == 200, subject_id
    # a method no route takes at a subject path: 405 with the methods of that documented path
    for suffix, allow in (("/consents", "GET"), ("/export", "GET"), ("", "DELETE")):
        r = await client.put(url("a/b", suffix), headers=spotrak)
        assert r.status_code == 405
        assert r.headers["allow"] == allow


@pytest.mark.parametrize("subject_id", REFUSED)
async def test_an_id_no_url_can_carry_is_refused_when_written_and_nothing_is_recorded(
    client: httpx.AsyncClient, spotrak: dict[str, str], subject_id: str
) -> None:
    single = await client.post(
        "/v1/consent-events", headers=spotrak, json=event(subject_id=subject_id)
    )
    assert single.status_code == 422, single.text
    assert single.json()["errors"][0]["loc"] == ["body", "subject_id"]
    if len(subject_id) > 2:  # validation errors never echo the value sent
        assert subject_id not in single.text
    assert "the value sent" not in single.text  # the message was not scrubbed either

    batch = await client.post(
        "/v1/consent-events/batch",
        headers=spotrak,
        json={"events": [event(subject_id="fine"), event(subject_id=subject_id)]},
    )
    assert batch.status_code == 200, batch.text
    fine, refused = batch.json()["results"]
    assert fine["subject_id"] == "fine"
    assert refused["status"] == 422
    assert refused["errors"][0]["loc"] == ["body", "events", 1, "subject_id"]

    dsar = await _dsar(client, spotrak, subject_id)
    assert dsar.status_code == 422, dsar.text
    assert dsar.json()["errors"][0]["loc"] == ["body", "subject", "id"]

    events = (await client.get("/v1/consent-events", headers=spotrak)).json()["items"]
    assert [e["subject_id"] for e in events] == ["fine"]
    assert (await client.get("/v1/dsars", headers=spotrak)).json()["items"] == []


@pytest.mark.parametrize("subject_id", ["line\nbreak", "\r\n", "tab\t/\x0b"])
async def test_reads_and_erasure_take_any_id_even_one_refused_at_write(
    client: httpx.AsyncClient, spotrak: dict[str, str], subject_id: str
) -> None:
    """An id recorded before the write-time rules stays reachable: the path takes any id,
    line breaks included (a route that stopped at one would be an undocumented 404)."""
    r = await client.get(url(subject_id, "/consents"), headers=spotrak)
    assert r.status_code == 200, r.text
    assert r.json()["subject_id"] == subject_id
    for r in (
        await client.get(url(subject_id, "/export"), headers=spotrak),
        await client.delete(url(subject_id), headers=spotrak),
    ):
        assert (r.status_code, r.json()["code"]) == (404, "subject_not_found")


def test_the_refusal_is_documented_where_subject_ids_are_described() -> None:
    from app.__main__ import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for described in (
        schemas["ConsentEventIn"]["properties"]["subject_id"]["description"],
        doc["paths"]["/v1/subjects/{subject_id}"]["delete"]["description"],
    ):
        assert "`..`" in described
        assert "422" in described
    path_param = doc["paths"]["/v1/subjects/{subject_id}/export"]["get"]["parameters"][0]
    assert "percent-encoded" in path_param["description"]
