"""The resolved policy (`regimes.resolve`), typed: what the deadlines, retention, the caches
and the services read of a policy version. Stored as JSON, so these are TypedDicts over the
same plain dicts (no conversion on the hot paths)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# The regimes with a preset: the one list (regimes.REGIMES and the policy schema use it).
Regime = Literal[
    "gdpr",
    "uk_gdpr",
    "ccpa_cpra",
    "pipeda",
    "quebec_law25",
    "bc_pipa",
    "lgpd",
    "morocco_09_08",
    "custom",
]


class PeriodRule(TypedDict):
    value: int
    unit: str


class ResponseRule(TypedDict):
    within: PeriodRule | None
    extension: PeriodRule | None
    extension_notice_within: PeriodRule | None
    acknowledge_within: PeriodRule | None
    clock_starts: str
    applies_to: str
    overrides: list[str]  # the fields the policy promises beyond the law
    legal_source: str
    source: str


class ResponseRules(TypedDict):
    default: ResponseRule
    by_type: dict[str, ResponseRule]


class CalendarRules(TypedDict):
    country: str
    subdivision: str | None
    categories: list[str]
    observed: bool
    extra_holidays: list[str]
    excluded_holidays: list[str]
    non_business_days: list[str]
    roll_forward_on: list[str]
    add: list[str]
    remove: list[str]
    source: str


class JurisdictionRules(TypedDict):
    regime: Regime
    country: str
    subdivision: str | None
    timezone: str
    calendar: CalendarRules


class BreachRules(TypedDict):
    authority_within: PeriodRule | None
    subjects_within: PeriodRule | None
    controller_within: PeriodRule | None
    notify_authority: str
    notify_subjects: str
    records_kept_for: PeriodRule | None
    overrides: list[str]
    legal_source: str
    source: str


class RetentionRule(TypedDict):
    category: str
    keep_for: PeriodRule | None
    starts_at: str
    then: str


class ConsentPurposeRule(TypedDict):
    key: str
    description: str | None
    lawful_basis: str
    default: Literal["granted", "denied"]
    expires_after: PeriodRule | None
    honors_gpc: bool
    withdrawal_method: str | None


class ControllerRules(TypedDict):
    name: str
    contact_email: str | None
    country: str | None


class FulfilmentRules(TypedDict):
    """The policy's `fulfilment` block with its defaults (DESIGN §13)."""

    buffer: PeriodRule
    max_attempts: int
    auto_complete: bool
    keep_results_for: PeriodRule


class RecordsRules(TypedDict):
    """The policy's `records` block with its defaults (DESIGN §14)."""

    dsar_kept_for: PeriodRule
    overrides: NotRequired[list[str]]


class ResolvedPolicy(TypedDict):
    key: str
    title: str
    controller: ControllerRules
    jurisdiction: JurisdictionRules
    rights: list[str]
    response: ResponseRules
    retention: list[RetentionRule]
    breach: BreachRules
    consent_purposes: list[ConsentPurposeRule]
    minimum_age: int | None
    change_notice: PeriodRule
    effective_from: str | None
    # Absent from versions published before the block existed (read as the defaults).
    fulfilment: NotRequired[FulfilmentRules]
    records: NotRequired[RecordsRules]
