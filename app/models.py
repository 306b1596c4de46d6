"""Every domain's models, imported so that one Base.metadata serves Alembic and tests."""

from app.breaches.models import BreachEvent, BreachIncident, BreachNotification
from app.consent.models import ConsentEvent, ConsentState, SubjectErasure
from app.core.db import Base
from app.core.idempotency import IdempotencyRecord
from app.dsar.models import DsarEvent, DsarTicket
from app.policies.models import Policy, PolicyVersion

__all__ = [
    "Base",
    "BreachEvent",
    "BreachIncident",
    "BreachNotification",
    "ConsentEvent",
    "ConsentState",
    "DsarEvent",
    "DsarTicket",
    "IdempotencyRecord",
    "Policy",
    "PolicyVersion",
    "SubjectErasure",
]
