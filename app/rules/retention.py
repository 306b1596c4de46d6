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

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from app.rules.calendars import calendar_for
from app.rules.explain import Step, describe_period
from app.rules.periods import Period, add_period, zone

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


def evaluate_retention(
    resolved: Mapping[str, Any], records: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """`records`: mappings with `category`, `collected_at` (aware datetime) and optional
    `events` (name → aware datetime). Returns `{"results": [...], "explanations": {...}}` with
    one result per record, in order."""
    jur = resolved["jurisdiction"]
    tz_name = jur["timezone"]
    tz = zone(tz_name)
    calendar = calendar_for(jur["calendar"])
    rules = {r["category"]: r for r in resolved.get("retention") or []}
    periods = {c: Period.of(r.get("keep_for")) for c, r in rules.items()}
    explanations: dict[str, list[dict[str, Any]]] = {}
    results: list[dict[str, Any]] = []
    append = results.append
    for record in records:
        category = record["category"]
        rule = rules.get(category)
        if rule is None:
            append(_unknown(category, rules))
            continue
        period = periods[category]
        trigger = rule["starts_at"]
        expires_at: datetime | None = None
        if period is None:
            state = "indefinite"
        else:
            at = (
                record["collected_at"]
                if trigger == "collected"
                else (record.get("events") or {}).get(trigger)
            )
            if at is None:
                state = "not_started"
            else:
                state = "running"
                expires_at = (
                    at.astimezone(UTC)
                    if period.value == 0
                    else add_period(at, period, tz, calendar)
                )
        ref = f"{category}:{state}"
        if ref not in explanations:
            explanations[ref] = _explanation(rule, state, tz_name)
        append(
            {
                "category": category,
                "state": state,
                "expires_at": expires_at,
                "then": rule["then"],
                "explanation_ref": ref,
            }
        )
    return {"results": results, "explanations": explanations}
