"""How long the service keeps its own records (app/rules/records.py): a closed request's and a
finished retention task's, from the policy's `records.dsar_kept_for`, month-aware at the same
local time. Pure: table cases checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.rules.records import dsar_delete_after, retention_delete_after
from tests.rules.helpers import resolved


@pytest.mark.parametrize(
    ("finished", "records", "expected"),
    [
        pytest.param(
            # 10:00 CET + 24 months = 10:00 CET two years on
            datetime(2027, 2, 4, 9, 0, tzinfo=UTC),
            None,
            datetime(2029, 2, 4, 9, 0, tzinfo=UTC),
            id="default-P24M-11CCR7101",
        ),
        pytest.param(
            # 31 January + 1 month: no 31 February → 28 February, 10:00 Paris
            datetime(2027, 1, 31, 9, 0, tzinfo=UTC),
            {"dsar_kept_for": {"value": 1, "unit": "months"}},
            datetime(2027, 2, 28, 9, 0, tzinfo=UTC),
            id="P1M-month-end-clamp",
        ),
        pytest.param(
            # 10:00 CET in March + 1 month = 10:00 CEST in April (08:00Z): local time kept
            datetime(2027, 3, 3, 9, 0, tzinfo=UTC),
            {"dsar_kept_for": {"value": 1, "unit": "months"}},
            datetime(2027, 4, 3, 8, 0, tzinfo=UTC),
            id="P1M-across-spring-DST",
        ),
    ],
)
def test_a_finished_retention_task_is_kept_as_long_as_a_closed_request(
    finished: datetime, records: dict[str, object] | None, expected: datetime
) -> None:
    policy = resolved("gdpr", **({"records": records} if records else {}))
    at, step = retention_delete_after(policy, finished)
    assert at == expected
    # the same period as a request's record, counted from the task's finish
    assert dsar_delete_after(policy, finished)[0] == expected
    assert step.rule == ("policy promise" if records else "records.dsar_kept_for")
    assert step.source is None
    assert "after it finished (as long as the records of requests)" in step.detail
    assert f"deleted at {expected:%Y}" in step.detail
