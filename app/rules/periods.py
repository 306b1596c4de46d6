"""Adding a period to a date or an instant, the way the law counts.

* `hours` are clock hours on the UTC timeline: 72 hours is 72 hours whatever DST does to the
  local clock (GDPR Art. 33(1); Reg. 1182/71 Art. 3(4) rolls only periods "expressed
  otherwise than in hours").
* `days`, `weeks`, `months`, `years` count from the local date of the event, that day
  excluded (Reg. 1182/71 Art. 3(1)): 30 days from 1 January end on 31 January. Months and
  years end on the corresponding day, or on the last day of the month when there is none
  (Reg. 1182/71 Art. 3(2)(c); ICO: 31 January → 28 February, 29 in a leap year).
  `python-dateutil`'s `relativedelta` does exactly this clamping.
* `business_days` skip the calendar's weekend days and public holidays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from app.rules.calendars import WorkCalendar

UNITS = ("hours", "days", "business_days", "weeks", "months", "years")
DAY_BASED = frozenset({"days", "business_days", "weeks", "months", "years"})
_LAST_MICRO = time(23, 59, 59, 999_999)


@dataclass(frozen=True, slots=True)
class Period:
    value: int
    unit: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit '{self.unit}'")
        if self.value < 0:
            raise ValueError("a period cannot be negative")

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Period | None:
        if data is None:
            return None
        return cls(int(data["value"]), str(data["unit"]))

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit}

    def plus(self, other: Period) -> Period:
        if other.unit != self.unit:
            raise ValueError("periods of different units do not add")
        return Period(self.value + other.value, self.unit)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class DateCount:
    """The result of counting a day-based period on dates: `end` and, for the explanation,
    whether the corresponding day was missing (month clamp) and which holidays were skipped."""

    end: date
    clamped: bool
    skipped: tuple[tuple[date, str], ...]


def add_to_date(start: date, period: Period, calendar: WorkCalendar | None = None) -> DateCount:
    """`period` after `start`, the start day excluded (so 0 of any unit is `start` itself)."""
    unit, n = period.unit, period.value
    if unit == "days":
        return DateCount(start + timedelta(days=n), False, ())
    if unit == "weeks":
        return DateCount(start + timedelta(weeks=n), False, ())
    if unit in ("months", "years"):
        delta = relativedelta(months=n) if unit == "months" else relativedelta(years=n)
        end: date = start + delta
        return DateCount(end, end.day != start.day, ())
    if unit == "business_days":
        if calendar is None:
            raise ValueError("business days need a calendar")
        end, skipped = calendar.add_business_days(start, n)
        return DateCount(end, False, tuple(skipped))
    raise ValueError(f"'{unit}' is not counted in days")


def end_of_local_day(d: date, tz: tzinfo) -> datetime:
    """The last moment of local date `d`, in UTC: a deadline in days ends with its day."""
    return datetime.combine(d, _LAST_MICRO, tzinfo=tz).astimezone(UTC)


def local_wall_time(d: date, wall: time, tz: tzinfo) -> datetime:
    """Local date + wall-clock time → UTC instant. A wall time that does not exist (the spring
    DST gap) is read with the offset before the change, which lands just after the gap."""
    return datetime.combine(d, wall, tzinfo=tz).astimezone(UTC)


def add_period(
    instant: datetime,
    period: Period,
    tz: str | tzinfo,
    calendar: WorkCalendar | None = None,
) -> datetime:
    """`instant` + `period`: hours on the UTC timeline; anything longer on local dates, keeping
    the local wall-clock time (13 months of cookie consent granted at 10:15 in Paris lapse at
    10:15 in Paris, DST or not). No roll-forward: this is when something lapses, not a deadline
    to act by. Returns a UTC instant."""
    if period.unit == "hours":
        # convert first: aware + timedelta on a ZoneInfo datetime is wall-clock arithmetic
        # (12:00 CET + 24 h across the spring change would give 12:00 CEST, 23 real hours)
        return instant.astimezone(UTC) + timedelta(hours=period.value)
    zone_ = zone(tz) if isinstance(tz, str) else tz
    # through UTC: `astimezone` to the zone the value already carries returns it unchanged, and
    # a wall time inside a spring gap (00:00 in Casablanca on 2008-06-01) is not the local
    # reading of its instant (01:00 there). Found by the retention property test.
    local = instant.astimezone(UTC).astimezone(zone_)
    end = add_to_date(local.date(), period, calendar).end
    # the same wall-clock time, on the same side of a repeated (autumn) hour as the start
    return local_wall_time(end, local.time().replace(tzinfo=None), zone_)
