"""Shared setup for the consent tests: a policy with three purposes, a pinned clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.conftest import spotrak_body

POLICY_AT = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
PURPOSES = ["audience_cookies", "ad_personalisation", "sale_of_data"]


def consent_policy(key: str = "spotrak") -> dict[str, Any]:
    body = spotrak_body(key)
    body["consent_purposes"] = [
        *body["consent_purposes"],
        {
            "key": "ad_personalisation",
            "description": "Personalised advertising",
            "lawful_basis": "consent",
            "default": "denied",
            "expires_after": None,
            "honors_gpc": True,
            "withdrawal_method": "Settings > Privacy > Advertising",
        },
        {
            "key": "sale_of_data",
            "description": "Sharing with partners",
            "default": "granted",
            "honors_gpc": True,
        },
    ]
    return body


def event(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "policy_key": "spotrak",
        "subject_id": "user-42",
        "purpose": "audience_cookies",
        "action": "granted",
        "occurred_at": "2027-03-01T10:15:00+01:00",
        "source": "cookie_banner",
        "proof": {"banner_version": "2027-02", "ip_country": "FR"},
    }
    body.update(over)
    return body


async def post_event(
    client: httpx.AsyncClient, auth: dict[str, str], **over: Any
) -> dict[str, Any]:
    r = await client.post("/v1/consent-events", headers=auth, json=event(**over))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def states(
    client: httpx.AsyncClient, auth: dict[str, str], subject: str = "user-42", **params: str
) -> dict[str, dict[str, Any]]:
    r = await client.get(f"/v1/subjects/{subject}/consents", headers=auth, params=params)
    assert r.status_code == 200, r.text
    return {c["purpose"]: c for c in r.json()["consents"]}
