"""The sweep's cutoff (DESIGN §14): now minus keep_for, counted on local dates in the policy's
timezone the way expiry counts forward, so a record before the cutoff has expired."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.policies.schemas import SPOTRAK_EXAMPLE
from app.rules.periods import Period, add_period, zone
from app.rules.regimes import resolve
from app.rules.retention import subject_events, subject_expiry, sweep_cutoff, sweepable


def resolved(tz: str = "Europe/Paris") -> Any:
    body = copy.deepcopy(SPOTRAK_EXAMPLE)
    body["jurisdiction"]["timezone"] = tz
    return resolve(body)


def rule(value: int, unit: str, trigger: str = "collected") -> dict[str, Any]:
    return {
        "category": "logs",
        "keep_for": {"value": value, "unit": unit},
        "starts_at": trigger,
        "then": "delete",
    }


@pytest.mark.parametrize(
    ("now", "keep", "cutoff", "day"),
    [
        pytest.param(
            # 31 March has no 31 February: records of 28 February expired on 28 March, those
            # of 1 March expire on 1 April → every record before 1 March 00:00 Paris
            "2027-03-31T08:00:00+00:00", (1, "months"), "2027-02-28T23:00:00+00:00", "2027-03-31",
            id="P1M-on-31-March-Reg1182/71-Art3(2)(c)",
        ),
        pytest.param(
            # leap year: 29 February exists, 30 and 31 March map back to it
            "2028-03-31T08:00:00+00:00", (1, "months"), "2028-02-29T23:00:00+00:00", "2028-03-31",
            id="P1M-on-31-March-leap-year",
        ),
        pytest.param(
            # 28 March 2027 is the spring DST change in Paris: 10:00 CEST now, the cutoff at
            # 10:00 CET on 28 February (09:00Z), not now minus 28 x 24 hours
            "2027-03-28T08:00:00+00:00", (1, "months"), "2027-02-28T09:00:00+00:00", "2027-03-28",
            id="P1M-across-spring-DST",
        ),
        pytest.param(
            # 31 October 2027 (autumn change, back to CET): 10:00 CET = 09:00Z now; the cutoff
            # is 10:00 CEST on 30 September (08:00Z)
            "2027-10-31T09:00:00+00:00", (1, "months"), "2027-09-30T22:00:00+00:00", "2027-10-31",
            id="P1M-on-31-October-autumn-DST-and-month-end",
        ),
        pytest.param(
            "2027-10-30T09:00:00+00:00", (1, "months"), "2027-09-30T09:00:00+00:00", "2027-10-30",
            id="P1M-on-30-October",
        ),
        pytest.param(
            # 00:30 Paris on 1 March (still 28 February in UTC): 00:30 Paris on 1 March 2026
            "2027-02-28T23:30:00+00:00", (12, "months"), "2026-02-28T23:30:00+00:00", "2027-03-01",
            id="P12M-local-day-ahead-of-UTC",
        ),
        pytest.param(
            # hours are the UTC timeline, DST or not
            "2027-03-28T08:00:00+00:00", (48, "hours"), "2027-03-26T08:00:00+00:00", "2027-03-28",
            id="PT48H-UTC-timeline",
        ),
        pytest.param(
            "2027-03-15T09:00:00+00:00", (0, "days"), "2027-03-15T09:00:00+00:00", "2027-03-15",
            id="P0D-the-trigger-itself",
        ),
    ],
)
def test_sweep_cutoff(now: str, keep: tuple[int, str], cutoff: str, day: str) -> None:
    got = sweep_cutoff(resolved(), rule(*keep), datetime.fromisoformat(now))
    assert got.cutoff == datetime.fromisoformat(cutoff)
    assert got.day.isoformat() == day
    assert got.explanation[0]["detail"].startswith("Category 'logs'")
    assert "cutoff" in got.explanation[1]["detail"]


def test_the_month_end_cutoff_says_why() -> None:
    got = sweep_cutoff(resolved(), rule(1, "months"), datetime(2027, 3, 31, 8, tzinfo=UTC))
    text = got.explanation[1]["detail"]
    assert "2027-02-28 expired on 2027-03-28" in text
    assert "2027-03-01 expires on 2027-04-01" in text


def test_sweepable_and_subject_events_split_the_rules() -> None:
    r = resolved()
    assert [x["category"] for x in r["retention"] if sweepable(x)] == ["technical_logs"]
    assert subject_events(r) == {"contract_ended"}
    assert not sweepable({**rule(1, "months"), "keep_for": None})
    assert sweepable(rule(1, "months", "last_activity"))


def test_subject_expiry_states() -> None:
    r = resolved()
    at = datetime(2024, 1, 31, 10, tzinfo=UTC)
    now = datetime(2027, 2, 1, tzinfo=UTC)
    three_years = rule(3, "years", "contract_ended")
    assert subject_expiry(r, three_years, None, now).state == "not_started"
    done = subject_expiry(r, three_years, at, now)
    assert (done.state, done.expires_at) == ("expired", datetime(2027, 1, 31, 10, tzinfo=UTC))
    assert subject_expiry(r, three_years, at, datetime(2027, 1, 30, tzinfo=UTC)).state == "running"
    forever = {**three_years, "keep_for": None}
    assert subject_expiry(r, forever, at, now).state == "indefinite"


ZONES = ["Europe/Paris", "America/Los_Angeles", "Australia/Sydney", "UTC", "America/Sao_Paulo"]


@settings(max_examples=300, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    unit=st.sampled_from(["days", "weeks", "months", "years", "hours"]),
    value=st.integers(min_value=0, max_value=30),
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),  # noqa: DTZ001 (naive bounds: hypothesis)
    back=st.integers(min_value=0, max_value=4 * 366 * 24 * 3600),
)
def test_a_record_before_the_cutoff_has_expired_and_one_well_after_has_not(
    tz: str, unit: str, value: int, now: datetime, back: int
) -> None:
    """Never early: every trigger instant before the cutoff has its expiry (the rules
    module's own count forward) at or before now; and at most a day late: an instant a day
    after the cutoff (or more) has not expired."""
    r = resolved(tz)
    now_utc = now.replace(tzinfo=UTC)
    got = sweep_cutoff(r, rule(value, unit), now_utc)
    t = now_utc - timedelta(seconds=back)
    expiry = add_period(t, Period(value, unit), zone(tz))
    if t < got.cutoff:
        assert expiry <= now_utc + timedelta(seconds=1), (t, got.cutoff, expiry)
    elif t >= got.cutoff + timedelta(days=1, hours=2):
        assert expiry > now_utc, (t, got.cutoff, expiry)
