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

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from dateutil.relativedelta import relativedelta

from app.rules.calendars import WorkCalendar, calendar_for
from app.rules.explain import Step, describe_period
from app.rules.periods import Period, add_period, add_to_date, local_wall_time, zone
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


# ---- acting on retention (DESIGN §14) ---------------------------------------------------------

SWEEP_TRIGGERS = frozenset({"collected", "last_activity"})


def sweepable(rule: Mapping[str, Any]) -> bool:
    """A rule the daily sweeps apply: triggered per record (`collected`, `last_activity`) and
    with a fixed period (`keep_for: null` keeps records indefinitely: nothing to sweep)."""
    return rule["starts_at"] in SWEEP_TRIGGERS and rule.get("keep_for") is not None


def subject_events(resolved: Mapping[str, Any]) -> frozenset[str]:
    """The per-subject trigger events the policy's rules use (`account_closed`,
    `contract_ended`, custom names): what `POST …/retention-events` accepts."""
    return frozenset(
        str(r["starts_at"])
        for r in resolved.get("retention") or []
        if r["starts_at"] not in SWEEP_TRIGGERS
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SweepCutoff:
    """`cutoff`: every record whose trigger instant is before it has passed its retention at
    `now`; `day`: the sweep's local date in the policy's timezone."""

    cutoff: datetime
    day: date
    explanation: list[dict[str, Any]]


def local_day(resolved: Mapping[str, Any], now: datetime) -> date:
    return now.astimezone(zone(resolved["jurisdiction"]["timezone"])).date()


def sweep_cutoff(
    resolved: Mapping[str, Any], rule: Mapping[str, Any], now: datetime
) -> SweepCutoff:
    """now minus `keep_for`, the way `add_period` counts forward, so that a record before the
    cutoff is exactly a record whose expiry (`evaluate_retention`) has passed — or, where the
    month clamp maps several trigger dates onto one expiry date, one that passed at most a
    day ago; never one still running.

    Hours: the UTC timeline. Day-based units: on local dates in the policy's timezone, keeping
    the local wall-clock time: d* is the first local date whose expiry date is not before
    today; the cutoff is today's wall-clock time on d* when d*'s expiry is today, else the
    start of d* (every earlier date has expired whole)."""
    tz_name = str(resolved["jurisdiction"]["timezone"])
    tz = zone(tz_name)
    calendar = calendar_for(resolved["jurisdiction"]["calendar"])
    period = Period.of(rule["keep_for"])
    if period is None:
        raise ValueError("a rule with keep_for null has no sweep")
    category, trigger = rule["category"], rule["starts_at"]
    local_now = now.astimezone(UTC).astimezone(tz)
    today = local_now.date()
    head = Step(
        "policy retention rule",
        None,
        f"Category '{category}': kept for {describe_period(period)} from '{trigger}', then "
        f"{rule['then']}; sweep of {today.isoformat()} ({tz_name})",
    )
    steps = [head]
    if period.unit == "hours":
        cutoff = now.astimezone(UTC) - timedelta(hours=period.value)
        steps.append(
            Step(
                "period arithmetic",
                None,
                f"{describe_period(period)} are clock hours on the UTC timeline: cutoff = "
                f"{now.astimezone(UTC).isoformat()} minus {period.value} h = {cutoff.isoformat()}",
            )
        )
    else:

        def expiry_date(d: date) -> date:
            return add_to_date(d, period, calendar).end

        guess = _back(today, period)
        first = guess
        while expiry_date(first - timedelta(days=1)) >= today:
            first -= timedelta(days=1)
        while expiry_date(first) < today:
            first += timedelta(days=1)
        end = expiry_date(first)
        if end == today:
            wall = local_now.time().replace(tzinfo=None)
            cutoff = local_wall_time(first, wall, tz)
            how = (
                f"a record of {first.isoformat()} expires on {end.isoformat()} at its own "
                f"local time: those before {wall.isoformat(timespec='seconds')} have expired, "
                "every earlier date has expired whole"
            )
        else:
            cutoff = local_wall_time(first, time(0), tz)
            last = first - timedelta(days=1)
            how = (
                f"no record's expiry falls on {today.isoformat()} (the count back lands on "
                f"{guess.isoformat()}, a shorter month): a record of {last.isoformat()} expired on "
                f"{expiry_date(last).isoformat()}, one of {first.isoformat()} expires on "
                f"{end.isoformat()}, so every record before {first.isoformat()} 00:00 has expired"
            )
        steps.append(
            Step(
                "period arithmetic",
                None,
                f"{today.isoformat()} minus {describe_period(period)} on local dates in {tz_name} "
                f"(months end on the corresponding day or the last day of a shorter month): "
                f"{how}; cutoff = {cutoff.astimezone(tz).isoformat()} = {cutoff.isoformat()}",
            )
        )
    steps.append(
        Step(
            "retention sweep",
            None,
            f"apply '{rule['then']}' to every '{category}' record whose '{trigger}' instant is "
            "before the cutoff, except the held subjects",
        )
    )
    return SweepCutoff(cutoff=cutoff, day=today, explanation=[s.to_dict() for s in steps])


def _back(today: date, period: Period) -> date:
    """A first guess of today minus period (refined by walking dates)."""
    if period.unit in ("months", "years"):
        back: date = today - relativedelta(**{period.unit: period.value})
        return back
    if period.unit == "weeks":
        return today - timedelta(weeks=period.value)
    if period.unit == "business_days":
        return today - timedelta(days=period.value * 7 // 5)
    return today - timedelta(days=period.value)


@dataclasses.dataclass(frozen=True, slots=True)
class SubjectExpiry:
    category: str
    state: str  # running | expired | not_started | indefinite
    expires_at: datetime | None
    then: str
    explanation: list[dict[str, Any]]


def subject_expiry(
    resolved: Mapping[str, Any],
    rule: Mapping[str, Any],
    occurred_at: datetime | None,
    now: datetime,
) -> SubjectExpiry:
    """A per-subject trigger's rule for one subject: the expiry of `occurred_at` (the event's
    instant; None: not recorded), and whether it has passed at `now`."""
    tz_name = str(resolved["jurisdiction"]["timezone"])
    category, then = str(rule["category"]), str(rule["then"])
    period = Period.of(rule.get("keep_for"))
    if period is None:
        return SubjectExpiry(
            category, "indefinite", None, then, _explanation(rule, "indefinite", tz_name)
        )
    if occurred_at is None:
        return SubjectExpiry(
            category, "not_started", None, then, _explanation(rule, "not_started", tz_name)
        )
    calendar = calendar_for(resolved["jurisdiction"]["calendar"])
    expires_at = add_period(occurred_at, period, zone(tz_name), calendar)
    state = "expired" if expires_at <= now else "running"
    steps = _explanation(rule, "running", tz_name)
    steps.append(
        Step(
            "retention expiry",
            None,
            f"'{rule['starts_at']}' on {occurred_at.astimezone(UTC).isoformat()} + "
            f"{describe_period(period)} → {expires_at.isoformat()}"
            + (" (passed)" if state == "expired" else ""),
        ).to_dict()
    )
    return SubjectExpiry(category, state, expires_at, then, steps)
