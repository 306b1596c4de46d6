"""The access package as a page a person reads, and its expiring unauthenticated link.

The page is rendered by Jinja2 with autoescaping on: the data comes from other systems and
must never inject markup (a `<script>` in a system's data is shown as text). The link's
token is `base64url(tenant, ticket, expiry)` + `.` + `base64url(HMAC-SHA256)` under
PACKAGE_LINK_SECRET: it cannot be forged or enumerated, a tampered token is 404 and an
expired one 410 (the expiry is only believed once the signature holds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from app.core.errors import DomainError, NotFound
from app.fulfilment.schemas import DsarPackage

# No script, no external resource, no framing: the page is data and inline style only.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class PackageLinkNotFound(NotFound):
    code = "package_link_not_found"


class PackageLinkExpired(DomainError):
    status = 410
    code = "package_link_expired"


def _pretty(value: Any) -> str:
    # A plain str: autoescaping then turns `<` into `&lt;` (Jinja's own `tojson` would mark
    # it safe and print `\u003c`, which a person cannot read).
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("app.fulfilment", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        auto_reload=False,
    )
    env.filters["tojson_pretty"] = _pretty
    return env


def render_html(package: DsarPackage) -> str:
    return environment().get_template("package.html").render(package=package)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class LinkClaims:
    tenant: str
    dsar_id: uuid.UUID
    expires_at: datetime


def sign_link(key: str, tenant: str, dsar_id: uuid.UUID, expires_at: datetime) -> str:
    payload = json.dumps(
        [tenant, str(dsar_id), int(expires_at.timestamp())], separators=(",", ":")
    ).encode()
    mac = hmac.new(key.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def link_digest(token: str) -> str:
    """What the audit log keeps of a link (never the token, which opens the package): its
    SHA-256, the same in the entry that made it and in each entry that opened it."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify_link(key: str, token: str, now: datetime) -> LinkClaims:
    try:
        encoded, sig = token.split(".", 1)
        payload = _unb64(encoded)
        given = _unb64(sig)
    except (ValueError, TypeError):
        raise PackageLinkNotFound("No such package link") from None
    expected = hmac.new(key.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise PackageLinkNotFound("No such package link")
    try:
        tenant, dsar, exp = json.loads(payload)
        claims = LinkClaims(
            str(tenant), uuid.UUID(str(dsar)), datetime.fromtimestamp(int(exp), tz=UTC)
        )
    except (ValueError, TypeError):
        raise PackageLinkNotFound("No such package link") from None
    if now >= claims.expires_at:
        raise PackageLinkExpired("This link has expired: ask for a new one")
    return claims
