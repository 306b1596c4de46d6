"""The reports as the API gives them (DESIGN §15). Every report is also served as CSV
(`Accept: text/csv`): app/reports/csvout.py flattens these models, one line per row."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.breaches.models import Audience, BreachRisk, BreachRole, BreachStatus
from app.core.instants import InstantOut

GroupBy = Literal["regime", "type", "policy"]
Interval = Literal["day", "week", "month"]
CcpaKind = Literal["know", "delete", "correct", "opt_out", "limit"]
DenialCode = Literal[
    "identity_not_verified",
    "manifestly_unfounded",
    "excessive",
    "exemption",
    "no_data",
    "other",
    "unspecified",
]

RANGE_DOC = (
    "A date (`YYYY-MM-DD`, read as UTC midnight) or an instant with its offset "
    "(`2027-01-01T00:00:00+01:00`; `+` URL-encoded as `%2B`). The range is `[from, to)`, at "
    "most 5 years."
)


# ---- DSAR ------------------------------------------------------------------------------


class DsarReportRow(BaseModel):
    regime: str | None = Field(description="The policy's regime (null unless grouped by regime)")
    type: str | None = Field(description="The request type (null unless grouped by type)")
    policy_key: str | None = Field(description="The policy (null unless grouped by policy)")
    received: int = Field(description="Tickets received in [from, to)")
    completed: int
    completed_on_time: int = Field(
        description="Completed at or before the due instant in force (the extended one when "
        "extended); a ticket with no fixed due date counts as on time"
    )
    completed_late: int
    rejected: int
    withdrawn: int
    open: int = Field(description="Still received, awaiting verification or in progress")
    overdue: int = Field(description="Open and past their due instant now")
    median_days_to_close: float | None = Field(
        description="percentile_cont(0.5) of the elapsed days (seconds / 86,400) from receipt "
        "to completion, over completed tickets; one decimal; null when none completed"
    )
    mean_days_to_close: float | None
    p90_days_to_close: float | None = Field(description="percentile_cont(0.9), as the median")
    on_time_rate: float | None = Field(
        description="completed_on_time / completed, 0 to 1; null when none completed"
    )


class DsarReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "from": "2027-01-01T00:00:00Z",
                    "to": "2027-04-01T00:00:00Z",
                    "as_of": "2027-04-02T08:00:00Z",
                    "policy_key": None,
                    "group_by": ["regime", "type"],
                    "rows": [
                        {
                            "regime": "gdpr",
                            "type": "access",
                            "policy_key": None,
                            "received": 12,
                            "completed": 9,
                            "completed_on_time": 8,
                            "completed_late": 1,
                            "rejected": 1,
                            "withdrawn": 0,
                            "open": 2,
                            "overdue": 1,
                            "median_days_to_close": 17.5,
                            "mean_days_to_close": 19.2,
                            "p90_days_to_close": 31.0,
                            "on_time_rate": 0.8888888888888888,
                        }
                    ],
                }
            ]
        },
        populate_by_name=True,
    )

    from_: InstantOut = Field(alias="from")
    to: InstantOut
    as_of: InstantOut = Field(description="The instant `overdue` was counted at")
    policy_key: str | None
    group_by: list[GroupBy]
    rows: list[DsarReportRow]


# ---- CCPA §7102(a) -----------------------------------------------------------------------


class CcpaDenied(BaseModel):
    total: int
    by_reason_code: dict[DenialCode, int] = Field(
        description="Every code, zeros included; `unspecified`: rejected without a reason_code"
    )


class CcpaKindMetrics(BaseModel):
    received: int
    complied_in_whole_or_part: int = Field(description="Completed tickets")
    denied: CcpaDenied = Field(description="Rejected tickets")
    median_days_to_respond: float | None = Field(
        description="percentile_cont(0.5) of the elapsed days from receipt to the answer "
        "(completed and rejected tickets); one decimal"
    )
    mean_days_to_respond: float | None


class CcpaMetrics(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "year": 2027,
                    "policy_keys": ["protrack"],
                    "kinds": {
                        k: {
                            "received": 0,
                            "complied_in_whole_or_part": 0,
                            "denied": {
                                "total": 0,
                                "by_reason_code": {
                                    "identity_not_verified": 0,
                                    "manifestly_unfounded": 0,
                                    "excessive": 0,
                                    "exemption": 0,
                                    "no_data": 0,
                                    "other": 0,
                                    "unspecified": 0,
                                },
                            },
                            "median_days_to_respond": None,
                            "mean_days_to_respond": None,
                        }
                        for k in ("know", "delete", "correct", "opt_out", "limit")
                    },
                }
            ]
        }
    )

    year: int = Field(
        description="Requests whose received_at falls in this year in the policy's timezone"
    )
    policy_keys: list[str] = Field(
        description="The policies counted: the one asked for, else every policy of the tenant "
        "whose regime is ccpa_cpra"
    )
    kinds: dict[CcpaKind, CcpaKindMetrics] = Field(
        description="know ← access, delete ← erasure, correct ← rectification, opt_out ← "
        "opt_out; limit (use of sensitive personal information) has no request type in this "
        "service and is always zero"
    )


# ---- consent ------------------------------------------------------------------------------


class ConsentIntervalCounts(BaseModel):
    start: InstantOut = Field(
        description="The interval's start (a UTC day, ISO week from Monday, "
        "or calendar month; cut at `from`)"
    )
    end: InstantOut = Field(description="Exclusive (cut at `to`)")
    granted: int
    denied: int = Field(description="Denials recorded by a request (GPC opt-outs not included)")
    withdrawn: int
    gpc_applied: int = Field(description="Opt-outs recorded because of a `Sec-GPC: 1` signal")


class ConsentPurposeReport(BaseModel):
    policy_key: str
    purpose: str
    opted_in_now: int = Field(
        description="Subjects whose current state is granted (and not expired) now"
    )
    intervals: list[ConsentIntervalCounts] = Field(description="Every interval of the range")


class ConsentReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: InstantOut = Field(alias="from")
    to: InstantOut
    as_of: InstantOut = Field(description="The instant `opted_in_now` was counted at")
    interval: Interval
    policy_key: str | None
    purposes: list[ConsentPurposeReport]


# ---- breach register (GDPR Art. 33(5)) ---------------------------------------------------


class RegisterRiskChange(BaseModel):
    at: InstantOut
    actor: str
    from_: BreachRisk | None = Field(alias="from")
    to: BreachRisk
    reason: str | None

    model_config = ConfigDict(populate_by_name=True)


class RegisterNotice(BaseModel):
    audience: Audience
    required: bool = Field(description="The law or the policy requires this notice")
    due_at: InstantOut | None = Field(description="null where the law sets no fixed period")
    sent_at: InstantOut | None = Field(description="null: not sent (yet)")
    late: bool = Field(description="Sent after its due instant, or not sent and past it now")
    late_by_hours: float | None = Field(
        description="How late (sent_at, or now when not sent, minus due_at), one decimal"
    )
    late_reason: str | None = Field(description="The reasons for the delay, as given")
    reference: str | None


class RegisterEntry(BaseModel):
    id: uuid.UUID
    policy_key: str
    title: str
    occurred_at: InstantOut | None
    aware_at: InstantOut
    data_categories: list[str]
    subjects_affected: int | None
    risk: BreachRisk
    role: BreachRole
    status: BreachStatus
    description: str | None = Field(description="The facts, effects and remedial action, as given")
    overdue: bool
    risk_history: list[RegisterRiskChange] = Field(
        description="Every risk assessment, oldest first"
    )
    notices: list[RegisterNotice]
    closed_at: InstantOut | None
    closing_reason: str | None


class BreachRegister(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: InstantOut | None = Field(alias="from")
    to: InstantOut | None
    as_of: InstantOut
    incidents: list[RegisterEntry] = Field(description="By awareness, oldest first")


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)
