"""The systems registry (`/v1/systems`) and system tokens (DESIGN §13)."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import httpx
import pytest
from jose import jwt

from app.__main__ import main
from app.core.security import ALL_SCOPES, parse_scopes
from tests.conftest import TEST_SECRET, auth_headers
from tests.events.helpers import Receiver
from tests.fulfilment.helpers import policy, start, system, system_auth, ticket


async def test_systems_are_registered_read_listed_and_patched(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    crm = await system(
        client,
        auth,
        "crm",
        task_within={"value": 5, "unit": "business_days"},
        contact_email="dpo@crm.example.com",
    )
    assert crm["secret"] is None
    assert crm["delivery"] == {"mode": "pull", "url": None, "disabled_at": None}
    assert crm["active"] is True
    r = await client.get("/v1/systems/crm", headers=auth)
    assert r.status_code == 200
    assert r.json()["task_within"] == {"value": 5, "unit": "business_days"}
    assert "secret" not in r.json()
    await system(client, auth, "billing", handles=["erasure"])
    r = await client.get("/v1/systems?limit=1", headers=auth)
    page = r.json()
    assert [s["key"] for s in page["items"]] == ["billing"]
    r = await client.get(f"/v1/systems?limit=1&cursor={page['next_cursor']}", headers=auth)
    assert [s["key"] for s in r.json()["items"]] == ["crm"]
    assert r.json()["next_cursor"] is None

    r = await client.patch("/v1/systems/crm", headers=auth, json={"active": False, "name": "CRM"})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert r.json()["name"] == "CRM"
    assert r.json()["version"] == 2
    assert r.json()["secret"] is None

    r = await client.post(
        "/v1/systems",
        headers=auth,
        json={
            "key": "crm",
            "name": "again",
            "handles": ["access"],
            "delivery": {"mode": "pull"},
        },
    )
    assert r.status_code == 409
    assert r.json()["code"] == "system_key_taken"


async def test_unknown_category_or_request_type_is_422_naming_the_field(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    base = {"key": "crm", "name": "CRM", "handles": ["access"], "delivery": {"mode": "pull"}}
    r = await client.post(
        "/v1/systems", headers=auth, json={**base, "categories": ["business_data", "pets"]}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "categories", 1]
    r = await client.post("/v1/systems", headers=auth, json={**base, "handles": ["teleport"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"][:3] == ["body", "handles", 0]
    r = await client.post(
        "/v1/systems", headers=auth, json={**base, "delivery": {"mode": "carrier_pigeon"}}
    )
    assert r.status_code == 422
    r = await client.patch("/v1/systems/nope", headers=auth, json={"active": False})
    assert r.status_code == 404
    assert r.json()["code"] == "system_not_found"


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/jobs",
        "http://localhost:8080/jobs",
        "http://169.254.169.254/latest",
        "ftp://jobs.example.com/",
        "http://[::1]/jobs",
    ],
)
async def test_a_push_url_follows_the_webhooks_private_network_refusal(
    client: httpx.AsyncClient, auth: dict[str, str], url: str
) -> None:
    await policy(client, auth)
    r = await client.post(
        "/v1/systems",
        headers=auth,
        json={
            "key": "vendor",
            "name": "Vendor",
            "handles": ["erasure"],
            "delivery": {"mode": "push", "url": url},
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "system_url_refused"
    assert r.json()["errors"][0]["loc"] == ["body", "delivery", "url"]


async def test_a_push_system_gets_its_secret_once_and_can_rotate_it(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    async with Receiver() as rx:
        vendor = await system(client, auth, "vendor", delivery={"mode": "push", "url": rx.url})
    assert vendor["secret"].startswith("whsec_")
    assert vendor["delivery"] == {"mode": "push", "url": rx.url, "disabled_at": None}
    r = await client.get("/v1/systems/vendor", headers=auth)
    assert "secret" not in r.json()
    r = await client.post("/v1/systems/vendor/rotate-secret", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("whsec_")
    assert r.json()["secret"] != vendor["secret"]
    await system(client, auth, "crm")
    r = await client.post("/v1/systems/crm/rotate-secret", headers=auth)
    assert r.status_code == 409
    assert r.json()["code"] == "system_not_push"
    # The push endpoint is not one of the tenant's webhooks.
    r = await client.get("/v1/webhooks", headers=auth)
    assert r.json()["items"] == []
    # A pull system switched to push gets a secret in the PATCH answer, once.
    r = await client.patch(
        "/v1/systems/crm", headers=auth, json={"delivery": {"mode": "push", "url": rx.url}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["secret"].startswith("whsec_")


async def test_another_tenants_system_is_404(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    other = auth_headers("t-someone-else")
    r = await client.get("/v1/systems/crm", headers=other)
    assert r.status_code == 404


async def test_systems_manage_is_required_and_in_all(
    client: httpx.AsyncClient, tenant: str
) -> None:
    assert "systems:manage" in ALL_SCOPES
    assert "tasks:work" not in ALL_SCOPES
    r = await client.get("/v1/systems", headers=auth_headers(tenant, ["dsar:read"]))
    assert r.status_code == 403


async def test_a_system_token_reaches_only_its_own_tasks_and_nothing_else(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    await policy(client, auth)
    await system(client, auth, "crm")
    await system(client, auth, "billing")
    t = await ticket(client, auth)
    await start(client, auth, t["id"])
    crm_auth = system_auth(tenant, "crm")
    r = await client.get("/v1/tasks", headers=crm_auth)
    assert r.status_code == 200
    mine = r.json()["items"]
    assert [x["system"] for x in mine] == ["crm"]
    r = await client.get("/v1/tasks?system=billing", headers=crm_auth)
    assert r.json()["items"] == []
    r = await client.get("/v1/tasks", headers=auth)
    everything = r.json()["items"]
    assert sorted(x["system"] for x in everything) == ["billing", "crm"]
    billing_task = next(x for x in everything if x["system"] == "billing")
    r = await client.get(f"/v1/tasks/{billing_task['id']}", headers=crm_auth)
    assert r.status_code == 404
    r = await client.post(
        f"/v1/tasks/{billing_task['id']}/result", headers=crm_auth, json={"status": "completed"}
    )
    assert r.status_code == 404
    r = await client.get(f"/v1/tasks/{mine[0]['id']}", headers=crm_auth)
    assert r.status_code == 200
    # Every other route: 403.
    for method, path in [
        ("GET", "/v1/dsars"),
        ("GET", f"/v1/dsars/{t['id']}"),
        ("GET", f"/v1/dsars/{t['id']}/tasks"),
        ("GET", "/v1/systems"),
        ("GET", "/v1/policies"),
        ("POST", f"/v1/tasks/{mine[0]['id']}/waive"),
        ("GET", "/v1/audit-events"),
    ]:
        r = await client.request(method, path, headers=crm_auth, json={"reason": "x"})
        assert r.status_code == 403, (method, path, r.status_code)
    # A token with the `system` claim and extra scopes is still only a system's token.
    from app.core.security import mint_token
    from tests.conftest import TEST_KEYS

    wide = mint_token(TEST_KEYS, tenant=tenant, scopes=[*ALL_SCOPES, "tasks:work"], system="crm")
    r = await client.get("/v1/dsars", headers={"Authorization": f"Bearer {wide}"})
    assert r.status_code == 403
    # An operator's `all` token cannot claim or report.
    r = await client.post("/v1/tasks/claim", headers=auth, json={})
    assert r.status_code == 403
    r = await client.post(
        f"/v1/tasks/{mine[0]['id']}/result", headers=auth, json={"status": "completed"}
    )
    assert r.status_code == 403
    # Another tenant's system token with the same key sees nothing.
    r = await client.get(f"/v1/tasks/{mine[0]['id']}", headers=system_auth("t-other", "crm"))
    assert r.status_code == 404


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["token", *args])
    return rc, out.getvalue().strip(), err.getvalue()


def test_the_token_command_mints_a_system_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("AUTH_SECRET", TEST_SECRET)
    get_settings.cache_clear()
    try:
        rc, token, _ = _cli("--tenant", "acme", "--scopes", "tasks:work", "--system", "crm")
        assert rc == 0
        claims = jwt.get_unverified_claims(token)
        assert claims["system"] == "crm"
        assert claims["scope"] == "tasks:work"
        rc, _, err = _cli("--tenant", "acme", "--scopes", "tasks:work")
        assert rc == 2
        assert "--system" in err
        rc, _, err = _cli("--tenant", "acme", "--scopes", "all", "--system", "crm")
        assert rc == 2
        rc, token, _ = _cli("--tenant", "acme", "--scopes", "all")
        assert "tasks:work" not in jwt.get_unverified_claims(token)["scope"].split()
    finally:
        get_settings.cache_clear()


def test_all_does_not_include_tasks_work() -> None:
    assert "tasks:work" not in parse_scopes("all")
    assert "systems:manage" in parse_scopes("all")
    assert parse_scopes("tasks:work", "crm") == ["tasks:work"]
