"""No subject identifier or e-mail in logs or error bodies (issue 8, item 5).

Canary identifiers travel through every route — the success paths that take them (DSARs,
consent events, subject reads, export, erasure) and the error paths (bad bodies, unknown
policies, unknown subjects, every documented example with its strings replaced by a canary)
— and the captured log lines and every error body are searched for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.__main__ import openapi_document
from app.core.logging import JsonFormatter
from tests.conftest import spotrak_body
from tests.security.test_tenant_walls import _example_body

CANARY_ID = "canary-subject-51f3e0"
CANARY_EMAIL = "canary.person.51f3e0@example.net"
CANARY_NAME = "Canary Personname"
CANARIES = (CANARY_ID, CANARY_EMAIL, CANARY_NAME, "canary")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    handler = _Lines()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _canarise(value: Any) -> Any:
    if isinstance(value, str):
        return CANARY_EMAIL
    if isinstance(value, dict):
        return {k: _canarise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canarise(v) for v in value]
    return value


async def test_canaries_never_reach_logs_or_error_bodies(
    client: httpx.AsyncClient, auth: dict[str, str], log_lines: list[str]
) -> None:
    errors: list[tuple[str, str]] = []

    async def call(
        method: str, url: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        r = await client.request(method, url, headers={**auth, **(headers or {})}, **kw)
        if r.status_code >= 400:
            errors.append((f"{method} {url} → {r.status_code}", r.text))
        return r

    assert (await call("POST", "/v1/policies", json=spotrak_body())).status_code == 201
    subject = {"id": CANARY_ID, "email": CANARY_EMAIL, "name": CANARY_NAME}
    dsar = await call(
        "POST", "/v1/dsars", json={"policy_key": "spotrak", "type": "access", "subject": subject}
    )
    assert dsar.status_code == 201
    tid = dsar.json()["id"]
    await call("POST", f"/v1/dsars/{tid}/transitions", json={"to": "in_progress"})
    await call("POST", f"/v1/dsars/{tid}/transitions", json={"to": "received"})  # 409
    await call("GET", f"/v1/dsars/{tid}/events")
    await call("GET", "/v1/dsars")
    event = {
        "policy_key": "spotrak",
        "subject_id": CANARY_ID,
        "purpose": "audience_cookies",
        "action": "granted",
    }
    assert (await call("POST", "/v1/consent-events", json=event)).status_code == 201
    await call("POST", "/v1/consent-events", json={**event, "purpose": "nope"})  # 422
    await call("POST", "/v1/consent-events", json={**event, "policy_key": "missing"})  # 404
    await call("POST", "/v1/consent-events", json={**event, "subject_id": CANARY_ID * 20})  # 422
    await call("POST", "/v1/consent-events", headers={"Sec-GPC": "1"}, json=event)
    await call(
        "POST",
        "/v1/consent-events/batch",
        json={"events": [event, {**event, "purpose": "nope"}, {"subject_id": CANARY_ID}]},
    )
    await call("GET", "/v1/consent-events", params={"subject_id": CANARY_ID})
    await call("GET", f"/v1/subjects/{CANARY_ID}/consents")
    await call("GET", f"/v1/subjects/{CANARY_ID}/consents", params={"as_of": "not-a-date"})
    await call("GET", f"/v1/subjects/{CANARY_ID}/export")
    await call("GET", f"/v1/subjects/{CANARY_ID}-unknown/export")  # 404
    await call("DELETE", f"/v1/subjects/{CANARY_ID}")
    await call("DELETE", f"/v1/subjects/{CANARY_ID}")  # already erased → 404
    await call(
        "POST", "/v1/dsars", json={"policy_key": "missing", "type": "access", "subject": subject}
    )  # 404
    await call(
        "POST", "/v1/dsars", json={"policy_key": "spotrak", "type": "opt_out", "subject": subject}
    )  # 422
    await call(
        "POST",
        "/v1/dsars",
        json={"policy_key": "spotrak", "type": "access", "subject": {"email": CANARY_ID}},
    )  # 422, bad e-mail

    # every documented example, each string replaced by a canary: the error paths
    doc = openapi_document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = _example_body(doc, op)
            if body is None:
                continue
            url = (
                path.replace("{key}", "spotrak")
                .replace("{id}", tid)
                .replace("{subject_id}", CANARY_ID)
            )
            await call(method.upper(), url, json=_canarise(body))

    assert len(errors) >= 15
    for name, text in errors:
        for canary in CANARIES[:3]:
            assert canary not in text, f"{name} echoed personal data: {text[:300]}"
    assert log_lines, "the access log should have captured lines"
    for line in log_lines:
        for canary in CANARIES:
            assert canary not in line, f"a log line carries personal data: {line[:300]}"
