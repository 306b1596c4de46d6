"""Standard Webhooks signatures (https://www.standardwebhooks.com/): the secret is `whsec_`
+ base64 key bytes; `webhook-signature` is `v1,` + base64(HMAC-SHA256(key,
"{webhook-id}.{webhook-timestamp}.{body}")).

After a rotation the header carries several signatures, space-separated (`v1,<new> v1,<old>`),
which Standard Webhooks receivers accept when any one verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from app.core.secretbox import Keyring, SecretUnreadable

PREFIX = "whsec_"
KEY_BYTES = 24


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


class HasSecrets(Protocol):
    id: uuid.UUID
    secret_ciphertext: str
    previous_secret_ciphertext: str | None
    previous_secret_until: datetime | None


def secret_context(subscription_id: uuid.UUID) -> str:
    """What a subscription's sealed secrets are bound to (AES-GCM associated data)."""
    return f"webhook_subscription:{subscription_id}"


def issue(sub: HasSecrets, keyring: Keyring) -> str:
    """A new secret for a new subscription, sealed into it; the plain value is returned to
    be shown once."""
    secret = new_secret()
    sub.secret_ciphertext = keyring.seal(secret, secret_context(sub.id))
    sub.previous_secret_ciphertext = None
    sub.previous_secret_until = None
    return secret


def rotate(sub: HasSecrets, keyring: Keyring, now: datetime, overlap: timedelta) -> str:
    """A new secret; the one it replaces keeps signing beside it until now + `overlap` (a
    secret replaced earlier and still in its overlap is dropped: two at most). A replaced
    secret that no configured key opens (SECRETS_KEY lost) is not kept: it cannot sign, and
    kept it would hold every delivery back until the overlap ends."""
    current = sub.secret_ciphertext
    try:
        keyring.open(current, secret_context(sub.id))
        readable = True
    except SecretUnreadable:
        readable = False
    secret = issue(sub, keyring)
    if overlap > timedelta(0) and readable:
        sub.previous_secret_ciphertext = current
        sub.previous_secret_until = now + overlap
    return secret


def valid_secrets(
    keyring: Keyring,
    subscription_id: uuid.UUID,
    secret_ciphertext: str,
    previous_ciphertext: str | None,
    previous_until: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets that sign a message sent at `now`: the current one, and the previous one
    while its overlap lasts. Raises SecretUnreadable when the keyring cannot open them."""
    context = secret_context(subscription_id)
    out = [keyring.open(secret_ciphertext, context)]
    if previous_ciphertext is not None and previous_until is not None and now < previous_until:
        out.append(keyring.open(previous_ciphertext, context))
    return out


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(
    secrets_: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers, signed with each secret (the current one first)."""
    keys = [secrets_] if isinstance(secrets_, str) else list(secrets_)
    return {
        "content-type": "application/json",
        "user-agent": "privacy-rights-api-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, msg_id, timestamp, body) for k in keys),
    }


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, signature_header: str) -> bool:
    """What a receiver does (used by the tests): any of the space-separated `v1,` signatures."""
    expected = sign(secret, msg_id, int(timestamp), body)
    return any(hmac.compare_digest(expected, s) for s in signature_header.split())
