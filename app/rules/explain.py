"""Explanations: ordered steps, each naming the rule it applied and where that rule comes from.

A step is data, not prose glued to a result: the API returns the list as is, and the DSAR
ticket stores it, so a person can check every date against its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

_UNIT_NAMES = {
    "hours": ("hour", "hours"),
    "days": ("day", "days"),
    "business_days": ("business day", "business days"),
    "weeks": ("week", "weeks"),
    "months": ("month", "months"),
    "years": ("year", "years"),
}
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True, slots=True)
class Step:
    """One step of an explanation.

    `rule` names the rule ("GDPR Art. 12(3)", "Reg. 1182/71 Art. 3(4)", "policy promise"),
    `source` is a URL or citation (None when the rule is the policy itself), `detail` is the
    sentence a person reads, with the concrete dates.
    """

    rule: str
    source: str | None
    detail: str

    def to_dict(self) -> dict[str, str | None]:
        return {"rule": self.rule, "source": self.source, "detail": self.detail}


def describe_period(period: Any, *, words: bool = False) -> str:
    """'1 month', '45 days', '10 business days' for a Period or its mapping; `words` spells
    small numbers ('one month')."""
    if period is None:
        return "no fixed period"
    if isinstance(period, Mapping):
        value, unit_name = int(period["value"]), str(period["unit"])
    else:
        value, unit_name = int(period.value), str(period.unit)
    singular, plural = _UNIT_NAMES.get(unit_name, (unit_name,) * 2)
    unit = singular if value == 1 else plural
    number = _NUMBER_WORDS[value] if words and value < len(_NUMBER_WORDS) else str(value)
    return f"{number} {unit}"


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def weekday(d: date) -> str:
    """English day name, independent of the process locale (strftime's %A is not)."""
    return _WEEKDAYS[d.weekday()]


def local_moment(instant: datetime, zone: tzinfo, zone_name: str) -> str:
    """'2027-01-31 10:00 Europe/Paris (2027-01-31T09:00:00Z)': what a person would read."""
    local = instant.astimezone(zone)
    utc = instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return f"{local:%Y-%m-%d %H:%M} {zone_name} ({utc})"


def utc_text(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def rule_name(source: str) -> str:
    """The short name at the head of a source string: 'GDPR Art. 12(3): one month …' → 'GDPR
    Art. 12(3)'; a policy's own promise is named 'policy promise'."""
    if source.startswith("policy promise"):
        return "policy promise"
    head, sep, _ = source.partition(": ")
    return head if sep else source
