"""Working-day calendars and period arithmetic, checked against hand-typed statutory lists.

The holiday lists below are typed from the statutes RULES.md §4 cites, not read from the
`holidays` package, so a package or preset change that breaks a statute shows up here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.rules import regimes
from app.rules.calendars import WorkCalendar, calendar_for
from app.rules.periods import Period, add_period, add_to_date, end_of_local_day
from tests.rules.helpers import body, resolved

PARIS = ZoneInfo("Europe/Paris")


def cal(regime: str, **extra: Any) -> WorkCalendar:
    return calendar_for(resolved(regime, **extra)["jurisdiction"]["calendar"])


def cal_in(regime: str, subdivision: str | None) -> WorkCalendar:
    """The regime's calendar for a policy in `subdivision` (None: no province given)."""
    declared = body(regime)
    declared["jurisdiction"]["subdivision"] = subdivision
    return calendar_for(regimes.resolve(declared)["jurisdiction"]["calendar"])


def holidays_in(calendar: WorkCalendar, year: int) -> set[date]:
    start = date(year, 1, 1)
    days = (start + timedelta(days=i) for i in range(366))
    return {d for d in days if d.year == year and calendar.is_holiday(d)}


# Code du travail L3133-1, 2026 (Easter 5 April 2026).
FR_2026 = {
    date(2026, 1, 1),
    date(2026, 4, 6),
    date(2026, 5, 1),
    date(2026, 5, 8),
    date(2026, 5, 14),
    date(2026, 5, 25),
    date(2026, 7, 14),
    date(2026, 8, 15),
    date(2026, 11, 1),
    date(2026, 11, 11),
    date(2026, 12, 25),
}
# Loi d'interprétation (CQLR c. I-16) s.61(23), 2027 (Sundays aside): 1 Jan, Good Friday,
# Easter Monday, Patriots' Day (Monday before 25 May), 24 June, 1 July, Labour Day,
# Thanksgiving (2nd Monday of October), 25 December. No substitute days in 2027.
QC_2027 = {
    date(2027, 1, 1),
    date(2027, 3, 26),
    date(2027, 3, 29),
    date(2027, 5, 24),
    date(2027, 6, 24),
    date(2027, 7, 1),
    date(2027, 9, 6),
    date(2027, 10, 11),
    date(2027, 12, 25),
}
# Interpretation Act (R.S.C. 1985 c. I-21) s.35(1) "holiday", 2026 (Sundays aside): New Year's
# Day, Good Friday, Easter Monday, Victoria Day, Canada Day, Labour Day, the National Day for
# Truth and Reconciliation (30 Sep, added by S.C. 2021 c. 11), Thanksgiving (proclaimed),
# Remembrance Day, Christmas Day. Not Boxing Day (only via a province's law, s.35(1)(a)).
FEDERAL_CA_2026 = {
    date(2026, 1, 1),
    date(2026, 4, 3),
    date(2026, 4, 6),
    date(2026, 5, 18),
    date(2026, 7, 1),
    date(2026, 9, 7),
    date(2026, 9, 30),
    date(2026, 10, 12),
    date(2026, 11, 11),
    date(2026, 12, 25),
}
# BC Interpretation Act (RSBC 1996 c. 238) s.29 "holiday", 2026 (Sundays aside): (a) Christmas
# Day, Good Friday, Easter Monday; (b) Canada Day, Victoria Day, British Columbia Day, Labour
# Day, Remembrance Day, New Year's Day; (c) December 26; (d) days set or proclaimed as public
# holidays or of thanksgiving: Family Day, NDTR, Thanksgiving. No substitute days.
BC_2026 = {
    date(2026, 1, 1),
    date(2026, 2, 16),
    date(2026, 4, 3),
    date(2026, 4, 6),
    date(2026, 5, 18),
    date(2026, 7, 1),
    date(2026, 8, 3),
    date(2026, 9, 7),
    date(2026, 9, 30),
    date(2026, 10, 12),
    date(2026, 11, 11),
    date(2026, 12, 25),
    date(2026, 12, 26),
}
# gov.uk bank holidays, England and Wales, 2027 (substitute days 27 and 28 December).
ENG_2027 = {
    date(2027, 1, 1),
    date(2027, 3, 26),
    date(2027, 3, 29),
    date(2027, 5, 3),
    date(2027, 5, 31),
    date(2027, 8, 30),
    date(2027, 12, 25),
    date(2027, 12, 26),
    date(2027, 12, 27),
    date(2027, 12, 28),
}


@pytest.mark.parametrize(
    ("regime", "year", "expected"),
    [
        pytest.param("gdpr", 2026, FR_2026, id="FR-code-du-travail-L3133-1-eleven-days"),
        pytest.param("quebec_law25", 2027, QC_2027, id="Quebec-I16-s61(23)-jours-feries"),
        pytest.param("uk_gdpr", 2027, ENG_2027, id="gov-uk-bank-holidays-england-substitutes"),
        pytest.param("bc_pipa", 2026, BC_2026, id="BC-Interpretation-Act-s29-holiday"),
    ],
)
def test_calendar_matches_the_statutory_list(regime: str, year: int, expected: set[date]) -> None:
    assert holidays_in(cal(regime), year) == expected


# PIPEDA: federal Interpretation Act s.35(1), plus para. (a): "any day that is a non-juridical
# day by virtue of an Act of the legislature of the province" — the policy's province.
# Ontario Legislation Act, 2006 s.88 (as quoted by ottawaemploymentlaw.com, 3 July 2018, and
# matching O. Reg. 253/16's list on ontario.ca): Sunday, New Year's Day, Family Day, Good
# Friday, Easter Monday, Victoria Day, Canada Day, Labour Day, Thanksgiving, Remembrance Day,
# Christmas Day, Boxing Day, proclaimed days — no Civic Holiday; s.88(3) New Year's Day on a
# Sunday → Monday too; s.88(5) Christmas on Saturday → Monday, on Sunday → Tuesday.
ON_2026 = FEDERAL_CA_2026 | {date(2026, 2, 16), date(2026, 12, 26)}
# 2022: Christmas on a Sunday → Boxing Day Monday 26, s.88(5) Tuesday 27. New Year 2022 is a
# Saturday (no substitute in s.88(3)). Easter 17 April; Family Day 21 Feb; Victoria Day 23 May;
# Labour Day 5 Sep; Thanksgiving 10 Oct.
ON_2022 = {
    date(2022, 1, 1),
    date(2022, 2, 21),
    date(2022, 4, 15),
    date(2022, 4, 18),
    date(2022, 5, 23),
    date(2022, 7, 1),
    date(2022, 9, 5),
    date(2022, 9, 30),
    date(2022, 10, 10),
    date(2022, 11, 11),
    date(2022, 12, 25),
    date(2022, 12, 26),
    date(2022, 12, 27),
}
# Québec I-16 s.61(23)(e): 24 June is added to the federal list.
QC_PIPEDA_2026 = FEDERAL_CA_2026 | {date(2026, 6, 24)}
# Newfoundland and Labrador Interpretation Act s.27(1)(l) (assembly.nl.ca, SNL 2019 c. 11):
# adds Boxing Day (Memorial Day is 1 July, already Canada Day).
NL_2026 = FEDERAL_CA_2026 | {date(2026, 12, 26)}
# BC Interpretation Act s.29: Family Day, British Columbia Day, 26 December.
BC_PIPEDA_2026 = FEDERAL_CA_2026 | {date(2026, 2, 16), date(2026, 8, 3), date(2026, 12, 26)}


@pytest.mark.parametrize(
    ("subdivision", "year", "expected"),
    [
        pytest.param(None, 2026, FEDERAL_CA_2026, id="Interpretation-Act-s35(1)-no-province"),
        pytest.param("ON", 2026, ON_2026, id="Interpretation-Act-s35(1)(a)-Ontario-s88-2026"),
        pytest.param(
            "ON", 2022, ON_2022, id="Interpretation-Act-s35(1)(a)-Ontario-s88(5)-christmas-sunday"
        ),
        pytest.param("QC", 2026, QC_PIPEDA_2026, id="Interpretation-Act-s35(1)(a)-Quebec-I16"),
        pytest.param("NL", 2026, NL_2026, id="Interpretation-Act-s35(1)(a)-NL-s27"),
        pytest.param("BC", 2026, BC_PIPEDA_2026, id="Interpretation-Act-s35(1)(a)-BC-s29"),
        # a province whose list is not modelled: the federal list only, and the source says so
        pytest.param("AB", 2026, FEDERAL_CA_2026, id="Interpretation-Act-s35(1)-AB-not-modelled"),
    ],
)
def test_pipeda_calendar_adds_the_provinces_non_juridical_days(
    subdivision: str | None, year: int, expected: set[date]
) -> None:
    calendar = cal_in("pipeda", subdivision)
    assert holidays_in(calendar, year) == expected
    if subdivision == "AB":
        assert "no provincial list is modelled for AB" in calendar.source


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # s.88(3): New Year's Day 2023 is a Sunday → Monday 2 January is a holiday too
        pytest.param(date(2023, 1, 2), True, id="Ontario-s88(3)-new-year-sunday-monday"),
        # s.88(5): Christmas 2027 is a Saturday → Monday 27 December is a holiday too
        pytest.param(date(2027, 12, 27), True, id="Ontario-s88(5)-christmas-saturday-monday"),
        # Civic Holiday (first Monday of August) is not in s.88
        pytest.param(date(2026, 8, 3), False, id="Ontario-s88-civic-holiday-is-not-listed"),
        # Holidays Act s.2: when 1 July is a Sunday, 2 July is Canada Day (2029)
        pytest.param(date(2029, 7, 2), True, id="Holidays-Act-s2-canada-day-2-july"),
    ],
)
def test_ontario_substitute_days(day: date, expected: bool) -> None:
    assert cal_in("pipeda", "ON").is_holiday(day) is expected


def test_quebec_2_july_is_a_holiday_only_when_canada_day_is_a_sunday() -> None:
    quebec = cal("quebec_law25")
    assert date(2029, 7, 1).weekday() == 6
    assert quebec.is_holiday(date(2029, 7, 2))
    assert not quebec.is_holiday(date(2027, 7, 2))
    # 24 June 2029 is also a Sunday, but I-16 has no substitute for it (the 25 June day off
    # of the Fête nationale Act is a labour rule, not a jour férié)
    assert not quebec.is_holiday(date(2029, 6, 25))


def test_ccpa_business_days_use_the_federal_calendar_rules_6_6() -> None:
    """RULES §6.6: 15 business days from 20 Nov 2026 are 14 Dec (federal) vs 15 Dec (with
    California's day after Thanksgiving). The preset takes the earlier, federal date."""
    federal = cal("ccpa_cpra")
    california = calendar_for(
        {**resolved("ccpa_cpra")["jurisdiction"]["calendar"], "subdivision": "CA"}
    )
    assert federal.add_business_days(date(2026, 11, 20), 15)[0] == date(2026, 12, 14)
    assert california.add_business_days(date(2026, 11, 20), 15)[0] == date(2026, 12, 15)
    assert not federal.is_holiday(date(2026, 11, 27))
    assert california.is_holiday(date(2026, 11, 27))


def test_ccpa_calendar_never_rolls() -> None:
    ccpa = cal("ccpa_cpra")
    for d in (date(2027, 1, 9), date(2027, 1, 10), date(2026, 12, 25)):
        assert ccpa.why_not_working(d) is None
        assert ccpa.roll_forward(d) == d


@pytest.mark.parametrize(
    ("regime", "day", "reason", "rolled"),
    [
        # Interpretation Act (Canada) s.26/s.35: Sundays and holidays roll, Saturdays do not.
        pytest.param(
            "pipeda",
            date(2027, 1, 30),
            None,
            date(2027, 1, 30),
            id="PIPEDA-interpretation-act-saturday-stands",
        ),
        pytest.param(
            "pipeda",
            date(2027, 1, 31),
            "a Sunday",
            date(2027, 2, 1),
            id="PIPEDA-interpretation-act-sunday-rolls",
        ),
        pytest.param(
            "pipeda",
            date(2028, 7, 1),
            "a holiday (Canada Day)",
            date(2028, 7, 3),
            id="PIPEDA-canada-day-on-saturday-rolls-past-sunday",
        ),
        pytest.param(
            "quebec_law25",
            date(2027, 6, 26),
            None,
            date(2027, 6, 26),
            id="Quebec-I16-s52-saturday-is-not-ferie",
        ),
        # Reg. 1182/71 Art. 3(4): Saturday, Sunday and public holidays all roll.
        pytest.param(
            "gdpr",
            date(2026, 8, 15),
            "a holiday (Assumption Day)",
            date(2026, 8, 17),
            id="Reg1182-71-art3(4)-holiday-on-saturday",
        ),
        pytest.param(
            "gdpr",
            date(2026, 10, 3),
            "a Saturday",
            date(2026, 10, 5),
            id="Reg1182-71-art3(4)-saturday-rolls",
        ),
        # Código Civil art. 132: Carnival is ponto facultativo, not a feriado.
        pytest.param(
            "lgpd",
            date(2027, 2, 9),
            None,
            date(2027, 2, 9),
            id="LGPD-carnival-tuesday-is-not-a-holiday",
        ),
        pytest.param(
            "lgpd",
            date(2027, 4, 21),
            "a holiday (Tiradentes' Day)",
            date(2027, 4, 22),
            id="LGPD-tiradentes-rolls",
        ),
    ],
)
def test_roll_forward_follows_the_regime(
    regime: str, day: date, reason: str | None, rolled: date
) -> None:
    calendar = cal(regime)
    assert calendar.why_not_working(day) == reason
    assert calendar.roll_forward(day) == rolled


def test_brazil_counts_carnival_and_ash_wednesday_as_business_days() -> None:
    brazil = cal("lgpd")
    for d in (date(2027, 2, 8), date(2027, 2, 9), date(2027, 2, 10), date(2027, 5, 27)):
        assert brazil.is_business_day(d), d
    end, skipped = brazil.add_business_days(date(2026, 4, 17), 3)
    assert end == date(2026, 4, 23)
    assert [d for d, _ in skipped] == [date(2026, 4, 21)]


def test_morocco_calendar_add_and_remove_move_a_moon_sighted_holiday() -> None:
    estimated = cal("morocco_09_08")
    sighted = cal("morocco_09_08", calendar={"add": ["2027-03-11"], "remove": ["2027-03-09"]})
    assert estimated.is_holiday(date(2027, 3, 9))
    assert not estimated.is_holiday(date(2027, 3, 11))
    assert not sighted.is_holiday(date(2027, 3, 9))
    assert sighted.is_holiday(date(2027, 3, 10))
    assert sighted.holiday_name(date(2027, 3, 11)) == "holiday added by the policy"
    # the adjustment belongs to that policy only: the shared preset calendar is untouched
    assert estimated is not sighted
    assert estimated.is_holiday(date(2027, 3, 9))


def test_bc_business_days_skip_bc_day_and_family_day() -> None:
    bc = cal("bc_pipa")
    end, skipped = bc.add_business_days(date(2026, 7, 20), 30)
    assert end == date(2026, 9, 1)
    assert [name for _, name in skipped] == ["British Columbia Day"]
    end, skipped = bc.add_business_days(date(2026, 1, 26), 30)
    assert end == date(2026, 3, 10)
    assert [name for _, name in skipped] == ["Family Day"]


def test_business_days_cross_the_new_year() -> None:
    france = cal("gdpr")
    # Thu 24 Dec 2026: (25 Christmas) 28, 29, 30, 31, (1 Jan) 4 Jan 2027
    end, skipped = france.add_business_days(date(2026, 12, 24), 5)
    assert end == date(2027, 1, 4)
    assert [d for d, _ in skipped] == [date(2026, 12, 25), date(2027, 1, 1)]


def test_calendars_are_cached_per_specification() -> None:
    spec = resolved("gdpr")["jurisdiction"]["calendar"]
    assert calendar_for(spec) is calendar_for(dict(spec))


# ---- period arithmetic ---------------------------------------------------------------------

MONTH_CASES = [
    # Reg. 1182/71 Art. 3(2)(c) / ICO: the corresponding day, else the month's last day.
    pytest.param(
        date(2027, 1, 31),
        Period(1, "months"),
        date(2027, 2, 28),
        True,
        id="ICO-31-january-to-28-february",
    ),
    pytest.param(
        date(2028, 1, 31),
        Period(1, "months"),
        date(2028, 2, 29),
        True,
        id="ICO-31-january-to-29-february-leap",
    ),
    pytest.param(
        date(2027, 3, 31),
        Period(1, "months"),
        date(2027, 4, 30),
        True,
        id="ICO-31-march-to-30-april",
    ),
    pytest.param(
        date(2026, 9, 3),
        Period(1, "months"),
        date(2026, 10, 3),
        False,
        id="ICO-3-september-to-3-october",
    ),
    pytest.param(
        date(2027, 1, 31),
        Period(3, "months"),
        date(2027, 4, 30),
        True,
        id="ICO-extension-three-months-from-31-january",
    ),
    pytest.param(
        date(2028, 2, 29),
        Period(1, "years"),
        date(2029, 2, 28),
        True,
        id="Reg1182-71-art3(2)(c)-29-february-plus-one-year",
    ),
    pytest.param(
        date(2026, 12, 31),
        Period(2, "months"),
        date(2027, 2, 28),
        True,
        id="Reg1182-71-months-across-the-year-end",
    ),
    pytest.param(
        date(2027, 1, 1),
        Period(30, "days"),
        date(2027, 1, 31),
        False,
        id="Reg1182-71-art3(1)-30-days-from-1-january",
    ),
    pytest.param(date(2027, 1, 1), Period(2, "weeks"), date(2027, 1, 15), False, id="two-weeks"),
    pytest.param(
        date(2027, 1, 1),
        Period(0, "months"),
        date(2027, 1, 1),
        False,
        id="zero-is-the-start-itself",
    ),
]


@pytest.mark.parametrize(("start", "period", "end", "clamped"), MONTH_CASES)
def test_add_to_date(start: date, period: Period, end: date, clamped: bool) -> None:
    counted = add_to_date(start, period)
    assert counted.end == end
    assert counted.clamped is clamped


def test_business_days_need_a_calendar() -> None:
    with pytest.raises(ValueError, match="calendar"):
        add_to_date(date(2027, 1, 1), Period(3, "business_days"))


@pytest.mark.parametrize(
    ("data", "message"),
    [({"value": -1, "unit": "days"}, "negative"), ({"value": 1, "unit": "fortnights"}, "unit")],
)
def test_bad_periods_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Period.of(data)


def test_hours_are_counted_on_the_utc_timeline_across_dst() -> None:
    # 28 March 2026 12:00 CET + 24 h crosses the 29 March change: 13:00 CEST locally.
    start = datetime(2026, 3, 28, 12, tzinfo=PARIS)
    end = add_period(start, Period(24, "hours"), "Europe/Paris")
    assert end == datetime(2026, 3, 29, 11, tzinfo=UTC)
    assert end.astimezone(PARIS).hour == 13


def test_months_keep_the_local_wall_clock_across_dst() -> None:
    # 13 months of consent granted at 10:15 in Paris in winter lapse at 10:15 in Paris in
    # summer: 09:15Z → 08:15Z.
    start = datetime(2026, 1, 31, 10, 15, tzinfo=PARIS)
    end = add_period(start, Period(13, "months"), "Europe/Paris")
    assert end == datetime(2027, 2, 28, 9, 15, tzinfo=UTC)
    summer = add_period(start, Period(6, "months"), "Europe/Paris")
    assert summer == datetime(2026, 7, 31, 8, 15, tzinfo=UTC)


def test_a_wall_time_in_the_spring_gap_lands_just_after_it() -> None:
    # 02:30 does not exist in Paris on 29 March 2026; read with the winter offset it is
    # 01:30Z = 03:30 CEST.
    start = datetime(2026, 3, 28, 2, 30, tzinfo=PARIS)
    end = add_period(start, Period(1, "days"), "Europe/Paris")
    assert end == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        ("Europe/Paris", date(2027, 3, 1), "2027-03-01T22:59:59.999999+00:00"),
        ("Europe/Paris", date(2027, 7, 15), "2027-07-15T21:59:59.999999+00:00"),
        ("Europe/London", date(2027, 3, 1), "2027-03-01T23:59:59.999999+00:00"),
        ("America/Los_Angeles", date(2027, 1, 9), "2027-01-10T07:59:59.999999+00:00"),
        # the DST days themselves: the offset in force at the end of the day
        ("Europe/Paris", date(2026, 3, 29), "2026-03-29T21:59:59.999999+00:00"),
        ("Europe/Paris", date(2026, 10, 25), "2026-10-25T22:59:59.999999+00:00"),
    ],
)
def test_end_of_local_day(tz: str, day: date, expected: str) -> None:
    assert end_of_local_day(day, ZoneInfo(tz)).isoformat() == expected


def test_a_pipeda_deadline_ending_on_boxing_day_moves_only_where_a_province_says_so() -> None:
    """30 days after 26 Nov 2026 is Saturday 26 Dec. Federally (no province), Saturdays do not
    roll under s.26 and Boxing Day is not a s.35(1) holiday: the deadline stays on the 26th.
    In Ontario, Boxing Day is a holiday (Legislation Act s.88, via s.35(1)(a)): it rolls past
    Sunday 27 to Monday 28 December."""
    federal = cal_in("pipeda", None)
    assert federal.roll_forward(date(2026, 12, 26)) == date(2026, 12, 26)
    assert federal.roll_forward(date(2027, 12, 26)) == date(2027, 12, 27)  # a Sunday rolls
    assert federal.roll_forward(date(2026, 12, 25)) == date(2026, 12, 26)  # Christmas rolls
    ontario = cal_in("pipeda", "ON")
    assert ontario.why_not_working(date(2026, 12, 26)) == "a holiday (Boxing Day)"
    assert ontario.roll_forward(date(2026, 12, 26)) == date(2026, 12, 28)
    assert ontario.roll_forward(date(2026, 12, 25)) == date(2026, 12, 28)
    # 2027: Christmas Saturday, Boxing Day Sunday, s.88(5) Monday 27 → Tuesday 28
    assert ontario.roll_forward(date(2027, 12, 25)) == date(2027, 12, 28)


def test_bc_business_days_skip_easter_monday_and_26_december() -> None:
    """Both are s.29 holidays (the package's BC list has neither): 30 BC working days from
    Monday 23 March 2026 (by hand: 24-27 Mar, 30 Mar-2 Apr, 7-10 Apr, then four full weeks
    to 1 May, then 4-6 May) skip Good Friday 3 April and Easter Monday 6 April."""
    bc = cal("bc_pipa")
    end, skipped = bc.add_business_days(date(2026, 3, 23), 30)
    assert [name for _, name in skipped] == ["Good Friday", "Easter Monday"]
    assert end == date(2026, 5, 6)
    assert bc.is_holiday(date(2026, 12, 26))  # a Saturday in 2026: no substitute on Monday
    assert not bc.is_holiday(date(2026, 12, 28))
