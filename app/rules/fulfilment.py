"""Fulfilment clocks: when a system's task is due, and the policy's fulfilment settings.

A task must be answered early enough for the controller to check the answers and reply
within the legal period: by the ticket's due instant less the policy's `fulfilment.buffer`
(default 2 business days), or by the clock start plus the system's own `task_within` (its
service level), whichever is earlier. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dateutil.relativedelta import relativedelta

from app.rules.calendars import WorkCalendar, calendar_for
from app.rules.explain import Step, describe_period, local_moment, weekday
from app.rules.periods import Period, add_to_date, end_of_local_day, zone

DEFAULTS: dict[str, Any] = {
    "buffer": {"value": 2, "unit": "business_days"},
    "max_attempts": 5,
    "auto_complete": False,
    "keep_results_for": {"value": 30, "unit": "days"},
}
_RULE = "fulfilment buffer"
_SYSTEM_RULE = "system service level"


def settings(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The policy's `fulfilment` block with every default filled in (a version published
    before the block existed reads as all defaults)."""
    declared = resolved.get("fulfilment") or {}
    return {k: declared.get(k) if declared.get(k) is not None else v for k, v in DEFAULTS.items()}


def _day(d: date) -> str:
    return f"{d.isoformat()} ({weekday(d)})"


def subtract_from_date(end: date, period: Period, calendar: WorkCalendar) -> date:
    """`period` before `end` (the inverse count of `add_to_date`; business days skip the
    calendar's weekend days and public holidays)."""
    unit, n = period.unit, period.value
    if unit == "days":
        return end - timedelta(days=n)
    if unit == "weeks":
        return end - timedelta(weeks=n)
    if unit == "months":
        result: date = end - relativedelta(months=n)
        return result
    if unit == "years":
        result = end - relativedelta(years=n)
        return result
    if unit == "business_days":
        d, remaining = end, n
        while remaining > 0:
            d -= timedelta(days=1)
            if calendar.is_business_day(d):
                remaining -= 1
        return d
    raise ValueError(f"'{unit}' is not counted in days")


@dataclass(frozen=True, slots=True)
class TaskDue:
    due_at: datetime | None
    explanation: list[Step]

    def explanation_dicts(self) -> list[dict[str, str | None]]:
        return [s.to_dict() for s in self.explanation]


def task_due(
    resolved: Mapping[str, Any],
    *,
    ticket_due_at: datetime | None,
    clock_started_at: datetime,
    task_within: Mapping[str, Any] | None,
) -> TaskDue:
    """The earlier of (ticket due - buffer) and (clock start + task_within), explained.
    Neither → no fixed due instant (a request with no legal period and a system with none)."""
    jur = resolved["jurisdiction"]
    tz_name = jur["timezone"]
    tz = zone(tz_name)
    calendar = calendar_for(jur["calendar"])
    conf = settings(resolved)
    buffer = Period.of(conf["buffer"])
    assert buffer is not None
    steps: list[Step] = []
    candidates: list[tuple[datetime, str]] = []

    if ticket_due_at is not None:
        if buffer.unit == "hours":
            by_buffer = ticket_due_at.astimezone(UTC) - timedelta(hours=buffer.value)
            detail = (
                f"the request is due {local_moment(ticket_due_at, tz, tz_name)}; less "
                f"{describe_period(buffer)} → {local_moment(by_buffer, tz, tz_name)}"
            )
        else:
            due_day = ticket_due_at.astimezone(tz).date()
            day = subtract_from_date(due_day, buffer, calendar)
            by_buffer = end_of_local_day(day, tz)
            detail = (
                f"the request is due {_day(due_day)}; {describe_period(buffer)} before it "
                f"→ {_day(day)}, ending {local_moment(by_buffer, tz, tz_name)}"
            )
        steps.append(Step(_RULE, None, detail + " (time for the controller to check answers)"))
        candidates.append((by_buffer, "buffer"))
    else:
        steps.append(Step(_RULE, None, "the request has no fixed due date: no buffer applies"))

    within = Period.of(task_within)
    if within is not None:
        if within.unit == "hours":
            by_system = clock_started_at.astimezone(UTC) + timedelta(hours=within.value)
            detail = (
                f"the system answers within {describe_period(within)} of the clock start "
                f"{local_moment(clock_started_at, tz, tz_name)} → "
                f"{local_moment(by_system, tz, tz_name)}"
            )
        else:
            start = clock_started_at.astimezone(tz).date()
            end = add_to_date(start, within, calendar).end
            by_system = end_of_local_day(end, tz)
            detail = (
                f"the system answers within {describe_period(within)} of the clock start "
                f"{_day(start)} → {_day(end)}, ending {local_moment(by_system, tz, tz_name)}"
            )
        steps.append(Step(_SYSTEM_RULE, None, detail))
        candidates.append((by_system, "system"))

    if not candidates:
        return TaskDue(None, steps)
    due_at, which = min(candidates, key=lambda c: c[0])
    if len(candidates) == 2:
        chosen = "the buffer" if which == "buffer" else "the system's service level"
        steps.append(
            Step("earlier of the two", None, f"{chosen} comes first: the task is due then")
        )
    return TaskDue(due_at, steps)


def purge_after(
    resolved: Mapping[str, Any], closed_at: datetime
) -> tuple[datetime, dict[str, Any]]:
    """When a closed ticket's task results (`data`) are deleted: closure + keep_results_for,
    on the policy's calendar. Returns the instant and the period applied."""
    conf = settings(resolved)
    keep = Period.of(conf["keep_results_for"])
    assert keep is not None
    if keep.unit == "hours":
        return closed_at.astimezone(UTC) + timedelta(hours=keep.value), keep.to_dict()
    jur = resolved["jurisdiction"]
    tz = zone(jur["timezone"])
    start = closed_at.astimezone(tz).date()
    end = add_to_date(start, keep, calendar_for(jur["calendar"])).end
    return end_of_local_day(end, tz), keep.to_dict()
