"""Subject identifiers: what is accepted when one is recorded, so that every recorded subject
can be read, exported and erased through `/v1/subjects/{subject_id}/…`.

Ids come from other systems (e-mail addresses, URNs, paths, any Unicode) and travel in URL
paths percent-encoded (`tenant/42` as `tenant%2F42`); the subject routes take the rest of the
path as the id, `/` included. A few ids no URL can carry are refused when written (422), so
that nothing is recorded that could never be erased:

- `.` or `..` as a `/`-separated segment (`..`, `a/./b`, `../x`): clients and proxies
  normalise dot segments away (RFC 3986 §5.2.4), even percent-encoded ones;
- control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) and lone surrogates
  (not encodable in UTF-8);
- empty, or longer than 200 characters.

Reads and erasure take any id of 1 to 200 characters, so an id recorded before these rules
existed stays reachable.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field
from starlette.convertors import PathConvertor, register_url_convertor

SUBJECT_ID_MAX = 200

SUBJECT_ID_RULES = (
    "Any text of 1 to 200 characters (an e-mail address, a URN, a path, any Unicode), except "
    "control characters and `.` or `..` as a `/`-separated segment (no URL can carry those: "
    "refused with 422). In a path, percent-encode it (`tenant/42` → `tenant%2F42`)."
)

# says what is wrong without quoting `.`/`..`: a message holding the value sent is scrubbed
# (core.errors.validation_items), and these are values
_REFUSED = (
    "a subject id may hold neither control characters nor a dot segment (a `/`-separated part "
    "that is one or two full stops): no URL could carry it"
)


# Unicode category Cc (C0, DEL, C1) and the surrogates (Cs)
_UNCARRIABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def refusal(value: str) -> str | None:
    """Why `value` cannot be recorded as a subject id (length aside), or None."""
    if "." in value and any(segment in (".", "..") for segment in value.split("/")):
        return _REFUSED
    if _UNCARRIABLE.search(value):
        return _REFUSED
    return None


def _check(value: str) -> str:
    reason = refusal(value)
    if reason is not None:
        raise ValueError(reason)
    return value


SubjectIdIn = Annotated[
    str,
    Field(min_length=1, max_length=SUBJECT_ID_MAX, description=SUBJECT_ID_RULES),
    AfterValidator(_check),
]
"""A subject id as written (consent events, DSAR `subject.id`)."""


class SubjectIdConvertor(PathConvertor):
    """`{subject_id:subject_id}`: the rest of the path as the id, `/` included, like `:path`,
    and line breaks too (`:path` is `.*`, which stops at a newline, and a route that does not
    match is an undocumented 404). Reads take any id, so an id holding a control character
    (recorded before the write-time rules) is still reachable to be read and erased."""

    regex = r"[\s\S]*"


register_url_convertor("subject_id", SubjectIdConvertor())
