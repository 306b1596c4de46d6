"""How long the service keeps its own records of requests (DESIGN §14), and when a closed
request is deleted. Pure: no I/O, no clock.

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


def dsar_delete_after(resolved: Mapping[str, Any], closed_at: datetime) -> tuple[datetime, Step]:
    """When a request closed at `closed_at` is deleted, with the step that says why."""
    declared = "dsar_kept_for" in ((resolved.get("records") or {}).get("overrides") or ())
    period = Period.of(settings(resolved)["dsar_kept_for"])
    assert period is not None
    jur = resolved["jurisdiction"]
    tz_name = str(jur["timezone"])
    tz = zone(tz_name)
    calendar = calendar_for(jur["calendar"]) if period.unit == "business_days" else None
    until = add_period(closed_at, period, tz, calendar)
    rule, source = (
        ("policy promise", None) if declared else ("11 CCR §7101", DSAR_RECORDS_SOURCE)
    )
    step = Step(
        rule,
        source,
        f"The request's record is kept for {describe_period(period)} after it closed, "
        f"{local_moment(closed_at, tz, tz_name)} → deleted at "
        f"{local_moment(until, tz, tz_name)}; its audit entries stay",
    )
    return until, step
