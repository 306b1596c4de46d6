"""Instants as the API takes them and as it gives them out.

Taken (`Instant`): ISO 8601 / RFC 3339 text with an offset, nothing else. Pydantic's lax
datetime parsing also reads a number, or a numeric string, as Unix seconds: `?as_of=0.5` would
be 1970-01-01T00:00:00.5Z and `"occurred_at": 0` a valid instant. Every instant the API takes
(query parameters and bodies) is `Instant`: text in the date-time form the document declares
(`format: date-time`), with its offset (`Z` or `±HH:MM`); anything else is a 422.

Given (`InstantOut`): one text form for every instant the API gives out, RFC 3339 in UTC with
`Z` (`2027-01-31T09:00:00Z`, fractional seconds only when there are some), in response bodies,
webhook payloads, audit and timeline data, and problem members alike. Response models
annotate instants as `InstantOut`: whatever offset a value carries (an input echoed back, a
local deadline), it is written in UTC. Hand-built JSON uses `utc_text` and `json_ready`, which
produce the same text as pydantic does for a UTC datetime.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, PlainSerializer

# date, `T` (or `t` / a space, as RFC 3339 §5.6 allows), time with optional seconds and
# fraction, optional offset (its absence is refused by AwareDatetime with its own message)
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


def _iso_text(value: Any) -> Any:
    if isinstance(value, datetime):  # built in code, not parsed from a request
        return value
    if not isinstance(value, str) or _DATE_TIME.fullmatch(value) is None:
        raise ValueError(
            "an instant must be ISO 8601 text with an offset, e.g. 2027-03-01T10:15:00Z"
        )
    return value


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC (a naive value is taken as UTC: that is how it is stored)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    return as_utc(value).isoformat().removesuffix("+00:00") + "Z"


def json_ready(value: Any) -> Any:
    """An instant as `utc_text`, a date as `YYYY-MM-DD`, anything else unchanged."""
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
# Serialised as a datetime (so the JSON schema stays `string`/`date-time`), after moving to UTC.
InstantOut = Annotated[datetime, PlainSerializer(as_utc, return_type=datetime)]
