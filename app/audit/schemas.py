"""The audit log as the API gives it (DESIGN §9)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.core.instants import InstantOut


class AuditEventRead(BaseModel):
    id: int = Field(description="Sequence number, in the order entries were written")
    chain_seq: int | None = Field(
        description="Position in the tenant's chain; null until the sealer has chained it"
    )
    at: InstantOut
    actor: str = Field(description="The token's `sub` that made the change")
    action: str = Field(examples=["dsar.status_changed"])
    object_type: str = Field(examples=["dsar_ticket"])
    object_id: str
    data: dict[str, Any] = Field(description="Ids, versions, dates and states; never personal data")
    prev_digest: str | None
    digest: str | None = Field(description="sha256(prev_digest + canonical entry), hex")
    sealed_at: InstantOut | None


class AuditEventList(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None


class BrokenLink(BaseModel):
    seq: int = Field(description="The chain position where verification failed")
    id: int = Field(description="The entry found there")
    reason: str


class AuditVerification(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [{"ok": True, "checked": 1532, "unsealed": 3, "first_broken": None}]
        }
    }

    ok: bool
    checked: int = Field(description="Sealed entries recomputed")
    unsealed: int = Field(description="Entries written but not chained yet (the worker seals)")
    first_broken: BrokenLink | None
