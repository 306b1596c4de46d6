"""Breach incidents as the API takes and gives them (DESIGN §8)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from app.breaches.models import Audience, BreachRisk, BreachRole, BreachStatus
from app.core.instants import Instant, InstantOut
from app.policies.schemas import KEY_PATTERN, StepOut

Category = Annotated[str, Field(min_length=1, max_length=100)]
MAX_CATEGORIES = 50
MAX_SUBJECTS = 10_000_000_000  # more than everyone alive: a bound, not a guess

CREATE_EXAMPLE: dict[str, Any] = {
    "policy_key": "spotrak",
    "title": "Location history bucket exposed",
    "aware_at": "2026-10-24T22:30:00+02:00",
    "occurred_at": "2026-10-23T08:00:00+02:00",
    "data_categories": ["location_history", "email"],
    "subjects_affected": 1250,
    "risk": "high_risk",
    "description": "A storage bucket was publicly readable for 38 hours.",
}
PATCH_EXAMPLES: dict[str, Any] = {
    "reassess": {
        "summary": "Re-assess the risk (recomputes the duties)",
        "value": {"risk": "unlikely", "reason": "The data was encrypted; the key was not exposed"},
    },
    "contain": {"summary": "The breach is contained", "value": {"status": "contained"}},
    "close": {
        "summary": "Close (a reason is needed while a required notice is missing)",
        "value": {"status": "closed", "reason": "Authority agreed no notice to people is needed"},
    },
}
NOTIFICATION_EXAMPLES: dict[str, Any] = {
    "on-time": {
        "summary": "Notice to the supervisory authority",
        "value": {
            "audience": "authority",
            "sent_at": "2026-10-26T10:00:00+01:00",
            "reference": "CNIL-2026-4471",
        },
    },
    "late": {
        "summary": "A late notice gives its reasons (GDPR Art. 33(1) for a GDPR policy)",
        "value": {
            "audience": "subjects",
            "sent_at": "2026-10-29T10:00:00+01:00",
            "late_reason": "Contact data had to be restored from backups first",
        },
    },
}


class BreachCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CREATE_EXAMPLE]})

    policy_key: str = Field(pattern=KEY_PATTERN, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    aware_at: Instant = Field(
        description="When the organisation became aware: the clocks start here (not in the future)"
    )
    occurred_at: Instant | None = Field(
        default=None, description="When the breach happened, if known (not after `aware_at`)"
    )
    data_categories: list[Category] = Field(max_length=MAX_CATEGORIES)
    subjects_affected: StrictInt | None = Field(default=None, ge=0, le=MAX_SUBJECTS)
    risk: BreachRisk = Field(description="The assessed risk to the people affected")
    role: BreachRole = Field(
        default=BreachRole.controller,
        description="`processor`: the duty is to tell the controller, within the policy's "
        "`controller_within`",
    )
    description: str | None = Field(default=None, max_length=4000)


class BreachPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [v["value"] for v in PATCH_EXAMPLES.values()]},
    )

    risk: BreachRisk | None = Field(
        default=None, description="Re-assessing the risk recomputes the duties and due instants"
    )
    subjects_affected: StrictInt | None = Field(default=None, ge=0, le=MAX_SUBJECTS)
    data_categories: list[Category] | None = Field(default=None, max_length=MAX_CATEGORIES)
    description: str | None = Field(default=None, max_length=4000)
    status: BreachStatus | None = Field(
        default=None, description="open → contained → closed, or open → closed; closed is final"
    )
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Why: recorded in `history`; needed to close while a required notice "
        "is missing",
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> BreachPatch:
        for name in ("risk", "status", "data_categories"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if not self.model_fields_set - {"reason"}:
            raise ValueError(
                "give at least one of risk, subjects_affected, data_categories, description, status"
            )
        return self


class NotificationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [v["value"] for v in NOTIFICATION_EXAMPLES.values()]},
    )

    audience: Audience
    sent_at: Instant = Field(description="When the notice was sent (not in the future)")
    reference: str | None = Field(
        default=None, min_length=1, max_length=200, description="e.g. the authority's case number"
    )
    late_reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Required when the notice is sent after its due instant (GDPR and UK GDPR "
        "Art. 33(1); the service's own rule under the other regimes)",
    )


class NotificationOut(BaseModel):
    id: uuid.UUID
    audience: Audience
    sent_at: InstantOut
    reference: str | None
    late: bool = Field(description="Sent after the due instant in force when it was recorded")
    late_reason: str | None
    recorded_at: InstantOut


class BreachEventOut(BaseModel):
    id: uuid.UUID
    at: InstantOut
    actor: str = Field(description="The token's `sub`")
    version: int = Field(description="The incident version this change produced")
    kind: Literal["created", "updated", "notification_recorded"]
    changes: dict[str, Any] = Field(
        description='What changed: {"field": {"from": …, "to": …}}; a risk re-assessment also '
        "lists the duties and due instants it changed"
    )
    reason: str | None


class BreachRead(BaseModel):
    id: uuid.UUID
    policy_key: str
    policy_version: int = Field(description="The policy version in force at `aware_at`")
    title: str
    aware_at: InstantOut
    occurred_at: InstantOut | None
    data_categories: list[str]
    subjects_affected: int | None
    risk: BreachRisk
    role: BreachRole
    description: str | None
    status: BreachStatus
    authority_notification_required: bool
    authority_due_at: InstantOut | None = Field(
        description="null where the law sets no fixed period (see `explanation`)"
    )
    subjects_notification_required: bool
    subjects_due_at: InstantOut | None
    controller_notification_required: bool
    controller_due_at: InstantOut | None
    next_due_at: InstantOut | None = Field(
        description="The earliest due instant of a required notice not yet sent (null when "
        "none, or once closed)"
    )
    notifications: list[NotificationOut]
    overdue: bool = Field(
        description="A required notice is missing and its due instant has passed (never once "
        "closed)"
    )
    explanation: list[StepOut]
    keep_until: InstantOut | None = Field(
        description="`aware_at` + the policy's `records_kept_for` (null: no period set)"
    )
    closed_at: InstantOut | None
    closing_reason: str | None
    history: list[BreachEventOut] = Field(description="Every change, oldest first")
    created_at: InstantOut
    updated_at: InstantOut
    version: int


class BreachList(BaseModel):
    items: list[BreachRead]
    next_cursor: str | None
