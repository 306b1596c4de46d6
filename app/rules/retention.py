"""Retention expiry per record: category → trigger → period → what happens then.

A record's clock starts at its category's trigger: `collected` (the record's own
`collected_at`), or an event (`account_closed`, `contract_ended`, `last_activity` or any custom
name) looked up in the record's `events`. No event yet means the clock is not running — that is
a state, not an error. `keep_for: null` keeps the record indefinitely; `keep_for` 0 expires it
at the trigger itself. Expiry keeps the local wall-clock time and does not roll forward: it is
the end of the permission to keep, not a deadline to act by.

Explanations are shared: 10,000 records of one category in one state point at one text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from app.rules.calendars import WorkCalendar, calendar_for
from app.rules.explain import Step, describe_period
from app.rules.periods import Period, add_period, add_to_date, zone
from app.rules.policy import ResolvedPolicy

PROBLEM_BASE = "https://privacy-rights.example/problems/"


def _explanation(rule: Mapping[str, Any], state: str, tz_name: str) -> list[dict[str, Any]]:
    category, trigger, then = rule["category"], rule["starts_at"], rule["then"]
    keep = rule.get("keep_for")
    head = Step(
        "policy retention rule",
        None,
        f"Category '{category}': kept for {describe_period(keep) if keep else 'no fixed period'}"
        f" from '{trigger}', then {then}",
    )
    if state == "indefinite":
        tail = Step(
            "policy retention rule",
            None,
            "keep_for is null: the policy keeps these records indefinitely, so there is no expiry",
        )
    elif state == "not_started":
        tail = Step(
            "policy retention rule",
            None,
            f"The trigger event '{trigger}' has not happened for this record: the retention "
            "clock is not running yet, so there is no expiry",
        )
    elif keep and int(keep["value"]) == 0:
        tail = Step(
            "policy retention rule",
            None,
            f"keep_for is 0: the record expires at the '{trigger}' moment itself",
        )
    else:
        tail = Step(
            "period arithmetic",
            None,
            f"Expiry = the '{trigger}' moment + {describe_period(keep)}, keeping the local "
            f"wall-clock time in {tz_name}; months end on the corresponding day or the last "
            "day of a shorter month; no roll-forward (a retention limit is not a deadline "
            "to act by)",
        )
    return [head.to_dict(), tail.to_dict()]


def _unknown(category: str, known: Iterable[str]) -> dict[str, Any]:
    return {
        "category": category,
        "problem": {
            "type": PROBLEM_BASE + "retention_unknown_category",
            "title": "Unknown data category",
            "status": 422,
            "code": "retention_unknown_category",
            "detail": f"The policy defines no retention for this category; defined: "
            f"{', '.join(sorted(known)) or 'none'}",
        },
    }


# ---- fast path ------------------------------------------------------------------------------
# `add_period` converts every instant to local time, adds on local dates (dateutil month
# clamp) and converts back: ~6 µs a record. Most of that repeats. On a UTC day without a DST
# change the local date is just (instant + offset).date(), and every record of one category
# with the same local date and offset has the same shift from trigger to expiry — provided
# the offset is also constant all through the expiry's local day. So the shift is computed
# once per (category, local date, offset) by the same `add_to_date`, and any record whose UTC
# day or expiry day touches a DST change goes through `add_period` itself. Exactness is
# checked against `add_period` by tests/rules/test_properties.py.

_US = timedelta(microseconds=1)
_NOON = time(12)
_MISSING: Any = object()


class _Zone:
    """Per-call memo of a zone's offsets: one UTC day → its offset if constant, else None."""

    __slots__ = ("_ends", "days", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.days: dict[int, tuple[timedelta, int] | None] = {}
        self._ends: dict[date, timedelta | None] = {}

    def utc_day(self, ordinal: int) -> tuple[timedelta, int] | None:
        """(offset, key part) for UTC day `ordinal` if no DST change falls in it."""
        try:
            return self.days[ordinal]
        except KeyError:
            pass
        first = datetime.combine(date.fromordinal(ordinal), time(), tzinfo=UTC)
        a = first.astimezone(self.tz).utcoffset()
        b = (first + timedelta(days=1) - _US).astimezone(self.tz).utcoffset()
        # the key part: offset minutes biased to 0..4095 so `key // 4096` is the local ordinal
        info = (a, int(a.total_seconds()) // 60 + 2048) if a is not None and a == b else None
        self.days[ordinal] = info
        return info

    def local_day_offset(self, d: date) -> timedelta | None:
        """The offset all through local date `d`, or None if a DST change touches it."""
        if d in self._ends:
            return self._ends[d]
        offset = datetime.combine(d, _NOON, tzinfo=self.tz).utcoffset()
        ordinal = d.toordinal()
        for o in (ordinal - 1, ordinal, ordinal + 1):  # local day d lies within these UTC days
            info = self.utc_day(o)
            if info is None or info[0] != offset:
                offset = None
                break
        self._ends[d] = offset
        return offset


def evaluate_retention(
    resolved: ResolvedPolicy, records: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """`records`: mappings with `category`, `collected_at` (aware datetime) and optional
    `events` (name → aware datetime). Returns `{"results": [...], "explanations": {...}}` with
    one result per record, in order."""
    jur = resolved["jurisdiction"]
    tz_name = jur["timezone"]
    tz = zone(tz_name)
    calendar = calendar_for(jur["calendar"])
    rules = {r["category"]: r for r in resolved.get("retention") or []}
    zone_memo = _Zone(tz)
    # per category: (period, trigger or None for `collected`, then, constant shift or None,
    # memo of shifts by local day, explanation refs by state)
    plans: dict[str, tuple[Any, ...]] = {}
    for category, rule in rules.items():
        period = Period.of(rule.get("keep_for"))
        constant: timedelta | None = None
        if period is not None and period.unit == "hours":
            constant = timedelta(hours=period.value)
        elif period is not None and period.value == 0:
            constant = timedelta(0)
        trigger = rule["starts_at"]
        plans[category] = (
            period,
            None if trigger == "collected" else trigger,
            rule["then"],
            constant,
            {},
            {s: f"{category}:{s}" for s in ("running", "not_started", "indefinite")},
        )
    explanations: dict[str, list[dict[str, Any]]] = {}
    results: list[dict[str, Any]] = []
    append = results.append
    utc_day = zone_memo.utc_day
    utc_days = zone_memo.days
    for record in records:
        category = record["category"]
        plan = plans.get(category)
        if plan is None:
            append(_unknown(category, rules))
            continue
        period, trigger, then, constant, memo, refs = plan
        expires_at: datetime | None = None
        if period is None:
            state = "indefinite"
        else:
            at = (
                record["collected_at"]
                if trigger is None
                else (record.get("events") or {}).get(trigger)
            )
            if at is None:
                state = "not_started"
            else:
                state = "running"
                at_utc = at if at.tzinfo is UTC else at.astimezone(UTC)
                delta = constant
                if delta is None:
                    ordinal = at_utc.toordinal()
                    info = utc_days.get(ordinal, _MISSING)
                    if info is _MISSING:
                        info = utc_day(ordinal)
                    if info is not None:
                        key = (at_utc + info[0]).toordinal() * 4096 + info[1]
                        if key in memo:
                            delta = memo[key]
                        else:
                            delta = memo[key] = _shift(zone_memo, key, info[0], period, calendar)
                expires_at = (
                    at_utc + delta if delta is not None else add_period(at, period, tz, calendar)
                )
        ref = refs[state]
        if ref not in explanations:
            explanations[ref] = _explanation(rules[category], state, tz_name)
        append(
            {
                "category": category,
                "state": state,
                "expires_at": expires_at,
                "then": then,
                "explanation_ref": ref,
            }
        )
    return {"results": results, "explanations": explanations}


def _shift(
    zone_memo: _Zone, key: int, offset: timedelta, period: Period, calendar: WorkCalendar
) -> timedelta | None:
    """Trigger → expiry for every instant of local day `key // 4096` at `offset`: the same
    wall-clock time `period` later (add_to_date), when the expiry day has one offset."""
    start = date.fromordinal(key // 4096)
    end = add_to_date(start, period, calendar).end
    end_offset = zone_memo.local_day_offset(end)
    if end_offset is None:
        return None
    return timedelta(days=(end - start).days) + (offset - end_offset)
