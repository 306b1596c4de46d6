"""Instants as the API takes them: ISO 8601 / RFC 3339 text with an offset, nothing else.

Pydantic's lax datetime parsing also reads a number, or a numeric string, as Unix seconds:
`?as_of=0.5` would be 1970-01-01T00:00:00.5Z and `"occurred_at": 0` a valid instant. Every
instant the API takes (query parameters and bodies) is `Instant`: text in the date-time form
the document declares (`format: date-time`), with its offset (`Z` or `±HH:MM`); anything else
is a 422.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

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


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
