"""Retention expiry per record (DESIGN §4-§5, issue 3 item 5) and when a policy version takes
effect (DESIGN §4: version 1 at publication; later versions after the change notice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.rules import deadlines
from app.rules.retention import evaluate_retention
from tests.rules.helpers import example, resolved, spotrak_example

PARIS = ZoneInfo("Europe/Paris")
VANCOUVER = ZoneInfo("America/Vancouver")


def test_each_record_gets_its_result_in_order() -> None:
    policy = spotrak_example()
    collected = datetime(2026, 1, 31, 10, 15, tzinfo=PARIS)
    ended = datetime(2026, 6, 30, 18, 0, tzinfo=PARIS)
    records = [
        {"category": "technical_logs", "collected_at": collected},
        {"category": "business_data", "collected_at": collected},
        {
            "category": "business_data",
            "collected_at": collected,
            "events": {"contract_ended": ended},
        },
        {"category": "no_such_category", "collected_at": collected},
        {"category": "technical_logs", "collected_at": collected + timedelta(days=1)},
    ]
    out = evaluate_retention(policy, records)
    results = out["results"]
    assert [r["category"] for r in results] == [r["category"] for r in records]

    # 12 months from 31 Jan 2026 10:15 CET: 31 Jan 2027 10:15 CET = 09:15Z
    assert results[0]["state"] == "running"
    assert results[0]["expires_at"] == datetime(2027, 1, 31, 9, 15, tzinfo=UTC)
    assert results[0]["then"] == "delete"
    # the trigger event has not happened: a state, not an error
    assert results[1]["state"] == "not_started"
    assert results[1]["expires_at"] is None
    # keep_for 0: at the trigger itself
    assert results[2]["state"] == "running"
    assert results[2]["expires_at"] == ended.astimezone(UTC)
    assert results[2]["then"] == "archive"
    # an unknown category is a problem in its own slot
    assert results[3]["problem"]["code"] == "retention_unknown_category"
    assert results[3]["problem"]["status"] == 422
    assert "technical_logs" in results[3]["problem"]["detail"]
    # 1 Feb 2026 + 12 months = 1 Feb 2027
    assert results[4]["expires_at"] == datetime(2027, 2, 1, 9, 15, tzinfo=UTC)

    # explanations are shared by reference: one text per category and state
    refs = [r.get("explanation_ref") for r in results]
    assert refs == [
        "technical_logs:running",
        "business_data:not_started",
        "business_data:running",
        None,
        "technical_logs:running",
    ]
    assert set(out["explanations"]) == {r for r in refs if r}
    not_started = " ".join(s["detail"] for s in out["explanations"]["business_data:not_started"])
    assert "has not happened" in not_started
    zero = " ".join(s["detail"] for s in out["explanations"]["business_data:running"])
    assert "keep_for is 0" in zero


def test_indefinite_retention_has_no_expiry() -> None:
    protrack = example("protrack")
    out = evaluate_retention(
        protrack, [{"category": "comments", "collected_at": datetime(2026, 1, 1, tzinfo=UTC)}]
    )
    (result,) = out["results"]
    assert result["state"] == "indefinite"
    assert result["expires_at"] is None
    assert "indefinitely" in str(out["explanations"]["comments:indefinite"])


@pytest.mark.parametrize(
    ("collected", "keep", "expires"),
    [
        # the month clamp: 29 Feb 2028 + 12 months = 28 Feb 2029, same wall clock (CET)
        pytest.param(
            datetime(2028, 2, 29, 10, tzinfo=PARIS),
            {"value": 12, "unit": "months"},
            datetime(2029, 2, 28, 9, tzinfo=UTC),
            id="months-clamp-leap-day",
        ),
        # across DST: collected in summer (CEST), expires in winter (CET), same 10:00 local
        pytest.param(
            datetime(2026, 7, 31, 10, tzinfo=PARIS),
            {"value": 6, "unit": "months"},
            datetime(2027, 1, 31, 9, tzinfo=UTC),
            id="months-keep-wall-clock-across-dst",
        ),
        # no roll-forward: 3 Oct 2026 is a Saturday and the expiry stays there
        pytest.param(
            datetime(2026, 9, 3, 10, tzinfo=PARIS),
            {"value": 1, "unit": "months"},
            datetime(2026, 10, 3, 8, tzinfo=UTC),
            id="no-roll-forward-on-a-saturday",
        ),
        # hours on the UTC timeline, across the autumn change
        pytest.param(
            datetime(2026, 10, 24, 12, tzinfo=PARIS),
            {"value": 48, "unit": "hours"},
            datetime(2026, 10, 26, 10, tzinfo=UTC),
            id="hours-across-autumn-dst",
        ),
        pytest.param(
            datetime(2026, 10, 24, 12, tzinfo=PARIS),
            {"value": 0, "unit": "days"},
            datetime(2026, 10, 24, 10, tzinfo=UTC),
            id="zero-is-the-trigger",
        ),
    ],
)
def test_retention_expiry(collected: datetime, keep: dict[str, Any], expires: datetime) -> None:
    policy = resolved(
        "gdpr",
        retention=[{"category": "logs", "keep_for": keep, "starts_at": "collected"}],
    )
    (result,) = evaluate_retention(policy, [{"category": "logs", "collected_at": collected}])[
        "results"
    ]
    assert result["expires_at"] == expires
    assert result["expires_at"].tzinfo is UTC


def test_custom_trigger_event() -> None:
    policy = resolved(
        "bc_pipa",
        retention=[
            {
                "category": "tickets",
                "keep_for": {"value": 2, "unit": "years"},
                "starts_at": "ticket_closed",
                "then": "anonymize",
            }
        ],
    )
    closed = datetime(2026, 3, 1, 9, tzinfo=VANCOUVER)
    out = evaluate_retention(
        policy,
        [
            {"category": "tickets", "collected_at": closed, "events": {"ticket_closed": closed}},
            {"category": "tickets", "collected_at": closed, "events": {"other": closed}},
        ],
    )
    first, second = out["results"]
    assert first["expires_at"] == datetime(2028, 3, 1, 17, tzinfo=UTC)  # PST -8
    assert first["then"] == "anonymize"
    assert second["state"] == "not_started"


def test_retention_accepts_a_generator_of_records() -> None:
    policy = spotrak_example()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    records = ({"category": "technical_logs", "collected_at": at} for _ in range(3))
    assert len(evaluate_retention(policy, records)["results"]) == 3


# ---- effective dates -----------------------------------------------------------------------


def test_first_version_is_in_force_from_its_publication() -> None:
    published = datetime(2026, 3, 20, 10, tzinfo=PARIS)
    at = deadlines.effective_at(spotrak_example(), published_at=published, is_first_version=True)
    assert at == datetime(2026, 3, 20, 9, tzinfo=UTC)
    assert at.tzinfo is UTC


def test_later_version_waits_for_the_change_notice() -> None:
    """Spotrak gives 15 days' notice (RULES §8): published Friday 20 March 2026 10:00 CET →
    Saturday 4 April 10:00 CEST (08:00Z). A notice period is not a deadline: no roll."""
    published = datetime(2026, 3, 20, 10, tzinfo=PARIS)
    at = deadlines.effective_at(spotrak_example(), published_at=published, is_first_version=False)
    assert at == datetime(2026, 4, 4, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("effective_from", "expected"),
    [
        pytest.param(
            "2026-05-01T00:00:00+02:00",
            datetime(2026, 4, 30, 22, tzinfo=UTC),
            id="later-effective-from-wins",
        ),
        pytest.param(
            "2026-03-25T00:00:00+01:00",
            datetime(2026, 4, 4, 8, tzinfo=UTC),
            id="earlier-effective-from-cannot-shorten-the-notice",
        ),
    ],
)
def test_effective_from(effective_from: str, expected: datetime) -> None:
    from app.policies.schemas import SPOTRAK_EXAMPLE
    from app.rules import regimes

    policy = regimes.resolve({**SPOTRAK_EXAMPLE, "effective_from": effective_from})
    at = deadlines.effective_at(
        policy, published_at=datetime(2026, 3, 20, 10, tzinfo=PARIS), is_first_version=False
    )
    assert at == expected


def test_no_change_notice_means_at_publication() -> None:
    published = datetime(2026, 3, 20, 10, tzinfo=PARIS)
    at = deadlines.effective_at(example("calitrak"), published_at=published, is_first_version=False)
    assert at == published.astimezone(UTC)
