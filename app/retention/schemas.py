"""Sweeps, subject retention and legal holds as the API takes and gives them (DESIGN §14).
Schema names are distinct from every other domain's (one OpenAPI schema per name)."""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.instants import Instant, InstantOut
from app.core.subject_id import SubjectIdIn
from app.fulfilment.models import TaskStatus
from app.policies.schemas import KEY_PATTERN, SNAKE

Explanation = list[dict[str, Any]]


class SweepRunIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"policy_key": "spotrak"}]}
    )

    policy_key: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        max_length=64,
        description="Only this policy's rules (default: every policy of the tenant)",
    )


class SweepRead(BaseModel):
    id: uuid.UUID
    policy_key: str
    policy_version: int
    system: str
    category: str
    day: date = Field(description="The sweep's local date in the policy's timezone")
    cutoff: InstantOut
    then: str
    holds: list[str] = Field(description="The held subjects' ids, left alone by the sweep")
    explanation: Explanation
    task_id: uuid.UUID | None
    status: TaskStatus | None = Field(description="The sweep task's status")
    records_affected: int | None = Field(description="As the system reported it")
    reported_at: InstantOut | None
    created_at: InstantOut


class SweepPostponed(BaseModel):
    policy_key: str
    system: str
    category: str
    day: date
    held_by: list[str] = Field(description="The category holds that stop today's sweep")


class SweepRunRead(BaseModel):
    created: int = Field(description="Sweeps created by this run (the others existed already)")
    items: list[SweepRead] = Field(description="Today's sweeps of the policies run")
    postponed: list[SweepPostponed] = Field(
        description="Sweeps not created because a legal hold covers the whole category"
    )


class SweepList(BaseModel):
    items: list[SweepRead]
    next_cursor: str | None


class RetentionEventIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "policy_key": "spotrak",
                    "event": "contract_ended",
                    "occurred_at": "2027-01-31T10:00:00+01:00",
                }
            ]
        },
    )

    policy_key: str = Field(pattern=KEY_PATTERN, max_length=64)
    event: str = Field(
        min_length=1,
        max_length=64,
        description="A `starts_at` one of the policy's retention rules uses (account_closed, "
        "contract_ended or a custom event), else 422",
    )
    occurred_at: Instant = Field(description="When it happened; not in the future")


class RetentionEventExport(BaseModel):
    """A recorded retention event in a subject's export."""

    id: uuid.UUID
    policy_key: str
    policy_version: int
    event: str
    occurred_at: InstantOut
    recorded_at: InstantOut


class RetentionExpiryRead(BaseModel):
    category: str
    expires_at: InstantOut
    then: str
    state: Literal["running", "expired"]


class RetentionEventRead(BaseModel):
    id: uuid.UUID
    subject_id: str
    policy_key: str
    policy_version: int
    event: str
    occurred_at: InstantOut
    recorded_at: InstantOut
    expiries: list[RetentionExpiryRead] = Field(
        description="The categories this event starts the clock of (indefinite ones aside)"
    )


class SubjectRetentionItem(BaseModel):
    policy_key: str
    category: str
    state: Literal["running", "expired", "not_started", "indefinite", "held"]
    expires_at: InstantOut | None
    then: str
    explanation: Explanation


class SubjectRetention(BaseModel):
    subject_id: str
    items: list[SubjectRetentionItem]


class HoldCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "user-42",
                    "categories": ["business_data"],
                    "reason": "Litigation 2027-CV-0113: preserve until judgment",
                }
            ]
        },
    )

    subject_id: SubjectIdIn | None = Field(
        default=None, description="One subject (without categories: all their data)"
    )
    categories: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Data categories, as the tenant's policies name them (without a subject: "
        "everyone's records of them)",
    )
    reason: str = Field(min_length=1, max_length=1000)
    until: Instant | None = Field(default=None, description="When the hold ends by itself")

    @field_validator("categories")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for name in value:
            if not re.fullmatch(SNAKE, name):
                raise ValueError("a category is a snake_case name")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _something_held(self) -> HoldCreate:
        if self.subject_id is None and self.categories is None:
            raise ValueError("a hold names a subject_id, categories, or both")
        return self


class HoldRead(BaseModel):
    id: uuid.UUID
    subject_id: str | None
    categories: list[str] | None = Field(description="null: every category of the subject")
    reason: str
    until: InstantOut | None
    active: bool
    created_at: InstantOut
    created_by: str
    released_at: InstantOut | None = Field(
        description="When it was released (or ended at `until`)"
    )
    released_by: str | None


class HoldList(BaseModel):
    items: list[HoldRead]
    next_cursor: str | None
