"""Systems, tasks, results and the access package as the API takes and gives them (§13).

Schema names are distinct from every other domain's (`SystemCreate`, `TaskRead`, …): one
OpenAPI schema per name.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from app.core.instants import InstantOut
from app.fulfilment.models import DeliveryMode, TaskStatus
from app.policies.schemas import KEY_PATTERN, SNAKE, Period, PeriodOut, Right

SYSTEM_KEY_PATTERN = KEY_PATTERN
CategoryName = Annotated[str, Field(max_length=64)]
MAX_PROOF_MEMBERS = 50


class PushDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["push"]
    url: str = Field(
        min_length=8,
        max_length=2000,
        description="http(s); private-network and loopback targets are refused unless the "
        "host is in WEBHOOK_ALLOW_HOSTS (the webhooks' rules)",
    )


class PullDelivery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["pull"]


SystemDelivery = PushDelivery | PullDelivery


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


class SystemCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "key": "crm",
                    "name": "Customer CRM",
                    "categories": ["business_data"],
                    "handles": ["access", "erasure", "portability"],
                    "delivery": {"mode": "pull"},
                    "task_within": {"value": 5, "unit": "business_days"},
                }
            ]
        },
    )

    key: str = Field(pattern=SYSTEM_KEY_PATTERN, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    categories: list[CategoryName] = Field(
        default_factory=list,
        max_length=100,
        description="Data categories the system holds, as the tenant's policies name them "
        "in their retention rules",
    )
    handles: list[Right] = Field(min_length=1, max_length=8, description="Request types")
    delivery: SystemDelivery = Field(discriminator="mode")
    task_within: Period | None = Field(
        default=None, description="The system's service level, counted from the clock start"
    )
    contact_email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
    )
    active: StrictBool = True

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(SNAKE, name):
                raise ValueError("a category is a snake_case name")
        return _unique(value)

    @field_validator("handles")
    @classmethod
    def _unique_handles(cls, value: list[str]) -> list[str]:
        return _unique(value)


class SystemUpdate(BaseModel):
    """Any field; `"active": false` retires the system (no new tasks; open ones stay)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    categories: list[CategoryName] | None = Field(default=None, max_length=100)
    handles: list[Right] | None = Field(default=None, min_length=1, max_length=8)
    delivery: SystemDelivery | None = Field(default=None, discriminator="mode")
    task_within: Period | None = None
    contact_email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
    )
    active: StrictBool | None = None

    @field_validator("categories")
    @classmethod
    def _category_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for name in value:
            if not re.fullmatch(SNAKE, name):
                raise ValueError("a category is a snake_case name")
        return _unique(value)

    @field_validator("handles")
    @classmethod
    def _unique_handles(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _unique(value)


class SystemDeliveryRead(BaseModel):
    mode: DeliveryMode
    url: str | None = None
    disabled_at: InstantOut | None = Field(
        default=None,
        description="Set when the push endpoint answered 410 Gone: no job is sent (open "
        "tasks wait; the system can still report). A PATCH with a `delivery` URL re-enables "
        "it and resends the open tasks' jobs",
    )


class SystemRead(BaseModel):
    key: str
    name: str
    categories: list[str]
    handles: list[str]
    delivery: SystemDeliveryRead
    task_within: PeriodOut | None
    contact_email: str | None
    active: bool
    created_at: InstantOut
    updated_at: InstantOut
    version: int


class SystemCreated(SystemRead):
    secret: str | None = Field(
        description="A push system's signing secret (`whsec_…`), shown once; null for pull",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class SystemUpdated(SystemRead):
    secret: str | None = Field(
        description="A new signing secret, shown once, when the change made this a push "
        "system; null otherwise"
    )


class SystemSecretRotated(BaseModel):
    key: str
    secret: str = Field(description="The new `whsec_…` secret, shown once")
    previous_secret_valid_until: InstantOut | None = Field(
        description="Until then every job carries two signatures (`v1,<new> v1,<old>`); null "
        "when WEBHOOK_SECRET_OVERLAP_HOURS is 0"
    )


class SystemList(BaseModel):
    items: list[SystemRead]
    next_cursor: str | None


class TaskSubject(BaseModel):
    id: str | None
    email: str | None
    name: str | None


# What a task asks: a request type (the ticket's), or one of retention's two (DESIGN §14).
TaskType = Literal[Right, "retention_sweep", "retention_erasure"]


class TaskRead(BaseModel):
    id: uuid.UUID
    dsar_id: uuid.UUID | None = Field(
        description="The request behind the task; null for a retention task"
    )
    system: str
    type: str
    subject: TaskSubject
    status: TaskStatus
    due_at: InstantOut | None
    explanation: list[dict[str, Any]]
    attempts: int
    lease_until: InstantOut | None
    records_affected: int | None
    reason: str | None
    proof: dict[str, Any] | None
    result_digest: str | None
    has_data: bool = Field(
        description="Whether the result carries data (deleted `fulfilment.keep_results_for` "
        "after the request closes)"
    )
    reported_at: InstantOut | None
    overdue: bool
    created_at: InstantOut
    updated_at: InstantOut
    version: int
    # Retention tasks (DESIGN §14): `retention_sweep` and `retention_erasure`.
    category: str | None = Field(
        default=None, description="Retention tasks: the data category to act on"
    )
    cutoff: InstantOut | None = Field(
        default=None,
        description="retention_sweep: apply `then` to every record of the category whose "
        "trigger instant is before this, except the held subjects",
    )
    then: str | None = Field(
        default=None, description="Retention tasks: delete, anonymize, archive or review"
    )
    holds: list[str] | None = Field(
        default=None, description="retention_sweep: the held subjects' ids, to leave alone"
    )
    subject_id: str | None = Field(
        default=None, description="retention_erasure: the subject whose records expired"
    )
    policy_key: str | None = Field(
        default=None, description="Retention tasks: the policy whose retention rule applies"
    )
    held_by: list[str] | None = Field(
        default=None,
        description="The legal holds that postponed the task (status `held` while one is "
        "active; kept after they end)",
    )


class TaskExport(TaskRead):
    """A task in a subject's export: the task with what its system returned."""

    data: dict[str, Any] | None = Field(
        description="What the system returned (access and portability), until it is deleted"
    )


class TaskList(BaseModel):
    items: list[TaskRead]
    next_cursor: str | None


class TaskClaimIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"limit": 10, "lease_seconds": 300}]}
    )

    limit: StrictInt = Field(default=10, ge=1, le=100)
    lease_seconds: StrictInt = Field(default=300, ge=30, le=3600)


class TaskClaimed(BaseModel):
    items: list[TaskRead]


class TaskResultIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "completed",
                    "records_affected": 3,
                    "data": {"orders": [{"id": "o-1", "total": "12.00"}]},
                    "proof": {"job": "export-77"},
                }
            ]
        },
    )

    status: Literal["completed", "not_found", "failed", "refused"]
    records_affected: StrictInt | None = Field(default=None, ge=0, le=2**31 - 1)
    data: dict[str, Any] | None = Field(
        default=None,
        description="access and portability only: what the system holds (at most "
        "TASK_DATA_MAX_BYTES as JSON, default 1 MiB, else 413)",
    )
    reason: str | None = Field(
        default=None, min_length=1, max_length=1000, description="Required for failed, refused"
    )
    proof: dict[str, Any] | None = Field(
        default=None, description="The system's evidence (job ids, counts); kept with the task"
    )

    @field_validator("proof")
    @classmethod
    def _small_proof(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(value) > MAX_PROOF_MEMBERS:
            raise ValueError(f"at most {MAX_PROOF_MEMBERS} members")
        return value


class TaskWaiveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reason": "The newsletter vendor was offboarded in 2026"}]
        },
    )

    reason: str = Field(min_length=1, max_length=1000)


class TasksSummary(BaseModel):
    total: int = 0
    open: int = 0
    done: int = 0
    failed: int = 0
    refused: int = 0


class PackageLinkIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"expires_in": {"value": 7, "unit": "days"}}]},
    )

    expires_in: Period = Field(description="1 hour to 30 days")


class PackageLinkRead(BaseModel):
    url: str
    expires_at: InstantOut


class PackageSystem(BaseModel):
    system: str
    name: str
    status: TaskStatus
    records_affected: int | None
    reported_at: InstantOut | None
    data: dict[str, Any] | None


class PackageDsar(BaseModel):
    id: uuid.UUID
    type: str
    status: str
    received_at: InstantOut
    due_at: InstantOut | None
    closed_at: InstantOut | None


class PackagePolicy(BaseModel):
    key: str
    version: int
    title: str
    controller: str


class DsarPackage(BaseModel):
    dsar: PackageDsar
    subject: TaskSubject
    generated_at: InstantOut
    policy: PackagePolicy
    systems: list[PackageSystem]
