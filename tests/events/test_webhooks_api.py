"""/v1/webhooks: subscriptions, SSRF refusal, allow-list, tenant walls, ping, deliveries."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from tests.conftest import auth_headers
from tests.events.helpers import Receiver, subscribe, worker_for


async def test_create_returns_secret_once_and_list_never_shows_it(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/webhooks",
        headers=auth,
        json={"url": "https://93.184.215.14/hook", "events": ["dsar.created", "dsar.created"]},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/webhooks/{body['id']}"
    assert body["events"] == ["dsar.created"]
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) == 24
    listed = (await client.get("/v1/webhooks", headers=auth)).json()
    assert [w["id"] for w in listed["items"]] == [body["id"]]
    assert "secret" not in listed["items"][0]
    assert listed["next_cursor"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/hook",
        "http://192.168.1.10:8080/x",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9000/hook",
        "http://localhost:8000/hook",
        "http://metadata.google.internal/",
        "http://127.0.0.2/hook",
        "http://0.0.0.0/",
        "http://2130706433/",
        "ftp://93.184.215.14/hook",
        "file:///etc/passwd",
        "not a url",
    ],
)
async def test_private_loopback_and_non_http_targets_are_refused(
    client: httpx.AsyncClient, auth: dict[str, str], url: str
) -> None:
    r = await client.post(
        "/v1/webhooks", headers=auth, json={"url": url, "events": ["dsar.created"]}
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "webhook_url_refused"
    assert problem["errors"][0]["loc"] == ["body", "url"]


async def test_allow_listed_host_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    # The test settings allow 127.0.0.1 (WEBHOOK_ALLOW_HOSTS), for the local receiver.
    r = await client.post(
        "/v1/webhooks",
        headers=auth,
        json={"url": "http://127.0.0.1:9/hook", "events": ["consent.changed"]},
    )
    assert r.status_code == 201, r.text


async def test_unknown_event_type_is_422(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    r = await client.post(
        "/v1/webhooks", headers=auth, json={"url": "https://93.184.215.14/", "events": ["x.y"]}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"][:2] == ["body", "events"]


async def test_another_tenants_webhook_is_404_and_scope_is_required(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    hook = await subscribe(client, auth, "https://93.184.215.14/hook", ["dsar.created"])
    other = auth_headers("someone-else-" + hook["id"][:8])
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=other)).status_code == 404
    assert (await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=other)).status_code == 404
    r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=other)
    assert r.status_code == 404
    assert r.json()["code"] == "webhook_not_found"
    assert (await client.get("/v1/webhooks", headers=other)).json()["items"] == []
    reader = auth_headers("t-scope", ["dsar:read"])
    assert (await client.get("/v1/webhooks", headers=reader)).status_code == 403


async def test_delete_is_204_then_404(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    hook = await subscribe(client, auth, "https://93.184.215.14/hook", ["dsar.created"])
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)).status_code == 204
    assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)).status_code == 404
    assert (await client.get("/v1/webhooks", headers=auth)).json()["items"] == []


async def test_idempotent_create_replays_the_same_subscription(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"url": "https://93.184.215.14/hook", "events": ["breach.created"]}
    headers = {**auth, "Idempotency-Key": "hook-1"}
    first = await client.post("/v1/webhooks", headers=headers, json=body)
    again = await client.post("/v1/webhooks", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert len((await client.get("/v1/webhooks", headers=auth)).json()["items"]) == 1


async def test_ping_is_queued_then_delivered_signed_to_a_real_receiver(
    client: httpx.AsyncClient, auth: dict[str, str], app: object
) -> None:
    async with Receiver() as rx:
        hook = await subscribe(client, auth, rx.url, ["dsar.created"])
        r = await client.post(f"/v1/webhooks/{hook['id']}/ping", headers=auth)
        assert r.status_code == 200, r.text
        queued = r.json()
        assert queued["status"] == "pending"
        assert queued["event_type"] == "webhook.ping"
        assert queued["attempts"] == []
        # the response is the delivery as the deliveries list shows it, every field
        r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        assert r.json()["items"] == [queued]
        assert queued["webhook_id"] == hook["id"]
        assert queued["message_id"] == f"msg_{uuid.UUID(queued['id']).hex}"
        assert isinstance(queued["event_id"], int)
        assert queued["attempt_count"] == 0
        assert queued["next_attempt_at"] == queued["created_at"]
        assert (queued["last_status_code"], queued["last_error"], queued["delivered_at"]) == (
            None,
            None,
            None,
        )
        async with worker_for(app) as worker:  # type: ignore[arg-type]
            await worker.run_once()
        assert len(rx.requests) == 1
        got = rx.requests[0]
        assert got.verifies(hook["secret"])
        assert got.headers["webhook-id"] == queued["message_id"]
        assert got.json()["type"] == "webhook.ping"
        assert got.json()["data"] == {"webhook_id": hook["id"]}
        r = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth)
        [delivery] = r.json()["items"]
        assert delivery["status"] == "succeeded"
        assert delivery["attempt_count"] == 1
        assert delivery["attempts"][0]["status_code"] == 200
        await client.delete(f"/v1/webhooks/{hook['id']}", headers=auth)
