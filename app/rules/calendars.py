"""Working-day calendars: public holidays from the `holidays` package, shaped by the regime.

A calendar answers two different questions, and regimes answer them differently:

* is this a *business day*? (counting `business_days`): not a weekend day named in
  `non_business_days` and not a holiday;
* does a deadline that *ends* on this day move to the next day? (`roll_forward_on`): GDPR
  rolls Saturdays, Sundays and holidays (Reg. 1182/71 Art. 3(4)); the Canadian
  Interpretation Acts roll Sundays and holidays but not Saturdays; CCPA does not roll.

Which holidays count is data too: the country and subdivision, the package's holiday
categories, whether substitute ("observed") days count, named extra days the package does not
list in the chosen category (Easter Monday for the federal Canadian list), days it lists that
the statute does not (Boxing Day, for the same list), and per-policy
`add`/`remove` dates (Morocco's moon-sighted holidays move by a day).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import holidays
from dateutil.easter import easter

WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# Named days a regime may add to the package's list, computed per year.
def _easter_monday(year: int) -> date:
    sunday: date = easter(year)
    return sunday + timedelta(days=1)


def _good_friday(year: int) -> date:
    sunday: date = easter(year)
    return sunday - timedelta(days=2)


def _july_2_if_canada_day_is_sunday(year: int) -> date | None:
    # Québec I-16 s.61(23)(f): "le 1er juillet … ou le 2 juillet si le 1er tombe un dimanche"
    # — the only substitute day in that list (the package's `observed` also moves Christmas
    # and New Year, which the statute does not).
    july_1 = date(year, 7, 1)
    return july_1 + timedelta(days=1) if july_1.weekday() == 6 else None


def _december_26(year: int) -> date:
    # BC Interpretation Act s.29(c): "December 26" (not "Boxing Day", with no substitute)
    return date(year, 12, 26)


def _nth_monday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(7 - first.weekday()) % 7 + 7 * (n - 1))


def _family_day_ontario(year: int) -> date | None:
    # Ontario Legislation Act, 2006 s.88: Family Day, the third Monday of February (from 2008)
    return _nth_monday(year, 2, 3) if year >= 2008 else None


def _family_day_bc(year: int) -> date | None:
    # BC Family Day, set by the Legislature (BC Interpretation Act s.29(d)): second Monday
    # of February 2013-2018, third Monday from 2019
    if year < 2013:
        return None
    return _nth_monday(year, 2, 2 if year <= 2018 else 3)


def _british_columbia_day(year: int) -> date:
    # BC Interpretation Act s.29(b): British Columbia Day, the first Monday in August
    return _nth_monday(year, 8, 1)


def _june_24(year: int) -> date:
    # Québec I-16 s.61(23)(e): "le 24 juin, jour de la fête nationale"
    return date(year, 6, 24)


def _ontario_new_year_substitute(year: int) -> date | None:
    # Ontario Legislation Act s.88(3): New Year's Day on a Sunday → the Monday is a holiday too
    return date(year, 1, 2) if date(year, 1, 1).weekday() == 6 else None


def _ontario_christmas_substitute(year: int) -> date | None:
    # Ontario Legislation Act s.88(5): Christmas on a Saturday → the following Monday, on a
    # Sunday → the following Tuesday (Boxing Day being the Monday): 27 December either way
    return date(year, 12, 27) if date(year, 12, 25).weekday() in (5, 6) else None


EXTRA_HOLIDAYS: dict[str, tuple[str, Callable[[int], date | None]]] = {
    "easter_monday": ("Easter Monday", _easter_monday),
    "december_26": ("26 December", _december_26),
    "good_friday": ("Good Friday", _good_friday),
    "july_2_if_canada_day_is_sunday": ("Canada Day (2 July)", _july_2_if_canada_day_is_sunday),
    # provincial non-juridical days (federal Interpretation Act s.35(1)(a)), per province
    "boxing_day": ("Boxing Day", _december_26),
    "family_day_ontario": ("Family Day", _family_day_ontario),
    "family_day_bc": ("Family Day", _family_day_bc),
    "british_columbia_day": ("British Columbia Day", _british_columbia_day),
    "june_24": ("Fête nationale (24 June)", _june_24),
    "ontario_new_year_substitute": (
        "New Year's Day (Monday, Legislation Act s.88(3))",
        _ontario_new_year_substitute,
    ),
    "ontario_christmas_substitute": (
        "Christmas Day (substitute, Legislation Act s.88(5))",
        _ontario_christmas_substitute,
    ),
}


def _weekday_numbers(names: tuple[str, ...]) -> frozenset[int]:
    return frozenset(WEEKDAY_NAMES.index(n) for n in names if n in WEEKDAY_NAMES)


@dataclass(eq=False)
class WorkCalendar:
    """One jurisdiction's working days. Build it with `calendar_for` (cached)."""

    country: str
    subdivision: str | None
    categories: tuple[str, ...]
    observed: bool
    extra_holidays: tuple[str, ...]
    excluded_holidays: tuple[str, ...]
    non_business_days: tuple[str, ...]
    roll_forward_on: tuple[str, ...]
    add: frozenset[date]
    remove: frozenset[date]
    source: str
    _weekend: frozenset[int] = field(init=False)
    _roll_weekdays: frozenset[int] = field(init=False)
    _roll_holidays: bool = field(init=False)
    _years: dict[int, dict[date, str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._weekend = _weekday_numbers(self.non_business_days)
        self._roll_weekdays = _weekday_numbers(self.roll_forward_on)
        self._roll_holidays = "holiday" in self.roll_forward_on

    def _year(self, year: int) -> dict[date, str]:
        days = self._years.get(year)
        if days is None:
            table = holidays.country_holidays(
                self.country,
                subdiv=self.subdivision,
                years=year,
                categories=self.categories,
                observed=self.observed,
            )
            days = {
                d: str(name) for d, name in table.items() if str(name) not in self.excluded_holidays
            }
            for extra in self.extra_holidays:
                name, rule = EXTRA_HOLIDAYS[extra]
                day = rule(year)
                if day is not None:
                    days.setdefault(day, name)
            for d in self.add:
                if d.year == year:
                    days.setdefault(d, "holiday added by the policy")
            for d in self.remove:
                days.pop(d, None)
            self._years[year] = days
        return days

    def holiday_name(self, d: date) -> str | None:
        return self._year(d.year).get(d)

    def is_holiday(self, d: date) -> bool:
        return d in self._year(d.year)

    def is_business_day(self, d: date) -> bool:
        return d.weekday() not in self._weekend and not self.is_holiday(d)

    def why_not_working(self, d: date) -> str | None:
        """Why `d` moves a deadline ending on it ('a Sunday', 'Christmas Day'), else None."""
        name = self.holiday_name(d) if self._roll_holidays else None
        if name is not None:
            return f"a holiday ({name})"
        if d.weekday() in self._roll_weekdays:
            return f"a {WEEKDAY_NAMES[d.weekday()].capitalize()}"
        return None

    def roll_words(self) -> str:
        """The regime's roll rule in words, the same sentence in every explanation."""
        if not self.roll_forward_on:
            return (
                "a deadline stays on the day it falls, even a weekend day or a holiday "
                "(business days, when a period is counted in them, skip "
                f"{_names(self._weekend)} and holidays)"
            )
        kinds = [f"a {WEEKDAY_NAMES[n].capitalize()}" for n in sorted(self._roll_weekdays)]
        if self._roll_holidays:
            kinds.append("a holiday")
        listed = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
        return f"a deadline that ends on {listed} moves to the next day that is none of these"

    def weekend_note(self, d: date) -> str | None:
        """For a day skipped when counting business days that does not move a deadline (a
        Saturday under the Canadian Interpretation Acts): why both are true."""
        if d.weekday() in self._weekend and d.weekday() not in self._roll_weekdays:
            day = WEEKDAY_NAMES[d.weekday()].capitalize()
            return (
                f"{day}s are not counted as business days, but they are not holidays under "
                "this rule, so a deadline may end on one"
            )
        return None

    def roll_forward(self, d: date) -> date:
        """The first day from `d` on that does not move a deadline."""
        while self.why_not_working(d) is not None:
            d += timedelta(days=1)
        return d

    def add_business_days(self, start: date, n: int) -> tuple[date, list[tuple[date, str]]]:
        """`n` business days after `start` (start excluded; 0 → start itself), and the
        holidays skipped on the way (weekends are not listed)."""
        d = start
        skipped: list[tuple[date, str]] = []
        remaining = n
        while remaining > 0:
            d += timedelta(days=1)
            if d.weekday() in self._weekend:
                continue
            name = self.holiday_name(d)
            if name is not None:
                skipped.append((d, name))
                continue
            remaining -= 1
        return d, skipped


def _names(days: frozenset[int]) -> str:
    names = [f"{WEEKDAY_NAMES[n].capitalize()}s" for n in sorted(days)]
    if not names:
        return "no weekday"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _key(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        spec["country"],
        spec.get("subdivision"),
        tuple(spec.get("categories") or ("public",)),
        bool(spec.get("observed", True)),
        tuple(spec.get("extra_holidays") or ()),
        tuple(spec.get("excluded_holidays") or ()),
        tuple(spec.get("non_business_days") or ("saturday", "sunday")),
        tuple(spec.get("roll_forward_on") or ()),
        frozenset(_as_date(d) for d in spec.get("add") or ()),
        frozenset(_as_date(d) for d in spec.get("remove") or ()),
        str(spec.get("source") or ""),
    )


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


@lru_cache(maxsize=256)
def _calendar(key: tuple[Any, ...]) -> WorkCalendar:
    return WorkCalendar(*key)


def calendar_for(spec: Mapping[str, Any]) -> WorkCalendar:
    """The (cached) calendar for a resolved `jurisdiction.calendar` mapping."""
    return _calendar(_key(spec))


def supported_categories(country: str) -> tuple[str, ...]:
    return tuple(holidays.country_holidays(country).supported_categories)


def check_country(country: str, subdivision: str | None) -> None:
    """Raise ValueError when the holiday package cannot give a calendar for this place."""
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError as exc:
        if subdivision is not None and "subdivision" in str(exc):
            supported = holidays.list_supported_countries().get(country, [])
            raise ValueError(
                f"unknown subdivision '{subdivision}' for {country}; known: {', '.join(supported)}"
            ) from None
        raise ValueError(f"no public-holiday calendar for country '{country}'") from None
