"""Secrets at rest (DESIGN §16): the signing secrets the service must hold to sign webhook
deliveries and push-system jobs are stored AES-GCM encrypted under `SECRETS_KEY`.

A stored value is `aesgcm:<kid>:<base64url(nonce ‖ ciphertext ‖ tag)>`: the key id names
the key that sealed it, so a keyring of the current key and the retired ones
(`SECRETS_KEY_OLD`) reads everything while `python -m app rotate-secrets-key` re-encrypts
under the current key. Each value is bound to where it is stored (its `context`, e.g. the
row's id, as AES-GCM associated data): a ciphertext copied to another row does not open.

A key setting is any string of at least 32 characters (like AUTH_SECRET); the AES-256 key
is derived from it with HKDF-SHA256. In dev mode it is generated once and kept beside the
JWT secret; production refuses to start without it (app/core/config.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.core.config import ConfigurationError, Settings
from app.core.security import dev_secret

PREFIX = "aesgcm:"
NONCE_BYTES = 12
KID_CHARS = 12
_INFO = b"privacy-rights-api secrets at rest v1"
_SEALED = re.compile(r"^aesgcm:([0-9a-f]{12}):([A-Za-z0-9_-]+)$")


class SecretUnreadable(RuntimeError):
    """A stored secret that no key of the keyring opens (unknown key id, wrong key, damaged
    or moved ciphertext). Never carries the value."""


def is_sealed(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _SEALED.match(value) is not None


def key_id_of(sealed: str) -> str | None:
    match = _SEALED.match(sealed)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    aead: AESGCM


def _derive(material: str) -> _Key:
    if len(material) < 32:
        raise ConfigurationError("a SECRETS_KEY must be at least 32 characters")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        material.encode()
    )
    kid = hashlib.sha256(b"kid\x00" + raw).hexdigest()[:KID_CHARS]
    return _Key(kid, AESGCM(raw))


class Keyring:
    """The current key (seals) and the retired ones (open only)."""

    def __init__(self, current: str, old: Iterable[str] = ()) -> None:
        self._current = _derive(current)
        self._keys = {self._current.kid: self._current}
        for material in old:
            key = _derive(material)
            self._keys.setdefault(key.kid, key)

    @property
    def current_kid(self) -> str:
        return self._current.kid

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        body = self._current.aead.encrypt(nonce, plaintext.encode(), context.encode())
        encoded = base64.urlsafe_b64encode(nonce + body).decode().rstrip("=")
        return f"{PREFIX}{self._current.kid}:{encoded}"

    def open(self, sealed: str, context: str) -> str:
        match = _SEALED.match(sealed)
        if match is None:
            raise SecretUnreadable("not a sealed secret")
        key = self._keys.get(match.group(1))
        if key is None:
            raise SecretUnreadable(
                f"sealed under key {match.group(1)}, which is neither SECRETS_KEY nor in "
                "SECRETS_KEY_OLD"
            )
        data = match.group(2)
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            plain = key.aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretUnreadable(f"a secret sealed under key {key.kid} does not open") from None
        return plain.decode()

    def is_current(self, sealed: str) -> bool:
        return key_id_of(sealed) == self._current.kid

    def reseal(self, sealed: str, context: str) -> str:
        """The same secret under the current key (unchanged if it is already)."""
        if self.is_current(sealed):
            return sealed
        return self.seal(self.open(sealed, context), context)


def old_keys(settings: Settings) -> list[str]:
    return [k for k in re.split(r"[\s,]+", settings.secrets_key_old or "") if k]


def load_keyring(settings: Settings, *, create_dev_key: bool = True) -> Keyring:
    """SECRETS_KEY (and SECRETS_KEY_OLD); in dev mode without it, the key generated once
    beside the JWT secret (created on first use unless `create_dev_key` is false)."""
    if settings.secrets_key:
        current = settings.secrets_key
    elif settings.app_env == "production":
        raise ConfigurationError("APP_ENV=production refuses to start without SECRETS_KEY")
    else:
        current = dev_secret(settings.secrets_key_path(), create=create_dev_key)
    return Keyring(current, old_keys(settings))
