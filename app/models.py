"""Every domain's models, imported so that one Base.metadata serves Alembic and tests."""

from app.audit.models import AuditEntry
from app.breaches.models import BreachEvent, BreachIncident, BreachNotification
from app.consent.models import ConsentEvent, ConsentState
from app.core.db import Base
from app.core.idempotency import IdempotencyRecord
from app.dsar.models import DsarEvent, DsarTicket
from app.events.models import OutboxEvent, ReminderSent
from app.fulfilment.models import FulfilmentSystem, FulfilmentTask
from app.policies.models import Policy, PolicyVersion
from app.retention.models import LegalHold, RetentionEvent, RetentionExpiry, RetentionSweep
from app.subjects.models import SubjectErasure
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

__all__ = [
    "AuditEntry",
    "Base",
    "BreachEvent",
    "BreachIncident",
    "BreachNotification",
    "ConsentEvent",
    "ConsentState",
    "DsarEvent",
    "DsarTicket",
    "FulfilmentSystem",
    "FulfilmentTask",
    "IdempotencyRecord",
    "LegalHold",
    "OutboxEvent",
    "Policy",
    "PolicyVersion",
    "ReminderSent",
    "RetentionEvent",
    "RetentionExpiry",
    "RetentionSweep",
    "SubjectErasure",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]
