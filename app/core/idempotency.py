"""`Idempotency-Key` for creating POSTs (draft-ietf-httpapi-idempotency-key-header).

Same key + same body replays the first response (its `Location` and `ETag` too); same key +
another body is 422; the same key while the first request is still running is 409 at once.
The stored response is written in the same transaction as the change it describes, so a
replay never points at nothing.

A response carrying a secret shown once (a webhook's or push system's `whsec_…`) names that
field in `sealed`: it is stored AES-GCM encrypted (app/core/secretbox.py, bound to the key's
record) and opened again for the replay, so the table never holds it in plain text.

PostgreSQL: `pg_try_advisory_xact_lock` on the key answers 409 at once instead of waiting on
the unique index. SQLite (embedded, one process): an in-process set of keys in flight.

A record expires `IDEMPOTENCY_TTL_HOURS` after the first response (DESIGN §14): from then on
the same key is a new request (the expired record is ignored and replaced, even before the
worker has deleted it; app/pruning deletes the rest in batches). The window and the service's
clock reach this module through the session (`session_info`), so no caller has to pass them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Index, Integer, String, and_, delete, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import Clock, utc_now
from app.core.db import Base, JSONType, UTCDateTime, is_postgres
from app.core.db import insert_cte as insert_cte_sql
from app.core.errors import Conflict, ServiceUnavailable, Unprocessable
from app.core.secretbox import Keyring, SecretUnreadable, is_sealed

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retry-safe key: the same key and body replay the first response",
    ),
]


DEFAULT_TTL = timedelta(hours=24)
_TTL = "idempotency.ttl"
_CLOCK = "idempotency.clock"


def session_info(ttl: timedelta, clock: Clock) -> dict[str, Any]:
    """What the sessionmaker gives every session (`create_sessionmaker(engine, info=…)`): the
    records' lifetime and the clock that says when they lapse."""
    return {_TTL: ttl, _CLOCK: clock}


def ttl_of(session: AsyncSession) -> timedelta:
    value = session.info.get(_TTL)
    return value if isinstance(value, timedelta) else DEFAULT_TTL


def _now(session: AsyncSession) -> datetime:
    clock = session.info.get(_CLOCK)
    return clock() if callable(clock) else utc_now()


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_record"
    # The worker deletes expired records oldest first (app/pruning): a range, never a scan.
    __table_args__ = (Index(None, "created_at"),)

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    operation: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[Any] = mapped_column(JSONType)
    location: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"


class IdempotencyInProgress(Conflict):
    code = "idempotency_request_in_progress"


class InvalidIdempotencyKey(Unprocessable):
    code = "invalid_idempotency_key"


_IN_FLIGHT: set[tuple[str, str, str]] = set()


def as_sent(body: BaseModel) -> dict[str, Any]:
    """A request body as the key remembers it: the fields the caller sent, as JSON."""
    return body.model_dump(mode="json", exclude_unset=True)


def body_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def normalise_key(raw: str) -> str:
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':  # RFC 8941 sf-string form
        key = key[1:-1]
    if not key or not key.isprintable():
        raise InvalidIdempotencyKey("Idempotency-Key must be a non-empty printable string")
    return key


@dataclass(slots=True)
class Idempotent:
    session: AsyncSession
    tenant: str
    operation: str
    key: str | None
    request_hash: str
    replay: JSONResponse | None = None
    keyring: Keyring | None = None
    sealed: tuple[str, ...] = ()

    def remember(self, status_code: int, body: Any, location: str | None, at: datetime) -> None:
        """Store the response in the caller's transaction (commit makes both visible)."""
        if self.key is None:
            return
        if self.sealed:
            context = record_context(self.tenant, self.operation, self.key)
            body = seal_fields(body, self.sealed, self.keyring, context)
        self.session.add(
            IdempotencyRecord(
                tenant=self.tenant,
                operation=self.operation,
                key=self.key,
                request_hash=self.request_hash,
                status_code=status_code,
                response_body=body,
                location=location,
                created_at=at,
            )
        )

    def cte_params(self, status_code: int, body_json: str, location: str | None) -> dict[str, Any]:
        """The bind parameters of `insert_cte` for this key's response (`body_json`: the
        response body as JSON text)."""
        assert self.key is not None, "nothing is remembered without a key"
        return {
            "i_operation": self.operation,
            "i_key": self.key,
            "i_hash": self.request_hash,
            "i_status": status_code,
            "i_body": body_json,
            "i_location": location,
        }


COLUMNS = (
    "tenant",
    "operation",
    "key",
    "request_hash",
    "status_code",
    "response_body",
    "location",
    "created_at",
)
STORED_BODY = "CAST(:i_body AS jsonb)"


def insert_cte(name: str, *, tenant: str, at: str, response_body: str = STORED_BODY) -> str:
    """The key's record as a CTE of a one-statement write: `tenant` and `at` are SQL, the
    key's own values the bind parameters of `Idempotent.cte_params`; `response_body` is SQL
    computing the stored body from `STORED_BODY` (it may patch in what the statement decides)."""
    return insert_cte_sql(
        name,
        IdempotencyRecord.__tablename__,
        COLUMNS,
        {
            "tenant": tenant,
            "operation": ":i_operation",
            "key": ":i_key",
            "request_hash": ":i_hash",
            "status_code": ":i_status",
            "response_body": response_body,
            "location": ":i_location",
            "created_at": at,
        },
    )


async def forget_where(session: AsyncSession, tenant: str, *which: ColumnElement[bool]) -> int:
    """Delete the tenant's stored responses matching any of `which` (conditions on
    `IdempotencyRecord`, e.g. responses carrying an erased subject's identifier)."""
    if not which:
        return 0
    result = await session.execute(
        delete(IdempotencyRecord)
        .where(IdempotencyRecord.tenant == tenant, or_(*which))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def record_context(tenant: str, operation: str, key: str) -> str:
    """What a stored response's sealed fields are bound to (AES-GCM associated data)."""
    return f"idempotency_record:{tenant}\x00{operation}\x00{key}"


def seal_fields(
    body: Any, fields: tuple[str, ...], keyring: Keyring | None, context: str
) -> Any:
    """`body` with each named top-level string field sealed."""
    if not isinstance(body, dict):
        return body
    if keyring is None:
        raise ValueError("sealed fields need the keyring")
    out = dict(body)
    for name in fields:
        value = out.get(name)
        if isinstance(value, str) and not is_sealed(value):
            out[name] = keyring.seal(value, context)
    return out


class StoredResponseUnreadable(ServiceUnavailable):
    """A replay whose stored secret no key of the keyring opens: a configuration fault the
    operator mends (the retired key back in SECRETS_KEY_OLD); never a 500."""


def open_fields(
    body: Any, fields: tuple[str, ...], keyring: Keyring | None, context: str
) -> Any:
    if not isinstance(body, dict) or not fields:
        return body
    if keyring is None:
        raise ValueError("sealed fields need the keyring")
    out = dict(body)
    for name in fields:
        value = out.get(name)
        if is_sealed(value):
            out[name] = keyring.open(value, context)
    return out


def _lock_id(tenant: str, operation: str, key: str) -> int:
    digest = hashlib.sha256(f"{tenant}\x00{operation}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# The responses whose fields are stored encrypted (a secret shown once): operation → fields.
# `idempotent` seals and opens them; `python -m app rotate-secrets-key` re-seals them.
SEALED_FIELDS: dict[str, tuple[str, ...]] = {
    "createWebhook": ("secret",),
    "createSystem": ("secret",),
}


@asynccontextmanager
async def idempotent(
    session: AsyncSession,
    tenant: str,
    operation: str,
    raw_key: str | None,
    request: Callable[[], Any],
    *,
    etag: bool = False,
    keyring: Keyring | None = None,
) -> AsyncIterator[Idempotent]:
    """`request()` gives the request as the key remembers it (JSON-able); it is built and
    hashed only when a key was sent. `etag`: the operation answers with the object's
    `ETag` (`"<version>"`), which a replay repeats from the stored body's `version`.
    The operation's `SEALED_FIELDS` are stored encrypted under `keyring`."""
    sealed = SEALED_FIELDS.get(operation, ())
    key = normalise_key(raw_key) if raw_key is not None else None
    if key is None:  # nothing to remember or replay
        yield Idempotent(session, tenant, operation, None, "")
        return
    state = Idempotent(
        session, tenant, operation, key, body_hash(request()), keyring=keyring, sealed=sealed
    )
    marker = (tenant, operation, key)
    is_pg = is_postgres(session)
    if is_pg:
        got = await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _lock_id(*marker)}
        )
        if not got:
            raise IdempotencyInProgress("A request with this Idempotency-Key is still running")
    else:
        if marker in _IN_FLIGHT:
            raise IdempotencyInProgress("A request with this Idempotency-Key is still running")
        _IN_FLIGHT.add(marker)
    try:
        found = await session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.tenant == tenant,
                IdempotencyRecord.operation == operation,
                IdempotencyRecord.key == key,
            )
        )
        if found is not None and found.created_at <= _now(session) - ttl_of(session):
            # Expired (not yet pruned): this is a new request. The old record goes in this
            # transaction, so the new response can take its key (and a failure keeps it).
            await session.execute(
                delete(IdempotencyRecord)
                .where(
                    IdempotencyRecord.tenant == tenant,
                    IdempotencyRecord.operation == operation,
                    IdempotencyRecord.key == key,
                )
                .execution_options(synchronize_session=False)
            )
            session.expunge(found)
            found = None
        if found is not None:
            if found.request_hash != state.request_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body"
                )
            headers = {"Idempotent-Replayed": "true"}
            if found.location:
                headers["Location"] = found.location
            version = (
                found.response_body.get("version")
                if isinstance(found.response_body, dict)
                else None
            )
            if etag and isinstance(version, int):
                # the first response's ETag: the version the stored body was answered with
                headers["ETag"] = f'"{version}"'
            try:
                body = open_fields(
                    found.response_body, sealed, keyring, record_context(tenant, operation, key)
                )
            except SecretUnreadable:
                raise StoredResponseUnreadable(
                    "The stored response to this Idempotency-Key holds a secret that no "
                    "configured key opens (its key left SECRETS_KEY_OLD too early); put the "
                    "retired key back in SECRETS_KEY_OLD"
                ) from None
            state.replay = JSONResponse(body, found.status_code, headers=headers)
        yield state
    finally:
        if not is_pg:
            _IN_FLIGHT.discard(marker)


async def forget(session: AsyncSession, tenant: str, operation: str, location: str) -> None:
    """Drop the stored responses that created what `location` names, in the caller's
    transaction, when it is deleted: a replay never points at nothing (the same key and body
    afterwards create it anew)."""
    await forget_where(
        session,
        tenant,
        and_(IdempotencyRecord.operation == operation, IdempotencyRecord.location == location),
    )
