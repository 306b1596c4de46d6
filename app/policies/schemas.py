"""Policy configuration as the API takes it (DESIGN §4) and as it answers (resolved rules)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from app.core.instants import Instant, InstantOut
from app.rules.policy import Regime

Unit = Literal["hours", "days", "business_days", "weeks", "months", "years"]
Right = Literal[
    "access",
    "rectification",
    "erasure",
    "portability",
    "restriction",
    "objection",
    "withdraw_consent",
    "opt_out",
]
# received: at receipt whatever verification (CCPA); verified: at identity verification;
# received_or_identity: at receipt, or at the receipt of the identity information the
# controller asked for (GDPR and UK GDPR presets: UK GDPR Art. 12A, EDPB 01/2022)
ClockStarts = Literal["received", "verified", "received_or_identity"]
NotifyWhen = Literal["risk", "high_risk", "always", "never"]
LawfulBasis = Literal[
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
]
SNAKE = r"^[a-z][a-z0-9_]{0,63}$"
KEY_PATTERN = r"^[a-z0-9-]{3,64}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Period(_In):
    value: StrictInt = Field(ge=0, le=100_000)
    unit: Unit


class RuleIn(_In):
    within: Period | None = None
    extension: Period | None = None
    extension_notice_within: Period | None = None
    acknowledge_within: Period | None = None
    clock_starts: ClockStarts | None = None
    applies_to: Literal["subject", "controller_instruction"] | None = None


class ResponseIn(_In):
    default: RuleIn | None = None
    by_type: dict[Right, RuleIn] | None = Field(default=None, max_length=8)


class Controller(_In):
    name: str = Field(min_length=1, max_length=200)
    contact_email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
    )
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", max_length=2)


class CalendarAdjust(_In):
    add: list[date] = Field(default_factory=list, max_length=366)
    remove: list[date] = Field(default_factory=list, max_length=366)


class JurisdictionIn(_In):
    regime: Regime
    country: str = Field(pattern=r"^[A-Z]{2}$", max_length=2, description="ISO 3166-1 alpha-2")
    subdivision: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9 -]{1,40}$",
        max_length=40,
        description="ISO 3166-2 subdivision code as the holiday calendar knows it (e.g. QC)",
    )
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone")
    calendar: CalendarAdjust | None = None


class RetentionIn(_In):
    category: str = Field(pattern=SNAKE, max_length=64)
    keep_for: Period | None = Field(description="null = kept indefinitely")
    starts_at: str = Field(
        default="collected",
        pattern=SNAKE,
        max_length=64,
        description="collected, last_activity, account_closed, contract_ended or a custom event",
    )
    then: Literal["delete", "anonymize", "archive", "review"] = "delete"


class BreachIn(_In):
    authority_within: Period | None = None
    subjects_within: Period | None = None
    controller_within: Period | None = None
    notify_authority: NotifyWhen | None = None
    notify_subjects: NotifyWhen | None = None
    records_kept_for: Period | None = None


class ConsentPurpose(_In):
    key: str = Field(pattern=SNAKE, max_length=64)
    description: str | None = Field(default=None, max_length=1000)
    lawful_basis: LawfulBasis = "consent"
    default: Literal["granted", "denied"] = "denied"
    expires_after: Period | None = None
    honors_gpc: StrictBool = False
    withdrawal_method: str | None = Field(default=None, max_length=500)


class FulfilmentIn(_In):
    """How the tenant's systems fulfil requests (DESIGN §13); every field optional."""

    buffer: Period | None = Field(
        default=None,
        description="Tasks are due this long before the request (default 2 business days)",
    )
    max_attempts: StrictInt | None = Field(
        default=None, ge=1, le=50, description="A failed task is retried up to this (default 5)"
    )
    auto_complete: StrictBool | None = Field(
        default=None, description="Complete the request when its last task is done"
    )
    keep_results_for: Period | None = Field(
        default=None,
        description="Task data is deleted this long after the request closes (default 30 days)",
    )


class RecordsIn(_In):
    """How long the service keeps its own records (DESIGN §14); every field optional."""

    dsar_kept_for: Period | None = Field(
        default=None,
        description="A closed request is deleted this long after it closed (default 24 "
        "months: CCPA regulations §7101); its audit entries stay",
    )


class PolicyConfig(_In):
    title: str = Field(min_length=1, max_length=200)
    controller: Controller
    jurisdiction: JurisdictionIn
    rights: list[Right] = Field(min_length=1, max_length=8)
    response: ResponseIn | None = None
    retention: list[RetentionIn] = Field(default_factory=list, max_length=200)
    breach: BreachIn | None = None
    consent_purposes: list[ConsentPurpose] = Field(default_factory=list, max_length=200)
    minimum_age: StrictInt | None = Field(default=None, ge=0, le=25)
    change_notice: Period | None = None
    fulfilment: FulfilmentIn | None = None
    records: RecordsIn | None = None
    effective_from: Instant | None = Field(
        default=None, description="A later version takes effect no earlier than this"
    )


class PolicyCreate(PolicyConfig):
    key: str = Field(pattern=KEY_PATTERN, max_length=64)


class PolicyPublish(PolicyConfig):
    """A new version; `key`, if sent, must equal the path's."""

    key: str | None = Field(default=None, pattern=KEY_PATTERN, max_length=64)


# ---- responses: the resolved rules in force ----------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PeriodOut(_Out):
    value: int
    unit: Unit


class RuleOut(_Out):
    within: PeriodOut | None
    extension: PeriodOut | None
    extension_notice_within: PeriodOut | None
    acknowledge_within: PeriodOut | None
    clock_starts: ClockStarts
    applies_to: Literal["subject", "controller_instruction"]
    source: str


class ResponseOut(_Out):
    default: RuleOut
    by_type: dict[str, RuleOut]


class CalendarOut(_Out):
    country: str
    subdivision: str | None
    categories: list[str]
    observed: bool
    extra_holidays: list[str]
    excluded_holidays: list[str] = Field(
        default=[], description="Days the holiday package lists that the statute does not"
    )
    non_business_days: list[str]
    roll_forward_on: list[str]
    add: list[date]
    remove: list[date]
    source: str


class JurisdictionOut(_Out):
    regime: Regime
    country: str
    subdivision: str | None
    timezone: str
    calendar: CalendarOut


class BreachOut(_Out):
    authority_within: PeriodOut | None
    subjects_within: PeriodOut | None
    controller_within: PeriodOut | None
    notify_authority: NotifyWhen
    notify_subjects: NotifyWhen
    records_kept_for: PeriodOut | None
    source: str


class RetentionOut(_Out):
    category: str
    keep_for: PeriodOut | None
    starts_at: str
    then: str


class ConsentPurposeOut(_Out):
    key: str
    description: str | None = None
    lawful_basis: str
    default: Literal["granted", "denied"]
    expires_after: PeriodOut | None = None
    honors_gpc: bool
    withdrawal_method: str | None = None


class ControllerOut(_Out):
    name: str
    contact_email: str | None = None
    country: str | None = None


class FulfilmentOut(_Out):
    buffer: PeriodOut
    max_attempts: int
    auto_complete: bool
    keep_results_for: PeriodOut


class RecordsOut(_Out):
    dsar_kept_for: PeriodOut


class PolicyRead(_Out):
    key: str
    title: str
    controller: ControllerOut
    jurisdiction: JurisdictionOut
    rights: list[Right]
    response: ResponseOut
    retention: list[RetentionOut]
    breach: BreachOut
    consent_purposes: list[ConsentPurposeOut]
    minimum_age: int | None
    change_notice: PeriodOut
    fulfilment: FulfilmentOut
    records: RecordsOut
    effective_from: InstantOut | None
    version: int = Field(description="1, 2, … (versions are immutable)")
    published_at: InstantOut
    effective_at: InstantOut = Field(description="When this version governs from")
    in_force: bool = Field(description="Whether this is the version in force now")
    declared: dict[str, Any] = Field(description="The configuration as published, before presets")


class PolicyList(_Out):
    items: list[PolicyRead]
    next_cursor: str | None


SPOTRAK_EXAMPLE: dict[str, Any] = {
    "key": "spotrak",
    "title": "Spotrak privacy policy",
    "controller": {"name": "SPOTRAK LLC", "contact_email": "privacy@spotrak.com", "country": "FR"},
    "jurisdiction": {
        "regime": "gdpr",
        "country": "FR",
        "subdivision": None,
        "timezone": "Europe/Paris",
    },
    "rights": [
        "access",
        "rectification",
        "erasure",
        "portability",
        "restriction",
        "objection",
        "withdraw_consent",
    ],
    "response": {
        "default": {
            "within": {"value": 1, "unit": "months"},
            "extension": {"value": 2, "unit": "months"},
            "acknowledge_within": {"value": 5, "unit": "business_days"},
        }
    },
    "retention": [
        {
            "category": "technical_logs",
            "keep_for": {"value": 12, "unit": "months"},
            "starts_at": "collected",
            "then": "delete",
        },
        {
            "category": "business_data",
            "keep_for": {"value": 0, "unit": "days"},
            "starts_at": "contract_ended",
            "then": "archive",
        },
    ],
    "breach": {
        "authority_within": {"value": 72, "unit": "hours"},
        "subjects_within": {"value": 72, "unit": "hours"},
        "notify_subjects": "always",
    },
    "consent_purposes": [
        {
            "key": "audience_cookies",
            "lawful_basis": "consent",
            "default": "denied",
            "expires_after": {"value": 13, "unit": "months"},
            "honors_gpc": False,
        }
    ],
    "minimum_age": None,
    "change_notice": {"value": 15, "unit": "days"},
}

MINIMAL_EXAMPLE: dict[str, Any] = {
    "key": "acme-uk",
    "title": "ACME UK privacy notice",
    "controller": {"name": "ACME Ltd"},
    "jurisdiction": {
        "regime": "uk_gdpr",
        "country": "GB",
        "subdivision": "ENG",
        "timezone": "Europe/London",
    },
    "rights": ["access", "erasure"],
}


# ---- previews (DESIGN §5) -----------------------------------------------------------------


class StepOut(_Out):
    rule: str
    source: str | None
    detail: str


class DsarPreviewIn(_In):
    kind: Literal["dsar"]
    type: Right
    received_at: Instant
    verified_at: Instant | None = None
    identity_requested: bool | None = Field(
        default=None,
        description="Whether the controller asked for information to confirm identity (a "
        "ticket that went through awaiting_verification). Default: true when verified_at is "
        "after received_at",
    )
    requester: Literal["subject", "controller"] = "subject"


class BreachPreviewIn(_In):
    kind: Literal["breach"]
    aware_at: Instant
    risk: Literal["unlikely", "risk", "high_risk"]
    role: Literal["controller", "processor"] = "controller"


class DsarPreviewOut(_Out):
    kind: Literal["dsar"]
    policy_key: str
    policy_version: int
    clock_started_at: InstantOut
    acknowledge_by: date | None
    due_at: InstantOut | None
    due_date: date | None
    provisional: bool
    extension_allowed: bool = Field(
        description="Whether the rule allows an extension (a ticket's own field also says "
        "whether its window is still open)"
    )
    extended_due_at: InstantOut | None
    extended_due_date: date | None
    extension_notice_by: date | None
    explanation: list[StepOut]


class BreachPreviewOut(_Out):
    kind: Literal["breach"]
    policy_key: str
    policy_version: int
    authority_notification_required: bool
    authority_due_at: InstantOut | None
    subjects_notification_required: bool
    subjects_due_at: InstantOut | None
    controller_notification_required: bool
    controller_due_at: InstantOut | None
    explanation: list[StepOut]


class RetentionRecord(TypedDict):
    category: Annotated[str, Field(max_length=64)]
    collected_at: Instant
    events: NotRequired[
        Annotated[dict[Annotated[str, Field(max_length=64)], Instant], Field(max_length=20)]
    ]


class RetentionPreviewIn(_In):
    records: list[RetentionRecord] = Field(min_length=1, max_length=10_000)


class RetentionProblem(_Out):
    type: str
    title: str
    status: int
    code: str
    detail: str | None = None


class RetentionResultOut(_Out):
    category: str
    state: Literal["running", "not_started", "indefinite"] | None = None
    expires_at: InstantOut | None = None
    then: str | None = None
    explanation_ref: str | None = None
    problem: RetentionProblem | None = None


class RetentionPreviewOut(_Out):
    policy_key: str
    policy_version: int
    results: list[RetentionResultOut]
    explanations: dict[str, list[StepOut]]
