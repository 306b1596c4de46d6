"""Consent events and states as the API takes and gives them (DESIGN §7)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)

from app.consent.models import ConsentAction
from app.core.instants import Instant, InstantOut
from app.core.subject_id import SubjectIdIn
from app.policies.schemas import KEY_PATTERN

MAX_BATCH = 1000
MAX_PROOF_MEMBERS = 20
MAX_PROOF_STRING = 1000

ProofValue = (
    Annotated[str, Field(max_length=MAX_PROOF_STRING)] | StrictBool | StrictInt | FiniteFloat | None
)
ProofKey = Annotated[str, Field(min_length=1, max_length=100)]
StateName = Literal["granted", "denied", "withdrawn", "expired", "not_set"]

EVENT_EXAMPLE: dict[str, Any] = {
    "policy_key": "spotrak",
    "subject_id": "user-8812",
    "purpose": "audience_cookies",
    "action": "granted",
    "occurred_at": "2027-03-01T10:15:00+01:00",
    "source": "cookie_banner",
    "proof": {"banner_version": "2027-02", "ip_country": "FR"},
}


class ConsentEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EVENT_EXAMPLE]})

    policy_key: str = Field(pattern=KEY_PATTERN, max_length=64)
    subject_id: SubjectIdIn
    purpose: str = Field(min_length=1, max_length=64, description="A purpose the policy defines")
    action: ConsentAction
    occurred_at: Instant | None = Field(
        default=None,
        description="Default now; may be back-dated (a late event never "
        "overwrites a newer state), never in the future",
    )
    source: str | None = Field(default=None, min_length=1, max_length=50)
    proof: dict[ProofKey, ProofValue] | None = Field(
        default=None,
        max_length=MAX_PROOF_MEMBERS,
        description="Free evidence: an object of at most 20 scalar members, strings at most "
        "1,000 characters",
    )


class ConsentEventOut(BaseModel):
    id: uuid.UUID
    policy_key: str
    policy_version: int = Field(description="The policy version in force at `occurred_at`")
    subject_id: str
    purpose: str
    action: ConsentAction
    occurred_at: InstantOut
    recorded_at: InstantOut
    expires_at: InstantOut | None = Field(
        description="When this grant lapses (occurred_at + the purpose's `expires_after`)"
    )
    source: str | None
    proof: dict[str, Any] | None
    gpc: bool = Field(description="Recorded because the request carried `Sec-GPC: 1`")
    erased: bool = Field(description="The subject was erased: `subject_id` is a pseudonym")


class ConsentEventCreated(ConsentEventOut):
    became_current: bool = Field(
        description="Whether this event is now the current state for its purpose (false for a "
        "late event older than the state already recorded)"
    )
    gpc_applied: list[str] = Field(
        description="Purposes opted out because the request carried `Sec-GPC: 1`"
    )
    gpc_event_ids: list[uuid.UUID] = Field(description="The events recorded for `gpc_applied`")


class ConsentEventList(BaseModel):
    items: list[ConsentEventOut]
    next_cursor: str | None


BATCH_EXAMPLE: dict[str, Any] = {
    "events": [
        EVENT_EXAMPLE,
        {**EVENT_EXAMPLE, "subject_id": "user-8813", "action": "denied"},
    ]
}


class ConsentBatchIn(BaseModel):
    """Items are validated one by one: a bad item is a problem in its slot, not a failed call."""

    # The document states the 1,000 bound in words, not as `maxItems`: more is 413 (DESIGN §7,
    # the body is too large to take), and a schema bound would make 1,001 events a
    # schema-invalid request, which clients and fuzzers expect to be a 400 or 422.

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [BATCH_EXAMPLE]})

    events: Annotated[
        list[Any],
        WithJsonSchema(
            {
                "type": "array",
                # any item is taken: one that is not a valid event is a problem in its slot
                # (the call still records the others), so the document does not call it invalid
                "items": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/ConsentEventIn"},
                        {"description": "Anything else: answered with a problem in its slot"},
                    ]
                },
                "description": f"Up to {MAX_BATCH:,} events (more is 413)",
            }
        ),
    ]


class ItemProblem(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None
    code: str


class ConsentBatchOut(BaseModel):
    results: list[ConsentEventCreated | ItemProblem] = Field(
        description="One per submitted event, in order: the recorded event or a problem"
    )
    recorded: int
    rejected: int


class ConsentEntry(BaseModel):
    policy_key: str
    purpose: str
    state: StateName
    since: InstantOut | None
    expires_at: InstantOut | None
    event_id: uuid.UUID | None
    default: Literal["granted", "denied"] = Field(description="The policy's default")


class SubjectConsents(BaseModel):
    subject_id: str
    as_of: InstantOut | None = Field(description="The instant answered for (null: now)")
    consents: list[ConsentEntry]
    events: list[ConsentEventOut] | None = Field(
        default=None, description="With `as_of`: the ledger events that justify each state"
    )


class ReceiptController(BaseModel):
    name: str
    contact: str | None


class ReceiptPurpose(BaseModel):
    key: str
    description: str | None


class ReceiptPolicy(BaseModel):
    key: str
    version: int
    title: str
    published_at: InstantOut
    effective_at: InstantOut


class ReceiptPeriod(BaseModel):
    """A period of the policy in force, as the receipt states it (e.g. 13 months)."""

    value: int
    unit: str


class ReceiptRetention(BaseModel):
    consent_expires_after: ReceiptPeriod | None
    consent_expires_at: InstantOut | None
    record: str


class ConsentReceipt(BaseModel):
    """ISO/IEC TS 27560 / Kantara Consent Receipt fields, as JSON."""

    receipt_id: uuid.UUID
    issued_at: InstantOut
    specification: str
    controller: ReceiptController
    subject_id: str
    purpose: ReceiptPurpose
    lawful_basis: str
    action: ConsentAction
    state: StateName = Field(description="The state this event established")
    current_state: StateName = Field(description="The subject's state for the purpose now")
    occurred_at: InstantOut
    recorded_at: InstantOut
    source: str | None
    gpc: bool
    policy: ReceiptPolicy
    jurisdiction: str
    withdrawal_method: str | None
    retention: ReceiptRetention
    event_id: uuid.UUID


class ConsentStateOut(BaseModel):
    policy_key: str
    purpose: str
    state: StateName
    since: InstantOut
    expires_at: InstantOut | None
    event_id: uuid.UUID
