"""Calendar arithmetic behind the reports (DESIGN §15): pure, no I/O.

- a calendar year in a policy's timezone, as UTC instants (the CCPA metrics count a request in
  the year of its receipt where the business is);
- the UTC days, ISO weeks (Monday first) and calendar months that cut a range into the
  consent report's intervals;
- the longest range a report accepts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dateutil.relativedelta import relativedelta

from app.rules.periods import zone

MAX_RANGE_YEARS = 5


def year_bounds(year: int, timezone: str) -> tuple[datetime, datetime]:
    """[1 January 00:00, next 1 January 00:00) local time, in UTC."""
    tz = zone(timezone)
    start = datetime(year, 1, 1, tzinfo=tz)
    end = datetime(year + 1, 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def too_long(start: datetime, end: datetime, years: int = MAX_RANGE_YEARS) -> bool:
    """More than `years` calendar years from start to end (month-aware: 29 February + 5 years
    is 28 February)."""
    limit: datetime = start + relativedelta(years=years)
    return end > limit


def year_before(instant: datetime) -> datetime:
    """One calendar year earlier (29 February → 28 February)."""
    before: datetime = instant - relativedelta(years=1)
    return before


def bucket_start(day: date, interval: str) -> date:
    """The first day of the UTC day / ISO week (Monday) / month that `day` falls in."""
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown interval {interval!r}")


def _next(day: date, interval: str) -> date:
    if interval == "day":
        return day + timedelta(days=1)
    if interval == "week":
        return day + timedelta(days=7)
    following: date = day + relativedelta(months=1)
    return following


def intervals(
    start: datetime, end: datetime, interval: str
) -> list[tuple[date, datetime, datetime]]:
    """Every interval meeting [start, end): (its natural first day, its start cut at `start`,
    its end cut at `end`), in order. Intervals are UTC."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    out: list[tuple[date, datetime, datetime]] = []
    day = bucket_start(start.date(), interval)
    while True:
        first = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if first >= end:
            break
        following = _next(day, interval)
        nxt = datetime(following.year, following.month, following.day, tzinfo=UTC)
        out.append((day, max(first, start), min(nxt, end)))
        day = following
    return out
