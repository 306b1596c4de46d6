"""Policies and assertions shared by the pure rules tests (no database, no app)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from app.rules import regimes
from app.rules.explain import Step

ROOT = Path(__file__).resolve().parents[2]

# One place and time zone per regime, as the seeds use them.
PLACES: dict[str, tuple[str, str | None, str]] = {
    "gdpr": ("FR", None, "Europe/Paris"),
    "uk_gdpr": ("GB", "ENG", "Europe/London"),
    "ccpa_cpra": ("US", "CA", "America/Los_Angeles"),
    "pipeda": ("CA", "ON", "America/Toronto"),
    "quebec_law25": ("CA", "QC", "America/Toronto"),
    "bc_pipa": ("CA", "BC", "America/Vancouver"),
    "lgpd": ("BR", None, "America/Sao_Paulo"),
    "morocco_09_08": ("MA", None, "Africa/Casablanca"),
    "custom": ("DE", None, "Europe/Berlin"),
}


def body(regime: str, **extra: Any) -> dict[str, Any]:
    """A minimal declared policy for `regime`: everything else comes from the preset."""
    country, subdivision, tz = PLACES[regime]
    declared: dict[str, Any] = {
        "key": f"t-{regime.replace('_', '-')}",
        "title": f"{regime} test policy",
        "controller": {"name": "Test controller", "country": country},
        "jurisdiction": {
            "regime": regime,
            "country": country,
            "subdivision": subdivision,
            "timezone": tz,
        },
        "rights": [
            "access",
            "rectification",
            "erasure",
            "portability",
            "restriction",
            "objection",
            "opt_out",
        ],
    }
    for name, value in extra.items():
        if name == "calendar":
            declared["jurisdiction"]["calendar"] = value
        else:
            declared[name] = value
    return declared


def resolved(regime: str, **extra: Any) -> dict[str, Any]:
    return regimes.resolve(body(regime, **extra))


def example(name: str) -> dict[str, Any]:
    """A seed policy from examples/policies, resolved."""
    declared = json.loads((ROOT / "examples" / "policies" / f"{name}.json").read_text())
    return regimes.resolve(declared)


def spotrak_example() -> dict[str, Any]:
    from app.policies.schemas import SPOTRAK_EXAMPLE

    return regimes.resolve(copy.deepcopy(SPOTRAK_EXAMPLE))


def minimal_example() -> dict[str, Any]:
    from app.policies.schemas import MINIMAL_EXAMPLE

    return regimes.resolve(copy.deepcopy(MINIMAL_EXAMPLE))


def at(local: str, tz: tzinfo) -> datetime:
    """'2027-01-31 10:00' in `tz`, as an aware datetime."""
    return datetime.fromisoformat(local).replace(tzinfo=tz)


def end_of_day_utc(d: date, utc_offset_hours: int) -> str:
    """The last microsecond of local date `d` at a fixed UTC offset, in ISO form: the
    expected `due_at`, derived without the module (offsets are written in the test)."""
    local_midnight = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
    return (local_midnight - timedelta(hours=utc_offset_hours, microseconds=1)).isoformat()


def assert_rules(steps: Sequence[Step], expected: Iterable[str]) -> None:
    """Each expected rule name starts some step's `rule`, in this order."""
    rules = [s.rule for s in steps]
    position = 0
    for prefix in expected:
        for i in range(position, len(rules)):
            if rules[i].startswith(prefix):
                position = i + 1
                break
        else:
            raise AssertionError(f"no step named {prefix!r} after step {position} in {rules}")


def detail_text(steps: Sequence[Step]) -> str:
    return "\n".join(f"[{s.rule}] {s.detail}" for s in steps)


def as_dict(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return dict(mapping)
