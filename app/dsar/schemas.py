"""DSAR tickets as the API takes and gives them (DESIGN §6)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.instants import Instant, InstantOut
from app.core.subject_id import SubjectIdIn
from app.dsar.models import DsarStatus, RejectionReason
from app.fulfilment.schemas import TasksSummary
from app.policies.schemas import KEY_PATTERN, Right

Sla = Literal["on_track", "due_soon", "overdue", "met", "missed", "no_fixed_deadline"]


class Subject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: SubjectIdIn | None = None
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+$")
    name: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _at_least_one(self) -> Subject:
        if not (self.id or self.email or self.name):
            raise ValueError("give at least one of id, email, name")
        return self


class DsarCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "policy_key": "spotrak",
                    "type": "access",
                    "subject": {"id": "user-8812", "email": "jane@example.com"},
                    "received_at": "2027-01-31T09:30:00+01:00",
                    "channel": "email",
                }
            ]
        },
    )

    policy_key: str = Field(pattern=KEY_PATTERN, max_length=64)
    type: Right
    subject: Subject
    requester: Literal["subject", "controller"] = "subject"
    received_at: Instant | None = Field(
        default=None, description="Default now; may be back-dated, never in the future"
    )
    channel: str | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=4000)


class TransitionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"to": "in_progress", "verified_at": None},
                {
                    "to": "rejected",
                    "reason": "We could not verify the requester's identity",
                    "reason_code": "identity_not_verified",
                },
            ]
        },
    )

    to: DsarStatus
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Why (required to reject); free text kept on the ticket",
    )
    reason_code: RejectionReason | None = Field(
        default=None,
        description="Only when rejecting, optional: the refusal's category, which the CCPA "
        "metrics report (GET /v1/reports/ccpa-metrics) counts denials by. identity_not_verified: "
        "the requester could not be verified; manifestly_unfounded / excessive: GDPR Art. 12(5); "
        "exemption: an exemption or exception in law applies; no_data: no personal data of the "
        "requester is held; other: any other ground. A rejection without a code is counted as "
        "`unspecified`.",
    )
    verified_at: Instant | None = Field(
        default=None, description="When identity was verified (leaving awaiting_verification)"
    )


class ExtensionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "Complex request spanning 6 systems"}]},
    )

    reason: str = Field(min_length=1, max_length=1000)


class Step(BaseModel):
    rule: str
    source: str | None
    detail: str


class DsarRead(BaseModel):
    id: uuid.UUID
    policy_key: str
    policy_version: int
    type: str
    requester: str
    status: DsarStatus
    subject: dict[str, str | None]
    channel: str | None
    description: str | None
    received_at: InstantOut
    clock_started_at: InstantOut
    verified_at: InstantOut | None
    identity_requested_at: InstantOut | None = Field(
        description="When the ticket entered awaiting_verification (identity information "
        "was asked for); under the GDPR and UK GDPR presets the clock waits for it"
    )
    acknowledge_by: date | None
    due_at: InstantOut | None
    due_date: date | None
    provisional: bool = Field(description="The clock starts at verification, not yet done")
    extension_allowed: bool = Field(
        description="An extension could be taken now: the rule allows one, it was not taken, "
        "the ticket is open and the first period has not ended"
    )
    extended: bool
    extension_reason: str | None
    extension_notice_by: date | None = Field(
        description="The date by which the subject must be told of the extension"
    )
    status_reason: str | None
    status_reason_code: RejectionReason | None = Field(
        description="The rejection's reason code, when one was given"
    )
    sla: Sla
    explanation: list[Step]
    closed_at: InstantOut | None
    created_at: InstantOut
    updated_at: InstantOut
    version: int
    tasks_summary: TasksSummary = Field(
        default_factory=TasksSummary,
        description="The request's tasks at its systems (DESIGN §13): done = completed, "
        "not_found or waived",
    )


class DsarList(BaseModel):
    items: list[DsarRead]
    next_cursor: str | None


class DsarEventRead(BaseModel):
    id: uuid.UUID
    at: InstantOut
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    reason: str | None
    data: dict[str, Any]


class DsarEventList(BaseModel):
    items: list[DsarEventRead]
    next_cursor: str | None
