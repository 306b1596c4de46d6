"""How long the service keeps its own records of requests (DESIGN §14), and when a closed
request (or a finished retention task) is deleted. Pure: no I/O, no clock.

The policy's `records` block: `dsar_kept_for` (default 24 months). California's CCPA
regulations (11 CCR §7101(a)) ask a business to keep the records of consumer requests and of
how it answered them for at least 24 months; the service applies that period to every
regime unless the policy names another. A closed request is deleted `dsar_kept_for` after it
closed, at the same local wall-clock time in the policy's timezone (months are month-aware: one
month after 31 January is the last day of February).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.rules.calendars import calendar_for
from app.rules.explain import Step, describe_period, local_moment
from app.rules.periods import Period, add_period, zone

DSAR_RECORDS_SOURCE = (
    "CCPA regulations, 11 CCR §7101(a): records of consumer requests and of how the business "
    "responded are kept for at least 24 months"
)
DEFAULTS: dict[str, Any] = {"dsar_kept_for": {"value": 24, "unit": "months"}}


def settings(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The policy's `records` block with every default filled in (a version published before
    the block existed reads as all defaults)."""
    declared = resolved.get("records") or {}
    return {k: declared.get(k) if declared.get(k) is not None else v for k, v in DEFAULTS.items()}


def _kept(resolved: Mapping[str, Any], since: datetime) -> tuple[datetime, str, str, bool]:
    """`records.dsar_kept_for` after `since`: the instant, the period ('24 months'), the
    moments ('<since> → deleted at <until>', local) and whether the policy declared it."""
    declared = "dsar_kept_for" in ((resolved.get("records") or {}).get("overrides") or ())
    period = Period.of(settings(resolved)["dsar_kept_for"])
    assert period is not None
    jur = resolved["jurisdiction"]
    tz_name = str(jur["timezone"])
    tz = zone(tz_name)
    calendar = calendar_for(jur["calendar"]) if period.unit == "business_days" else None
    until = add_period(since, period, tz, calendar)
    moments = f"{local_moment(since, tz, tz_name)} → deleted at {local_moment(until, tz, tz_name)}"
    return until, describe_period(period), moments, declared


def dsar_delete_after(resolved: Mapping[str, Any], closed_at: datetime) -> tuple[datetime, Step]:
    """When a request closed at `closed_at` is deleted, with the step that says why."""
    until, period, moments, declared = _kept(resolved, closed_at)
    rule, source = (
        ("policy promise", None) if declared else ("11 CCR §7101", DSAR_RECORDS_SOURCE)
    )
    step = Step(
        rule,
        source,
        f"The request's record is kept for {period} after it closed, {moments}; its audit "
        "entries stay",
    )
    return until, step


def retention_delete_after(
    resolved: Mapping[str, Any], finished_at: datetime
) -> tuple[datetime, Step]:
    """When the service's record of a retention task (a sweep, a subject expiry's erasure)
    that finished at `finished_at` is deleted, with the step that says why.

    A finished sweep or retention erasure is the evidence that the service kept the policy's
    retention promise. No law read for this service names a period for that evidence (GDPR
    Art. 5(2) asks a controller to be able to demonstrate compliance, without a number), so it
    is kept as long as the evidence of how requests were answered: `records.dsar_kept_for`
    (24 months by default, after 11 CCR §7101), counted from when the task finished."""
    until, period, moments, declared = _kept(resolved, finished_at)
    step = Step(
        "policy promise" if declared else "records.dsar_kept_for",
        None,
        f"The task's record is kept for {period} after it finished (as long as the records "
        f"of requests), {moments}; its audit entries stay",
    )
    return until, step
