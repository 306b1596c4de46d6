"""The fulfilment clock (app/rules/fulfilment.py): pure, table cases checked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from app.policies.schemas import SPOTRAK_EXAMPLE
from app.rules import regimes
from app.rules.calendars import calendar_for
from app.rules.fulfilment import DEFAULTS, purge_after, settings, subtract_from_date, task_due
from app.rules.periods import Period


def _resolved(**fulfilment: object) -> dict[str, object]:
    declared = dict(SPOTRAK_EXAMPLE)
    if fulfilment:
        declared["fulfilment"] = fulfilment
    return regimes.resolve(declared)


# Ticket due Monday 2027-03-01, end of day in Paris.
DUE = datetime(2027, 3, 1, 22, 59, 59, 999999, tzinfo=UTC)
START = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)


def test_defaults_fill_what_the_policy_leaves_out() -> None:
    assert settings(_resolved()) == DEFAULTS
    assert settings({}) == DEFAULTS  # a version published before the block
    assert settings(_resolved(max_attempts=3))["max_attempts"] == 3
    assert _resolved()["fulfilment"] == DEFAULTS


@pytest.mark.parametrize(
    ("end", "period", "expected"),
    [
        # FR: Thu 2027-02-25 is two business days before Mon 2027-03-01.
        (date(2027, 3, 1), Period(2, "business_days"), date(2027, 2, 25)),
        # Easter Monday 2027-03-29 is a holiday in France: skipped going back.
        (date(2027, 3, 31), Period(2, "business_days"), date(2027, 3, 26)),
        (date(2027, 3, 31), Period(1, "months"), date(2027, 2, 28)),
        (date(2027, 3, 1), Period(3, "days"), date(2027, 2, 26)),
        (date(2027, 3, 1), Period(1, "weeks"), date(2027, 2, 22)),
        (date(2028, 2, 29), Period(1, "years"), date(2027, 2, 28)),
        (date(2027, 3, 1), Period(0, "business_days"), date(2027, 3, 1)),
    ],
)
def test_subtracting_a_period_from_a_date(end: date, period: Period, expected: date) -> None:
    cal = calendar_for(_resolved()["jurisdiction"]["calendar"])  # type: ignore[index]
    assert subtract_from_date(end, period, cal) == expected


def test_the_buffer_alone_sets_the_due_instant() -> None:
    due = task_due(_resolved(), ticket_due_at=DUE, clock_started_at=START, task_within=None)
    assert due.due_at == datetime(2027, 2, 25, 22, 59, 59, 999999, tzinfo=UTC)
    assert "2 business days before it" in due.explanation[0].detail


def test_the_earlier_of_buffer_and_system_service_level_wins() -> None:
    sooner = task_due(
        _resolved(),
        ticket_due_at=DUE,
        clock_started_at=START,
        task_within={"value": 5, "unit": "business_days"},
    )
    assert sooner.due_at == datetime(2027, 2, 5, 22, 59, 59, 999999, tzinfo=UTC)
    assert sooner.explanation[-1].detail.startswith("the system's service level comes first")
    later = task_due(
        _resolved(),
        ticket_due_at=DUE,
        clock_started_at=START,
        task_within={"value": 2, "unit": "months"},
    )
    assert later.due_at == datetime(2027, 2, 25, 22, 59, 59, 999999, tzinfo=UTC)
    assert later.explanation[-1].detail.startswith("the buffer comes first")


def test_hours_count_on_the_utc_timeline() -> None:
    due = task_due(
        _resolved(buffer={"value": 48, "unit": "hours"}),
        ticket_due_at=DUE,
        clock_started_at=START,
        task_within={"value": 72, "unit": "hours"},
    )
    assert due.due_at == datetime(2027, 2, 3, 9, 0, tzinfo=UTC)


def test_no_fixed_period_anywhere_means_no_due_instant() -> None:
    due = task_due(_resolved(), ticket_due_at=None, clock_started_at=START, task_within=None)
    assert due.due_at is None
    assert "no fixed due date" in due.explanation[0].detail


def test_results_are_deleted_keep_results_for_after_closure() -> None:
    closed = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
    at, period = purge_after(_resolved(), closed)
    assert period == {"value": 30, "unit": "days"}
    assert at == datetime(2027, 3, 31, 21, 59, 59, 999999, tzinfo=UTC)  # CEST from 28 March
