"""Every report as CSV (`Accept: text/csv`): a header row, RFC 4180 quoting and CRLF line
ends by the standard library's csv module, UTF-8.

Cells: figures as in the JSON (numbers, `true`/`false`, ISO 8601 instants), null as an empty
cell, lists joined by "; ". Free text that a spreadsheet would run as a formula (starting
with = + - @, tab or CR) gets a leading apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Response

from app.reports.schemas import (
    BreachRegister,
    CcpaMetrics,
    ConsentReport,
    DsarReport,
    DsarReportRow,
    dump,
)

CSV_MEDIA_TYPE = "text/csv"
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _quality(part: str) -> tuple[str, float]:
    media, *params = (p.strip() for p in part.split(";"))
    q = 1.0
    for p in params:
        name, _, value = p.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return media.lower(), q


def wants_csv(accept: str | None) -> bool:
    """CSV when the client prefers text/csv to JSON. A wildcard alone, or a tie with an
    explicit application/json, answers JSON (the default)."""
    if not accept:
        return False
    csv_q = json_q = any_q = 0.0
    for part in accept.split(","):
        if not part.strip():
            continue
        media, q = _quality(part)
        if media in ("text/csv", "text/*"):
            csv_q = max(csv_q, q)
        elif media in ("application/json", "application/*"):
            json_q = max(json_q, q)
        elif media == "*/*":
            any_q = max(any_q, q)
    return csv_q > 0 and csv_q > json_q and csv_q >= any_q


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "; ".join(_cell(v) for v in value)
    text = str(value)
    if text.startswith(_FORMULA):
        return "'" + text
    return text


def render(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # QUOTE_MINIMAL: RFC 4180
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def csv_response(text: str, filename: str) -> Response:
    return Response(
        content=text.encode("utf-8"),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Vary": "Accept",
        },
    )


DSAR_COLUMNS = list(DsarReportRow.model_fields)


def dsar_csv(report: DsarReport) -> str:
    return render(DSAR_COLUMNS, ([r[c] for c in DSAR_COLUMNS] for r in dump(report)["rows"]))


def ccpa_csv(report: CcpaMetrics) -> str:
    data = dump(report)
    codes = list(next(iter(data["kinds"].values()))["denied"]["by_reason_code"])
    header = [
        "year",
        "kind",
        "received",
        "complied_in_whole_or_part",
        "denied_total",
        *[f"denied_{c}" for c in codes],
        "median_days_to_respond",
        "mean_days_to_respond",
    ]
    rows = (
        [
            data["year"],
            kind,
            m["received"],
            m["complied_in_whole_or_part"],
            m["denied"]["total"],
            *[m["denied"]["by_reason_code"][c] for c in codes],
            m["median_days_to_respond"],
            m["mean_days_to_respond"],
        ]
        for kind, m in data["kinds"].items()
    )
    return render(header, rows)


CONSENT_COLUMNS = [
    "policy_key",
    "purpose",
    "start",
    "end",
    "granted",
    "denied",
    "withdrawn",
    "gpc_applied",
    "opted_in_now",
]


def consent_csv(report: ConsentReport) -> str:
    rows = (
        [
            p["policy_key"],
            p["purpose"],
            i["start"],
            i["end"],
            i["granted"],
            i["denied"],
            i["withdrawn"],
            i["gpc_applied"],
            p["opted_in_now"],
        ]
        for p in dump(report)["purposes"]
        for i in p["intervals"]
    )
    return render(CONSENT_COLUMNS, rows)


INCIDENT_COLUMNS = [
    "id",
    "policy_key",
    "title",
    "occurred_at",
    "aware_at",
    "data_categories",
    "subjects_affected",
    "risk",
    "role",
    "status",
    "overdue",
    "risk_history",
    "closed_at",
    "closing_reason",
    "description",
]
NOTICE_COLUMNS = [
    "audience",
    "required",
    "due_at",
    "sent_at",
    "late",
    "late_by_hours",
    "late_reason",
    "reference",
]
BREACH_COLUMNS = [
    *["incident_id" if c == "id" else c for c in INCIDENT_COLUMNS],
    *[f"notice_{c}" for c in NOTICE_COLUMNS],
]


def _risk_history(changes: list[dict[str, Any]]) -> str:
    """ "<at> <from>→<to> (<reason>)", oldest first, "; " between them."""
    parts = []
    for c in changes:
        text = f"{c['at']} {c['from'] or ''}→{c['to']}"
        if c["reason"]:
            text += f" ({c['reason']})"
        parts.append(text)
    return "; ".join(parts)


def breaches_csv(report: BreachRegister) -> str:
    """One line per notice (the incident's facts repeated); an incident without any notice
    has one line with the notice cells empty."""

    def lines() -> Iterable[list[Any]]:
        for inc in dump(report)["incidents"]:
            facts = [
                _risk_history(inc["risk_history"]) if c == "risk_history" else inc[c]
                for c in INCIDENT_COLUMNS
            ]
            if not inc["notices"]:
                yield [*facts, *[None] * len(NOTICE_COLUMNS)]
            for n in inc["notices"]:
                yield [*facts, *[n[c] for c in NOTICE_COLUMNS]]

    return render(BREACH_COLUMNS, lines())
