"""Webhook subscriptions, their deliveries (one per event and subscription) and attempts."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, Uuid, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, JSONType, UTCDateTime, str_enum
from app.events.models import SequenceId


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


# A delivery no longer pending (succeeded, or failed) is done: nothing will send it again.
# An inequality, which no index on `status` serves: the pruning batch that reads finished
# deliveries cannot take the claim's (status, next_attempt_at) index and sort every finished
# row (SQLite's planner, without statistics, would), only the partial index made for it.
FINISHED_SQL = "status <> 'pending'"


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscription"
    __table_args__ = (Index(None, "tenant", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType)
    # The `whsec_…` signing secret, AES-GCM encrypted under SECRETS_KEY (app/core/secretbox.py,
    # bound to this row's id): the HMAC key must be at hand to sign, never in plain text.
    secret_ciphertext: Mapped[str] = mapped_column(String(300))
    # The secret a rotation replaced, still signing beside the new one until
    # `previous_secret_until` (WEBHOOK_SECRET_OVERLAP_HOURS); encrypted the same way.
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(String(300), default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    description: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    # Set when the subscription is a push system's job endpoint (app/fulfilment): its jobs
    # travel through the same delivery, signing and retries, but it is not a webhook the
    # tenant manages under /v1/webhooks and no event is fanned out to it.
    system_key: Mapped[str | None] = mapped_column(String(64), default=None)
    # Set when the receiver answered 410 Gone: nothing more is sent to it (app/webhooks/
    # delivery.py). A webhook stays disabled; a push system's PATCH with a URL re-enables.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class WebhookDelivery(Base):
    """One event for one subscription. Its id is the stable `webhook-id` of every attempt."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "subscription_id", "created_at", "id"),
        # An event's deliveries: pruning asks whether an event has any left, and deleting an
        # event checks its foreign key here (without it, a scan per deleted event).
        Index(None, "event_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscription.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(
        SequenceId, ForeignKey("outbox_event.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, "delivery_status"))
    # Attempts claimed so far; a claim bumps it and leases the row until `next_attempt_at`.
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The instant a finished delivery is kept from (OUTBOX_KEEP_DAYS, app/pruning): its last
# attempt or, for one never attempted, when it was queued. Never attempted means stopped
# unsent (delivery.py `disable`: its receiver answered 410 Gone to another delivery first);
# its `last_attempt_at` stays NULL, as nothing was sent. Queued is the last thing that
# happened to it before the stopping, which comes within a round or so (whatever is pending
# is claimed at the next round; only a worker stopped or far behind widens the gap, and the
# delivery is then kept that much less after it was stopped), as an attempted delivery
# stopped later counts from its attempt. Both columns are written when a delivery is queued
# or claimed, so no path that finishes one, nor an older version of the service still running
# during an upgrade, can leave it out of the pruning, as a "finished at" column could.
KEPT_FROM = func.coalesce(WebhookDelivery.last_attempt_at, WebhookDelivery.created_at)
# Pruning: finished deliveries, the oldest first. The batch compares and orders by this very
# expression, which is what lets both databases use the index.
Index(
    "ix_webhook_delivery_kept_from",
    KEPT_FROM,
    postgresql_where=text(FINISHED_SQL),
    sqlite_where=text(FINISHED_SQL),
)


class WebhookAttempt(Base):
    """One POST. (delivery_id, attempt) is unique: no attempt is ever made twice."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE")
    )
    tenant: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int] = mapped_column(Integer)
