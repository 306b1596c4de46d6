"""`python -m app rotate-secrets-key`: every sealed signing secret re-encrypted under the
current SECRETS_KEY, in batches (each its own short transaction), while the service runs.

Before running it, every process gets the new key as SECRETS_KEY and the old one in
SECRETS_KEY_OLD (they then seal under the new key and read both); once it reports nothing
left under another key, SECRETS_KEY_OLD can go. Running it again is harmless.

Covered: the subscriptions' current and previous secrets (webhooks and push systems), and
the `secret` of the stored idempotent responses of createWebhook and createSystem. A
previous secret whose overlap has ended is cleared on the way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import is_postgres, take_write_lock
from app.core.idempotency import SEALED_FIELDS, IdempotencyRecord, record_context
from app.core.secretbox import Keyring, SecretUnreadable, is_sealed
from app.webhooks import signing
from app.webhooks.models import WebhookSubscription

BATCH = 500


@dataclass(slots=True)
class RekeyStats:
    subscriptions: int = 0  # rows whose secret(s) were re-encrypted
    responses: int = 0  # stored idempotent responses re-encrypted
    expired_cleared: int = 0  # previous secrets past their overlap, cleared
    unreadable: list[str] = field(default_factory=list)  # where no key opens the value

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscriptions": self.subscriptions,
            "responses": self.responses,
            "expired_cleared": self.expired_cleared,
            "unreadable": self.unreadable,
        }


def _renew(keyring: Keyring, value: str, context: str) -> str:
    if not is_sealed(value):  # a plain value (written before the 0013 migration)
        return keyring.seal(value, context)
    return keyring.reseal(value, context)


async def _begin_write(session: AsyncSession) -> None:
    if not is_postgres(session):
        await take_write_lock(session, "webhook_subscription")


async def _subscriptions(
    session: AsyncSession, keyring: Keyring, now: datetime, after: uuid.UUID | None, batch: int
) -> tuple[uuid.UUID | None, RekeyStats]:
    stats = RekeyStats()
    await _begin_write(session)
    stmt = select(WebhookSubscription).order_by(WebhookSubscription.id).limit(batch)
    if after is not None:
        stmt = stmt.where(WebhookSubscription.id > after)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    rows = (await session.scalars(stmt)).all()
    for sub in rows:
        context = signing.secret_context(sub.id)
        changed = False
        try:
            new = _renew(keyring, sub.secret_ciphertext, context)
            changed |= new != sub.secret_ciphertext
            sub.secret_ciphertext = new
            if sub.previous_secret_ciphertext is not None:
                if sub.previous_secret_until is None or sub.previous_secret_until <= now:
                    sub.previous_secret_ciphertext = None
                    sub.previous_secret_until = None
                    stats.expired_cleared += 1
                else:
                    new = _renew(keyring, sub.previous_secret_ciphertext, context)
                    changed |= new != sub.previous_secret_ciphertext
                    sub.previous_secret_ciphertext = new
        except SecretUnreadable:
            stats.unreadable.append(f"webhook_subscription {sub.id}")
            continue
        stats.subscriptions += int(changed)
    await session.commit()
    return (rows[-1].id if len(rows) == batch else None), stats


async def _responses(
    session: AsyncSession, keyring: Keyring, after: tuple[str, str, str] | None, batch: int
) -> tuple[tuple[str, str, str] | None, RekeyStats]:
    stats = RekeyStats()
    await _begin_write(session)
    pk = tuple_(IdempotencyRecord.tenant, IdempotencyRecord.operation, IdempotencyRecord.key)
    stmt = (
        select(IdempotencyRecord)
        .where(IdempotencyRecord.operation.in_(list(SEALED_FIELDS)))
        .order_by(IdempotencyRecord.tenant, IdempotencyRecord.operation, IdempotencyRecord.key)
        .limit(batch)
    )
    if after is not None:
        stmt = stmt.where(pk > tuple_(*after))
    if is_postgres(session):
        stmt = stmt.with_for_update()
    rows = (await session.scalars(stmt)).all()
    for rec in rows:
        body = rec.response_body
        if not isinstance(body, dict):
            continue
        context = record_context(rec.tenant, rec.operation, rec.key)
        renewed = dict(body)
        try:
            for name in SEALED_FIELDS[rec.operation]:
                if isinstance(body.get(name), str):
                    renewed[name] = _renew(keyring, body[name], context)
        except SecretUnreadable:
            stats.unreadable.append(f"idempotency_record {rec.operation}")
            continue
        if renewed != body:
            rec.response_body = renewed  # written with the batch's flush
            stats.responses += 1
    await session.commit()
    last = rows[-1] if len(rows) == batch else None
    return ((last.tenant, last.operation, last.key) if last else None), stats


def _add(total: RekeyStats, part: RekeyStats) -> None:
    total.subscriptions += part.subscriptions
    total.responses += part.responses
    total.expired_cleared += part.expired_cleared
    total.unreadable.extend(part.unreadable)


async def rekey(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    now: datetime,
    batch: int = BATCH,
) -> RekeyStats:
    """Re-encrypt everything under the keyring's current key. Commits per batch."""
    total = RekeyStats()
    after_sub: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            after_sub, part = await _subscriptions(session, keyring, now, after_sub, batch)
        _add(total, part)
        if after_sub is None:
            break
    after_rec: tuple[str, str, str] | None = None
    while True:
        async with sessionmaker() as session:
            after_rec, part = await _responses(session, keyring, after_rec, batch)
        _add(total, part)
        if after_rec is None:
            break
    return total
