"""The delivery side of webhooks, run by the worker: fan-out, claim, send, record.

- Fan-out turns each outbox event into one `webhook_delivery` per matching subscription
  (subscribed to the type, existing when the event happened); insert-or-ignore on
  (subscription, event) makes a repeated fan-out harmless.
- A claim takes due deliveries (`FOR UPDATE SKIP LOCKED` on PostgreSQL: replicas never
  block on or take the same row), bumps `attempts` and leases the row by moving
  `next_attempt_at` past the request timeout, then commits: each attempt number belongs to
  exactly one worker. A worker that dies mid-send leaves the lease to expire (at least once).
- The result is recorded as a `webhook_attempt` (unique per delivery and attempt) and the
  delivery is marked succeeded, rescheduled with exponential backoff and jitter, or failed
  after the last attempt.
- A receiver answering 410 Gone disables its subscription in the same transaction: its
  pending deliveries are stopped (failed, `last_error` says why), the fan-out skips it, a
  claim stops any delivery still addressed to it, and a `webhook.disabled` event (audited,
  and delivered to the tenant's other subscriptions that asked for it) says so.
- Signing secrets are stored sealed (app/core/secretbox.py) and opened at claim time; during
  a rotation's overlap a message carries the new and the previous signature. A secret no
  configured key opens is the service's configuration at fault, not the receiver: the
  delivery is not sent, its attempt is given back, it waits `UNREADABLE_RETRY` and an error
  line names SECRETS_KEY_OLD.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import trail
from app.core.db import is_postgres, take_write_lock
from app.core.ids import new_id
from app.core.instants import utc_text
from app.core.secretbox import Keyring, SecretUnreadable
from app.events.models import OutboxEvent
from app.events.outbox import WEBHOOK_DISABLED, emit_many, iso
from app.events.outbox import row as outbox_row
from app.webhooks import signing
from app.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from app.webhooks.service import message_id
from app.webhooks.ssrf import UnsafeUrl, host_of, resolve_check

log = logging.getLogger("app.webhooks")

FAN_OUT_BATCH = 500
CLAIM_BATCH = 50
GONE = 410
DISABLED_ERROR = "subscription disabled: the receiver answered 410 Gone"
UNREADABLE_ERROR = "signing secret unreadable: check SECRETS_KEY and SECRETS_KEY_OLD"
# How long a delivery whose secret no key opens waits before it is claimed again. Fixed, not
# the attempt's backoff: the attempt is not counted, and what cures it (processes restarted
# with the sealing key in SECRETS_KEY_OLD, or the receiver's secret rotated) does not grow
# likelier with time. Five minutes bounds the delay once it is cured, and the error line to
# one per subscription and worker every five minutes while it is not.
UNREADABLE_RETRY = timedelta(minutes=5)
# The audit actor of what the worker decides by itself.
WORKER_ACTOR = "worker"


async def fan_out(session: AsyncSession, now: datetime, batch: int = FAN_OUT_BATCH) -> int:
    """One batch of outbox events → deliveries. Returns the events handled. Commits."""
    await take_write_lock(session, "outbox_event")
    events = (
        await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.dispatched_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not events:
        await session.rollback()
        return 0
    tenants = sorted({e.tenant for e in events})
    subs = (
        await session.scalars(
            select(WebhookSubscription).where(
                WebhookSubscription.tenant.in_(tenants),
                WebhookSubscription.system_key.is_(None),
                WebhookSubscription.disabled_at.is_(None),
            )
        )
    ).all()
    rows: list[dict[str, Any]] = []
    for event in events:
        for sub in subs:
            if (
                sub.tenant == event.tenant
                and event.type in sub.events
                and sub.created_at <= event.created_at
            ):
                rows.append(
                    {
                        "id": new_id(),
                        "tenant": event.tenant,
                        "subscription_id": sub.id,
                        "event_id": event.id,
                        "event_type": event.type,
                        "status": DeliveryStatus.pending.value,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    if rows:
        insert = pg_insert if is_postgres(session) else sqlite_insert
        stmt = insert(WebhookDelivery).values(rows)
        await session.execute(
            stmt.on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
        )
    await session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_([e.id for e in events]))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    return len(events)


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    tenant: str
    attempt: int
    url: str
    # The current secret first, then the previous one during a rotation's overlap (a
    # delivery whose secrets do not open is never claimed: see `claim`).
    secrets: tuple[str, ...] = field(repr=False)  # never in a log line or a traceback
    event_type: str
    event_at: datetime
    data: dict[str, Any]

    @property
    def message_id(self) -> str:
        return message_id(self.delivery_id)

    def body(self) -> bytes:
        doc = {"type": self.event_type, "timestamp": utc_text(self.event_at), "data": self.data}
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# Builds the body of the claimed deliveries whose event carries ids only (a push system's
# job: the task is read at send time, so it is current and no subject sits in the outbox).
Enrich = Callable[[AsyncSession, list[Claimed]], Awaitable[list[Claimed]]]


async def claim(
    session: AsyncSession,
    now: datetime,
    lease: timedelta,
    keyring: Keyring,
    batch: int = CLAIM_BATCH,
    enrich: Enrich | None = None,
    on_unreadable: Callable[[int], None] | None = None,
) -> list[Claimed]:
    """Take up to `batch` due deliveries for this worker. Commits. A delivery whose
    subscription was disabled (410 Gone) is stopped here, not sent. One whose signing
    secret the keyring cannot open is not taken either (`_defer`; `on_unreadable` hears how
    many)."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.pending,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    taken = (
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(due.scalar_subquery()))
            .values(
                attempts=WebhookDelivery.attempts + 1,
                next_attempt_at=now + lease,
                last_attempt_at=now,
            )
            .returning(WebhookDelivery.id, WebhookDelivery.attempts)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if not taken:
        await session.rollback()
        return []
    attempts = {row[0]: int(row[1]) for row in taken}
    details = await session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.tenant,
            WebhookSubscription.url,
            WebhookSubscription.secret_ciphertext,
            OutboxEvent.type,
            OutboxEvent.created_at,
            OutboxEvent.data,
            WebhookSubscription.id,
            WebhookSubscription.previous_secret_ciphertext,
            WebhookSubscription.previous_secret_until,
            WebhookSubscription.disabled_at,
            WebhookSubscription.system_key,
        )
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id.in_(list(attempts)))
    )
    claimed: list[Claimed] = []
    stopped: list[uuid.UUID] = []
    unreadable: dict[uuid.UUID, _Unreadable] = {}
    for r in details:
        if r[10] is not None:
            stopped.append(r[0])
            continue
        try:
            secrets = tuple(signing.valid_secrets(keyring, r[7], r[3], r[8], r[9], now))
        except SecretUnreadable as exc:
            found = unreadable.setdefault(r[7], _Unreadable(r[1], r[11], str(exc)))
            found.deliveries.append(r[0])
            continue
        claimed.append(
            Claimed(
                delivery_id=r[0],
                subscription_id=r[7],
                tenant=r[1],
                attempt=attempts[r[0]],
                url=r[2],
                secrets=secrets,
                event_type=r[4],
                event_at=r[5],
                data=dict(r[6]),
            )
        )
    if stopped:
        await _stop(session, WebhookDelivery.id.in_(stopped), claimed=True)
    if unreadable:
        await _defer(session, unreadable, now)
        if on_unreadable is not None:
            on_unreadable(sum(len(u.deliveries) for u in unreadable.values()))
    if enrich is not None:
        claimed = await enrich(session, claimed)
    await session.commit()
    return claimed


@dataclass(slots=True)
class _Unreadable:
    """A subscription whose signing secret the keyring could not open, in one claim."""

    tenant: str
    system: str | None
    reason: str  # SecretUnreadable's: the key id, never the value
    deliveries: list[uuid.UUID] = field(default_factory=list)


async def _defer(
    session: AsyncSession, unreadable: dict[uuid.UUID, _Unreadable], now: datetime
) -> None:
    """Deliveries whose signing secret no configured key opens: not sent, and not charged to
    the receiver. The claim's attempt is given back (in the claim's transaction, so no other
    worker ever sees it counted), the delivery stays pending and is claimed again after
    UNREADABLE_RETRY; `last_error` says why meanwhile. An error line per subscription names
    the cure."""
    ids = [d for u in unreadable.values() for d in u.deliveries]
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(
            attempts=WebhookDelivery.attempts - 1,
            next_attempt_at=now + UNREADABLE_RETRY,
            last_error=UNREADABLE_ERROR,
        )
        .execution_options(synchronize_session=False)
    )
    for subscription_id, u in unreadable.items():
        log.error(
            "webhook signing secret unreadable: no configured key opens it. Deliveries wait "
            "(attempts not counted); put the key that sealed it in SECRETS_KEY_OLD, or rotate "
            "the receiver's secret",
            extra={
                "subscription_id": str(subscription_id),
                "tenant": u.tenant,
                "system": u.system,
                "deliveries": len(u.deliveries),
                "reason": u.reason,
                "retry_in_s": int(UNREADABLE_RETRY.total_seconds()),
            },
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def send(
    client: httpx.AsyncClient, item: Claimed, now: datetime, allow: frozenset[str]
) -> Outcome:
    """POST one signed attempt. Never raises: every failure is an Outcome."""
    started = time.perf_counter()

    def done(status: int | None, error: str | None) -> Outcome:
        return Outcome(status, error, int((time.perf_counter() - started) * 1000))

    try:
        await resolve_check(item.url, allow, strict=True)
    except UnsafeUrl as exc:
        return done(None, f"refused: {exc}")
    body = item.body()
    headers = signing.headers(item.secrets, item.message_id, int(now.timestamp()), body)
    try:
        response = await client.post(item.url, content=body, headers=headers)
    except httpx.TimeoutException:
        return done(None, "timeout")
    except httpx.HTTPError as exc:
        return done(None, f"connection error: {type(exc).__name__}")
    return done(response.status_code, None if response.is_success else "non-2xx response")


def backoff(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> timedelta:
    """base·2^(attempt-1), capped, times a jitter in [0.5, 1): replicas that failed together
    do not retry together."""
    delay = min(cap, base * 2 ** (attempt - 1))
    return timedelta(seconds=delay * (0.5 + rng() / 2))


_DELIVERY = cast(Table, WebhookDelivery.__table__)
_RECORD = (
    update(_DELIVERY)
    .where(
        _DELIVERY.c.id == bindparam("b_id"),
        _DELIVERY.c.attempts == bindparam("b_attempt"),
        # a delivery stopped meanwhile (its subscription disabled) stays stopped
        _DELIVERY.c.status == DeliveryStatus.pending.value,
    )
    .values(
        status=bindparam("b_status"),
        delivered_at=bindparam("b_delivered_at"),
        next_attempt_at=bindparam("b_next_attempt_at"),
        last_status_code=bindparam("b_last_status_code"),
        last_error=bindparam("b_last_error"),
    )
)


async def record(
    session: AsyncSession,
    results: Sequence[tuple[Claimed, Outcome, timedelta]],
    now: datetime,
    *,
    max_attempts: int,
) -> list[DeliveryStatus]:
    """Store a round's attempts and move each delivery on (item, outcome, delay before the
    next try), in one transaction. Commits."""
    statuses: list[DeliveryStatus] = []
    gone = {item.subscription_id for item, outcome, _ in results if outcome.status_code == GONE}
    session.add_all(
        WebhookAttempt(
            id=new_id(),
            delivery_id=item.delivery_id,
            tenant=item.tenant,
            attempt=item.attempt,
            at=now,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
        for item, outcome, _ in results
    )
    rows: list[dict[str, Any]] = []
    for item, outcome, retry_in in results:
        if outcome.ok:
            status, next_attempt_at = DeliveryStatus.succeeded, None
        elif outcome.status_code == GONE or item.attempt >= max_attempts:
            status, next_attempt_at = DeliveryStatus.failed, None
        else:
            status, next_attempt_at = DeliveryStatus.pending, now + retry_in
        statuses.append(status)
        rows.append(
            {
                "b_id": item.delivery_id,
                "b_attempt": item.attempt,
                "b_status": status,
                "b_delivered_at": now if outcome.ok else None,
                "b_next_attempt_at": next_attempt_at,
                "b_last_status_code": outcome.status_code,
                "b_last_error": outcome.error,
            }
        )
    if rows:
        # One statement for the round, executed for every delivery; each row only while the
        # lease is ours: if it expired and another worker claimed a later attempt, that
        # worker's outcome is the one that counts.
        await session.execute(_RECORD, rows)
    if gone:
        await disable(session, sorted(gone), now)
    await session.commit()
    return statuses


async def _stop(session: AsyncSession, which: Any, claimed: bool = False) -> None:
    """Pending deliveries matching `which` will never be sent: failed, saying why. `claimed`:
    found disabled by this claim, whose attempt is given back (nothing was sent)."""
    given_back = {"attempts": WebhookDelivery.attempts - 1} if claimed else {}
    await session.execute(
        update(WebhookDelivery)
        .where(which, WebhookDelivery.status == DeliveryStatus.pending)
        .values(
            status=DeliveryStatus.failed,
            next_attempt_at=None,
            last_error=DISABLED_ERROR,
            **given_back,
        )
        .execution_options(synchronize_session=False)
    )


async def disable(session: AsyncSession, subscription_ids: list[uuid.UUID], now: datetime) -> None:
    """Receivers that answered 410 Gone: their subscriptions disabled (once), their pending
    deliveries stopped, a `webhook.disabled` event and audit entry for each. In the
    caller's transaction."""
    newly = (
        await session.execute(
            update(WebhookSubscription)
            .where(
                WebhookSubscription.id.in_(subscription_ids),
                WebhookSubscription.disabled_at.is_(None),
            )
            .values(disabled_at=now)
            .returning(
                WebhookSubscription.id,
                WebhookSubscription.tenant,
                WebhookSubscription.url,
                WebhookSubscription.system_key,
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    if not newly:
        return
    await _stop(session, WebhookDelivery.subscription_id.in_([r[0] for r in newly]))
    events: list[dict[str, Any]] = []
    for sub_id, tenant, url, system_key in newly:
        data: dict[str, Any] = {
            "webhook_id": str(sub_id),
            "system": system_key,
            "status_code": GONE,
            "disabled_at": iso(now),
        }
        events.append(outbox_row(tenant, WEBHOOK_DISABLED, data, now))
        trail.record(
            session,
            tenant=tenant,
            actor=WORKER_ACTOR,
            action="webhook.disabled",
            object_type="webhook" if system_key is None else "fulfilment_system",
            object_id=sub_id if system_key is None else system_key,
            # the host only: a URL's path or query may carry a receiver's token
            data={**data, "host": host_of(url)},
            at=now,
        )
        log.warning(
            "webhook receiver gone: subscription disabled",
            extra={"subscription_id": str(sub_id), "tenant": tenant, "system": system_key},
        )
    await emit_many(session, events)
