"""The access package: JSON, an HTML page rendered with autoescaping, an expiring signed link,
and a headless Chromium that must show a system's `<script>` as text (DESIGN §13)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import MutableClock, auth_headers
from tests.fulfilment.helpers import (
    AFTER_RECEIPT,
    policy,
    start,
    system,
    system_auth,
    tasks_of,
    ticket,
)

PAYLOAD = (
    "<script>document.body.setAttribute('data-pwned', 'script')</script>"
    "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"
)


async def _answered(client: httpx.AsyncClient, auth: dict[str, str], tenant: str) -> dict[str, Any]:
    await policy(client, auth)
    await system(client, auth, "crm", name="Customer CRM")
    await system(client, auth, "shop", name="Web shop")
    t = await ticket(client, auth, "access")
    await start(client, auth, t["id"])
    tasks = {x["system"]: x for x in await tasks_of(client, auth, t["id"])}
    r = await client.post(
        f"/v1/tasks/{tasks['crm']['id']}/result",
        headers=system_auth(tenant, "crm"),
        json={"status": "completed", "records_affected": 1, "data": {"note": PAYLOAD}},
    )
    assert r.status_code == 200, r.text
    return t


async def test_the_package_as_json_and_as_html(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str
) -> None:
    t = await _answered(client, auth, tenant)
    r = await client.get(f"/v1/dsars/{t['id']}/package", headers=auth)
    assert r.status_code == 200
    package = r.json()
    assert set(package) == {"dsar", "subject", "generated_at", "policy", "systems"}
    assert package["subject"]["email"] == "person0@example.com"
    assert package["policy"]["key"] == "spotrak"
    by_system = {s["system"]: s for s in package["systems"]}
    assert by_system["crm"]["data"] == {"note": PAYLOAD}
    assert by_system["crm"]["name"] == "Customer CRM"
    assert by_system["shop"]["status"] == "pending"
    assert by_system["shop"]["data"] is None
    r = await client.get(f"/v1/dsars/{t['id']}/package", headers={**auth, "Accept": "text/html"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src" not in r.headers["content-security-policy"]
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text
    assert "&lt;script&gt;" in r.text
    assert "Customer CRM" in r.text
    assert "Web shop" in r.text
    r = await client.get(f"/v1/dsars/{t['id']}/package", headers=auth_headers("t-other"))
    assert r.status_code == 404


async def test_the_link_opens_without_a_token_then_expires_and_refuses_tampering(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, clock: MutableClock
) -> None:
    t = await _answered(client, auth, tenant)
    r = await client.post(
        f"/v1/dsars/{t['id']}/package/link",
        headers=auth,
        json={"expires_in": {"value": 2, "unit": "hours"}},
    )
    assert r.status_code == 201, r.text
    link = r.json()
    assert r.headers["location"] == link["url"]
    path = link["url"].removeprefix("http://testserver")
    assert path.startswith("/v1/package-links/")
    r = await client.get("/v1/audit-events?limit=500", headers=auth)
    (made,) = [e for e in r.json()["items"] if e["action"] == "dsar.package_link_created"]
    assert made["data"]["expires_at"] == link["expires_at"]
    assert path.rsplit("/", 1)[1] not in r.text  # the token is never in the record
    r = await client.get(path)  # no Authorization header
    assert r.status_code == 200
    assert "&lt;script&gt;" in r.text
    assert "<script>" not in r.text
    assert r.headers["cache-control"] == "no-store"
    token = path.rsplit("/", 1)[1]
    # each opening is audited: the ticket, the link's expiry and digest, never the token or
    # the subject
    await client.get(path)
    r = await client.get("/v1/audit-events?limit=500", headers=auth)
    opened = [e for e in r.json()["items"] if e["action"] == "dsar.package_link_opened"]
    assert len(opened) == 2
    assert opened[0]["actor"] == "package-link"
    assert opened[0]["object_id"] == t["id"]
    assert opened[0]["data"] == {
        "id": t["id"],
        "expires_at": link["expires_at"],
        "link": made["data"]["link"],
    }
    assert len(made["data"]["link"]) == 64
    assert token not in r.text
    assert "person0" not in str([e["data"] for e in opened])
    payload, sig = token.split(".")
    for bad in (
        payload + "." + sig[:-2] + ("AA" if not sig.endswith("AA") else "BB"),
        payload[:-2] + "xx." + sig,
        "not-a-token",
        payload,
    ):
        r = await client.get(f"/v1/package-links/{bad}")
        assert r.status_code == 404, bad
        assert r.json()["code"] == "package_link_not_found"
    clock.pinned = AFTER_RECEIPT + timedelta(hours=3)
    r = await client.get(path)
    assert r.status_code == 410
    assert r.json()["code"] == "package_link_expired"
    # refused links open nothing and record nothing
    r = await client.get("/v1/audit-events?limit=500", headers=auth)
    assert len([e for e in r.json()["items"] if e["action"] == "dsar.package_link_opened"]) == 2
    for expires_in in (
        {"value": 31, "unit": "days"},
        {"value": 30, "unit": "minutes"},
        {"value": 0, "unit": "hours"},
        {"value": 1, "unit": "months"},
    ):
        r = await client.post(
            f"/v1/dsars/{t['id']}/package/link", headers=auth, json={"expires_in": expires_in}
        )
        assert r.status_code == 422, expires_in
    r = await client.post(
        f"/v1/dsars/{t['id']}/package/link",
        headers=auth_headers("t-other"),
        json={"expires_in": {"value": 1, "unit": "days"}},
    )
    assert r.status_code == 404


async def test_headless_chromium_shows_a_systems_script_as_text_and_never_runs_it(
    client: httpx.AsyncClient, auth: dict[str, str], tenant: str, tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is required (.ci/run installs it)"
    t = await _answered(client, auth, tenant)
    r = await client.post(
        f"/v1/dsars/{t['id']}/package/link",
        headers=auth,
        json={"expires_in": {"value": 1, "unit": "days"}},
    )
    page = await client.get(r.json()["url"].removeprefix("http://testserver"))
    assert page.status_code == 200
    html = tmp_path / "package.html"
    html.write_text(page.text, encoding="utf-8")
    dom = await dumped_dom(chromium, html, tmp_path)
    assert "Customer CRM" in dom  # the page rendered
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]  # nothing ran
    assert "&lt;script&gt;document.body.setAttribute" in dom  # shown as text
    assert "<script>" not in dom


async def test_chromium_would_run_an_unescaped_script(tmp_path: Path) -> None:
    """The check above can fail: the same payload in a page without escaping runs."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium
    html = tmp_path / "raw.html"
    html.write_text(f"<!doctype html><html><body><p>{PAYLOAD}</p></body></html>")
    assert 'data-pwned="' in await dumped_dom(chromium, html, tmp_path)


async def dumped_dom(chromium: str, html: Path, tmp_path: Path) -> str:
    """The DOM of `html` after headless Chromium ran its scripts (2 s of virtual time)."""
    proc = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=2000",
        "--dump-dom",
        html.as_uri(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()
