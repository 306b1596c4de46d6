"""Properties of the rules module over random regimes, instants (2000-2100, many zones),
request types and periods (issue 3 item 7). The expected values are derived here without
the module's own helpers wherever possible (month arithmetic by `calendar.monthrange`, roll
by a direct weekday/holiday check on the `holidays` package)."""

from __future__ import annotations

import calendar
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.rules import deadlines
from app.rules.calendars import WorkCalendar, calendar_for
from app.rules.periods import Period, add_period, add_to_date
from app.rules.regimes import REGIMES
from app.rules.retention import evaluate_retention
from tests.rules.helpers import resolved

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Paris",
        "Europe/London",
        "America/Los_Angeles",
        "America/St_Johns",
        "Asia/Kolkata",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Africa/Casablanca",
        "Australia/Lord_Howe",
    )
]
RIGHTS = [
    "access",
    "rectification",
    "erasure",
    "portability",
    "restriction",
    "objection",
    "opt_out",
]
MAX_VALUE = {
    "hours": 2000,
    "days": 400,
    "business_days": 300,
    "weeks": 60,
    "months": 36,
    "years": 5,
}

# hypothesis takes naive bounds and attaches the zones itself
instants = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2096, 12, 31),  # noqa: DTZ001
    timezones=st.sampled_from(ZONES),
)
regimes = st.sampled_from(REGIMES)
rights = st.sampled_from(RIGHTS)
units = st.sampled_from(tuple(MAX_VALUE))


@st.composite
def periods(draw: st.DrawFn, unit: str | None = None, min_value: int = 0) -> Period:
    unit = unit or draw(units)
    return Period(draw(st.integers(min_value, MAX_VALUE[unit])), unit)


@cache
def policy(regime: str) -> dict[str, Any]:
    return resolved(regime)


def with_rule(regime: str, within: Period, extension: Period | None) -> dict[str, Any]:
    rule: dict[str, Any] = {"within": within.to_dict()}
    rule["extension"] = extension.to_dict() if extension is not None else None
    # by_type too: a preset rule for one right (LGPD access) outranks the declared default
    return resolved(regime, response={"default": rule, "by_type": {"access": rule}})


def cal_of(resolved_policy: dict[str, Any]) -> WorkCalendar:
    return calendar_for(resolved_policy["jurisdiction"]["calendar"])


def tz_of(resolved_policy: dict[str, Any]) -> ZoneInfo:
    return ZoneInfo(resolved_policy["jurisdiction"]["timezone"])


def last_microsecond(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, dtime.max, tzinfo=tz).astimezone(UTC)


# ---- requests ------------------------------------------------------------------------------


@SETTINGS
@given(regime=regimes, type_=rights, received=instants)
def test_preset_due_dates_are_never_before_receipt(
    regime: str, type_: str, received: datetime
) -> None:
    resolved_policy = policy(regime)
    result = deadlines.dsar_deadlines(resolved_policy, type=type_, received_at=received)
    local_receipt = received.astimezone(tz_of(resolved_policy)).date()
    for d in (
        result.due_date,
        result.acknowledge_by,
        result.extended_due_date,
        result.extension_notice_by,
    ):
        assert d is None or d >= local_receipt
    for at in (result.due_at, result.extended_due_at):
        assert at is None or at >= received
    if result.due_date is not None and result.extended_due_date is not None:
        assert result.extended_due_date >= result.due_date


@SETTINGS
@given(
    regime=regimes,
    received=instants,
    within=periods(),
    extension=st.none() | periods(),
    verified_after=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=90)),
)
def test_any_declared_period_gives_a_consistent_deadline(
    regime: str,
    received: datetime,
    within: Period,
    extension: Period | None,
    verified_after: timedelta | None,
) -> None:
    resolved_policy = with_rule(regime, within, extension)
    tz = tz_of(resolved_policy)
    verified = received + verified_after if verified_after is not None else None
    if verified is not None:
        resolved_policy["response"]["by_type"]["access"]["clock_starts"] = "verified"
    result = deadlines.dsar_deadlines(
        resolved_policy, type="access", received_at=received, verified_at=verified
    )
    assert result.provisional is False
    assert result.clock_started_at >= received
    assert result.due_date is not None
    assert result.due_at is not None
    # never before receipt
    assert result.due_at >= received
    assert result.due_date >= received.astimezone(tz).date()
    if within.unit == "hours":
        # exactly start + N hours on the UTC timeline
        assert result.due_at == result.clock_started_at + timedelta(hours=within.value)
        assert result.due_date == result.due_at.astimezone(tz).date()
    else:
        # the last microsecond of the local due date
        assert result.due_at == last_microsecond(result.due_date, tz)
        assert result.due_at.astimezone(tz).date() == result.due_date
        assert (result.due_at + timedelta(microseconds=1)).astimezone(tz).date() > result.due_date
        # a deadline on a rolling calendar never ends on a day that moves it
        assert cal_of(resolved_policy).why_not_working(result.due_date) is None
    if extension is None:
        assert not result.extension_allowed
    else:
        assert result.extended_due_at is not None
        assert result.extended_due_date is not None
        # an extension never moves the answer earlier
        assert result.extended_due_at >= result.due_at
        assert result.extended_due_date >= result.due_date
        assert result.extension_notice_by is not None


@settings(max_examples=300, deadline=None)
@given(regime=st.sampled_from(["gdpr", "uk_gdpr"]), received=instants)
def test_gdpr_and_uk_month_is_the_corresponding_day_then_rolled(
    regime: str, received: datetime
) -> None:
    resolved_policy = policy(regime)
    tz = tz_of(resolved_policy)
    local = received.astimezone(tz).date()
    year, month = (local.year, local.month + 1) if local.month < 12 else (local.year + 1, 1)
    target = date(year, month, min(local.day, calendar.monthrange(year, month)[1]))
    public = (
        holidays.country_holidays("FR", years=range(year, year + 2))
        if regime == "gdpr"
        else holidays.country_holidays("GB", subdiv="ENG", years=range(year, year + 2))
    )
    expected = target
    while expected.weekday() >= 5 or expected in public:
        expected += timedelta(days=1)
    result = deadlines.dsar_deadlines(resolved_policy, type="access", received_at=received)
    assert result.due_date == expected
    assert result.due_date.weekday() < 5
    # the extension: three months from the original start, then rolled
    e_year, e_month = divmod(local.month - 1 + 3, 12)
    e_year += local.year
    e_month += 1
    e_target = date(e_year, e_month, min(local.day, calendar.monthrange(e_year, e_month)[1]))
    public_e = (
        holidays.country_holidays("FR", years=range(e_year, e_year + 2))
        if regime == "gdpr"
        else holidays.country_holidays("GB", subdiv="ENG", years=range(e_year, e_year + 2))
    )
    while e_target.weekday() >= 5 or e_target in public_e:
        e_target += timedelta(days=1)
    assert result.extended_due_date == e_target


# ---- calendars and periods -----------------------------------------------------------------


@SETTINGS
@given(
    regime=regimes,
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 1, 1)),
    n=st.integers(0, 250),
)
def test_business_days_never_land_on_a_weekend_or_holiday(regime: str, start: date, n: int) -> None:
    work = cal_of(policy(regime))
    end, skipped = work.add_business_days(start, n)
    assert end >= start
    if n == 0:
        assert end == start
        return
    assert end.weekday() < 5
    assert not work.is_holiday(end)
    # exactly n business days in (start, end]
    count = sum(
        1
        for i in range(1, (end - start).days + 1)
        if work.is_business_day(start + timedelta(days=i))
    )
    assert count == n
    assert all(work.is_holiday(d) and d.weekday() < 5 for d, _ in skipped)


@SETTINGS
@given(
    regime=regimes,
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2096, 1, 1)),
    unit=units.filter(lambda u: u != "hours"),
    data=st.data(),
)
def test_adding_more_never_gives_an_earlier_date(
    regime: str, start: date, unit: str, data: st.DataObject
) -> None:
    work = cal_of(policy(regime))
    a = data.draw(st.integers(0, MAX_VALUE[unit]))
    b = data.draw(st.integers(a, MAX_VALUE[unit]))
    end_a = add_to_date(start, Period(a, unit), work).end
    end_b = add_to_date(start, Period(b, unit), work).end
    assert start <= end_a <= end_b
    # and the same after rolling to a working day
    assert work.roll_forward(end_a) <= work.roll_forward(end_b)


@SETTINGS
@given(instant=instants, hours=st.integers(0, 5000), zone_=st.sampled_from(ZONES))
def test_hours_are_exact_on_the_utc_timeline(
    instant: datetime, hours: int, zone_: ZoneInfo
) -> None:
    end = add_period(instant, Period(hours, "hours"), zone_)
    assert end == instant.astimezone(UTC) + timedelta(hours=hours)
    assert end.tzinfo is UTC
    assert (end - instant) == timedelta(hours=hours)


@SETTINGS
@given(
    regime=regimes,
    aware=instants,
    hours=st.integers(0, 200),
    risk=st.sampled_from(["unlikely", "risk", "high_risk"]),
)
def test_breach_hours_clock_is_exact(regime: str, aware: datetime, hours: int, risk: Any) -> None:
    resolved_policy = resolved(
        regime,
        breach={
            "authority_within": {"value": hours, "unit": "hours"},
            "notify_authority": "always",
        },
    )
    result = deadlines.breach_deadlines(resolved_policy, aware_at=aware, risk=risk)
    assert result.authority_notification_required
    assert result.authority_due_at == aware.astimezone(UTC) + timedelta(hours=hours)


# ---- retention -----------------------------------------------------------------------------

CATEGORIES = ["zero", "months", "hours", "indefinite", "event", "unknown"]
RETENTION_RULES = [
    {"category": "zero", "keep_for": {"value": 0, "unit": "days"}, "starts_at": "contract_ended"},
    {"category": "months", "keep_for": {"value": 13, "unit": "months"}, "starts_at": "collected"},
    {"category": "hours", "keep_for": {"value": 36, "unit": "hours"}, "starts_at": "collected"},
    {"category": "indefinite", "keep_for": None, "starts_at": "collected"},
    {"category": "event", "keep_for": {"value": 2, "unit": "years"}, "starts_at": "last_activity"},
]

records = st.lists(
    st.fixed_dictionaries(
        {"category": st.sampled_from(CATEGORIES), "collected_at": instants},
        optional={
            "events": st.dictionaries(
                st.sampled_from(["contract_ended", "last_activity", "other"]), instants
            )
        },
    ),
    max_size=30,
)


@SETTINGS
@given(regime=regimes, batch=records)
def test_retention_one_result_per_record_in_order(regime: str, batch: list[dict[str, Any]]) -> None:
    resolved_policy = resolved(regime, retention=RETENTION_RULES)
    out = evaluate_retention(resolved_policy, batch)
    results = out["results"]
    assert len(results) == len(batch)
    for record, result in zip(batch, results, strict=True):
        assert result["category"] == record["category"]
        if record["category"] == "unknown":
            assert result["problem"]["code"] == "retention_unknown_category"
            continue
        assert result["explanation_ref"] in out["explanations"]
        events = record.get("events") or {}
        if record["category"] == "zero":
            trigger = events.get("contract_ended")
            if trigger is None:
                assert result["state"] == "not_started"
                assert result["expires_at"] is None
            else:
                # keep_for 0: the trigger instant itself (compared in UTC: PEP 495 makes an
                # ambiguous local time unequal to any other zone's datetime, same instant or not)
                assert result["expires_at"] == trigger.astimezone(UTC)
        elif record["category"] == "hours":
            assert result["expires_at"] == record["collected_at"] + timedelta(hours=36) or (
                result["expires_at"] - record["collected_at"] == timedelta(hours=36)
            )
        elif record["category"] == "indefinite":
            assert result["state"] == "indefinite"
            assert result["expires_at"] is None
        elif record["category"] == "months":
            assert result["expires_at"] > record["collected_at"]
        elif record["category"] == "event":
            assert (result["state"] == "running") == ("last_activity" in events)


# ---- the server's timezone does not matter -------------------------------------------------


@contextmanager
def server_tz(name: str) -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


@settings(max_examples=40, deadline=None)
@given(regime=regimes, type_=rights, received=instants)
def test_results_do_not_depend_on_the_server_timezone(
    regime: str, type_: str, received: datetime
) -> None:
    results = []
    for name in ("UTC", "Pacific/Kiritimati", "America/Adak"):
        with server_tz(name):
            r = deadlines.dsar_deadlines(policy(regime), type=type_, received_at=received)
            results.append(r.to_dict())
    assert results[0] == results[1] == results[2]


near_dst = st.sampled_from(
    [
        datetime(2026, 3, 29, 1, tzinfo=UTC),
        datetime(2026, 10, 25, 1, tzinfo=UTC),
        datetime(2026, 3, 8, 10, tzinfo=UTC),
        datetime(2026, 11, 1, 9, tzinfo=UTC),
        datetime(2026, 4, 5, 15, 30, tzinfo=UTC),
        datetime(2026, 10, 4, 15, 30, tzinfo=UTC),
    ]
).flatmap(
    lambda t: st.timedeltas(min_value=timedelta(hours=-30), max_value=timedelta(hours=30)).map(
        lambda d: t + d
    )
)


@settings(max_examples=200, deadline=None)
@given(
    regime=regimes,
    zone_=st.sampled_from(ZONES),
    keep=periods(unit=None).filter(lambda p: p.unit != "business_days" or p.value < 60),
    batch=st.lists(instants | near_dst, min_size=1, max_size=40),
    back=st.timedeltas(min_value=timedelta(days=-400), max_value=timedelta(days=0)),
)
def test_retention_expiry_equals_add_period_for_every_record(
    regime: str, zone_: ZoneInfo, keep: Period, batch: list[datetime], back: timedelta
) -> None:
    """The retention fast path (shifts shared per local day) is exact: every expiry equals
    `add_period` on that record, DST days and 30-minute zones included."""
    declared_rules = [{"category": "c", "keep_for": keep.to_dict(), "starts_at": "collected"}]
    resolved_policy = resolved(regime, retention=declared_rules)
    resolved_policy["jurisdiction"]["timezone"] = zone_.key
    work = cal_of(resolved_policy)
    # records often share a local day (as real exports do), so the memo is exercised
    batch = batch + [t + back for t in batch]
    out = evaluate_retention(resolved_policy, [{"category": "c", "collected_at": t} for t in batch])
    for t, result in zip(batch, out["results"], strict=True):
        assert result["expires_at"] == add_period(t, keep, zone_, work)
        assert result["expires_at"].tzinfo is UTC


def test_a_wall_time_inside_a_spring_gap_counts_from_its_instant() -> None:
    """Regression (found by the property above): Morocco moved its clocks from 00:00 to 01:00
    on 2008-06-01, so 00:00 that day in Casablanca is the instant 00:00 UTC, read locally as
    01:00. One day later is 01:00 local on 2 June, whichever way the instant is written."""
    casablanca = ZoneInfo("Africa/Casablanca")
    in_gap = datetime(2008, 6, 1, 0, 0, tzinfo=casablanca)
    as_utc = datetime(2008, 6, 1, 0, 0, tzinfo=UTC)
    # (PEP 495: a time inside a gap never compares equal across zones; compare the instants)
    assert in_gap.astimezone(UTC) == as_utc
    expected = datetime(2008, 6, 2, 0, 0, tzinfo=UTC)  # 01:00 WEST (UTC+1)
    assert add_period(in_gap, Period(1, "days"), casablanca) == expected
    assert add_period(as_utc, Period(1, "days"), casablanca) == expected


# ---- issue 13: the explanation ends with the date it returns ------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@SETTINGS
@given(
    regime=regimes,
    type_=rights,
    received=instants,
    requester=st.sampled_from(["subject", "controller"]),
    asked=st.none() | st.booleans(),
    verified_after=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60)),
    extended=st.booleans(),
    declared=st.none() | st.tuples(periods(), st.none() | periods()),
)
def test_the_explanations_last_date_is_the_date_returned(
    regime: str,
    type_: str,
    received: datetime,
    requester: str,
    asked: bool | None,
    verified_after: timedelta | None,
    extended: bool,
    declared: tuple[Period, Period | None] | None,
) -> None:
    """Every regime (its presets, or a policy's own periods), every request type and
    requester, with or without identity information asked for and an extension: the last
    date a reader sees in the explanation is the date the ticket shows (the extended one once
    extended), and an explanation without a due date ends without a date."""
    resolved_policy = policy(regime) if declared is None else with_rule(regime, *declared)
    verified = received + verified_after if verified_after is not None else None
    result = deadlines.dsar_deadlines(
        resolved_policy,
        type=type_,
        received_at=received,
        verified_at=verified,
        requester=requester,
        identity_requested=asked,
        extended=extended,
    )
    shown = (
        result.extended_due_date
        if extended and result.extended_due_date is not None
        else result.due_date
    )
    last = result.explanation[-1].detail
    all_dates = _DATE.findall("\n".join(s.detail for s in result.explanation))
    if shown is None:
        assert not _DATE.findall(last), last
    else:
        assert all_dates[-1] == shown.isoformat(), last
