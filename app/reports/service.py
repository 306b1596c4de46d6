"""The reports (DESIGN §15): validate the range, ask the repository (the database computes
every figure), shape the answer. Read-only: nothing is written, nothing committed."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.breaches.models import (
    Audience,
    BreachEvent,
    BreachIncident,
    BreachNotification,
    BreachRole,
)
from app.core.clock import Clock
from app.core.errors import NotFound, Unprocessable
from app.core.security import Principal
from app.dsar.models import RejectionReason
from app.reports.repository import CCPA_KINDS, ReportsRepository, YearWindow
from app.reports.schemas import (
    BreachRegister,
    CcpaDenied,
    CcpaKindMetrics,
    CcpaMetrics,
    ConsentIntervalCounts,
    ConsentPurposeReport,
    ConsentReport,
    DsarReport,
    DsarReportRow,
    RegisterEntry,
    RegisterNotice,
    RegisterRiskChange,
)
from app.rules.reporting import (
    MAX_RANGE_YEARS,
    intervals,
    too_long,
    year_before,
    year_bounds,
)

KINDS = ("know", "delete", "correct", "opt_out", "limit")
DENIAL_CODES = (*(c.value for c in RejectionReason), "unspecified")
CCPA_REGIME = "ccpa_cpra"
MIN_YEAR, MAX_YEAR = 1900, 9000  # far from datetime's and PostgreSQL's limits, offsets included
# YYYY-MM-DD, or an ISO 8601 instant that must carry an offset ('Z' or ±HH:MM; a '+' that
# arrived unencoded in a query string is a space, taken back as '+').
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(Z|z|[+\- ]\d{2}:?\d{2})?$"
)


class ReportRangeInvalid(Unprocessable):
    code = "report_range_invalid"


class ReportPolicyNotFound(NotFound):
    code = "policy_not_found"


def parse_bound(value: str, name: str) -> datetime:
    """`from`/`to`: a date (UTC midnight) or an instant with an offset; a naive one is 422."""
    loc: list[str | int] = ["query", name]
    text = value.strip()
    if text[:4].isdigit() and not MIN_YEAR <= int(text[:4]) <= MAX_YEAR:
        raise ReportRangeInvalid.at(loc, f"a year from {MIN_YEAR} to {MAX_YEAR}")
    if _DATE.match(text):
        try:
            d = date.fromisoformat(text)
        except ValueError:
            raise ReportRangeInvalid.at(loc, "not a valid date") from None
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    m = _INSTANT.match(text)
    if m is None:
        raise ReportRangeInvalid.at(
            loc, "expected a date (YYYY-MM-DD) or an ISO 8601 instant with an offset"
        )
    if m.group(2) is None:
        raise ReportRangeInvalid.at(
            loc, "an instant needs an offset (Z or +HH:MM; encode '+' as %2B)"
        )
    offset = m.group(2)
    if offset[0] == " ":
        offset = "+" + offset[1:]
    try:
        parsed = datetime.fromisoformat(m.group(1).replace(" ", "T") + offset.upper())
    except ValueError:
        raise ReportRangeInvalid.at(loc, "not a valid instant") from None
    return parsed.astimezone(UTC)


def check_range(start: datetime, end: datetime) -> None:
    if start > end:
        raise ReportRangeInvalid(
            "`from` is after `to`",
            errors=[{"loc": ["query", "from"], "msg": "after `to`", "type": "value_error"}],
        )
    if too_long(start, end):
        raise ReportRangeInvalid(
            f"The range is longer than {MAX_RANGE_YEARS} years",
            errors=[
                {
                    "loc": ["query", "to"],
                    "msg": f"at most {MAX_RANGE_YEARS} years after `from`",
                    "type": "value_error",
                }
            ],
        )


def one_decimal(value: Any) -> float | None:
    """Days to one decimal, half away from zero. The database's double is first cut to
    nine decimals so that the last bits (which may differ between PostgreSQL and SQLite)
    never decide a rounding."""
    if value is None:
        return None
    exact = Decimal(repr(float(value))).quantize(Decimal("1e-9"), rounding=ROUND_HALF_UP)
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _hours_late(due: datetime | None, at: datetime) -> float | None:
    if due is None or at <= due:
        return None
    return one_decimal((at - due).total_seconds() / 3600)


class ReportsService:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.repo = ReportsRepository(session)
        self.clock = clock

    def _range(self, start: str | None, end: str | None) -> tuple[datetime, datetime]:
        """Defaults: `to` now, `from` one year before `to`."""
        to = parse_bound(end, "to") if end is not None else self.clock()
        frm = parse_bound(start, "from") if start is not None else year_before(to)
        check_range(frm, to)
        return frm, to

    async def _policy_exists(self, who: Principal, policy_key: str | None) -> None:
        if policy_key is not None and not await self.repo.latest_versions(who.tenant, policy_key):
            raise ReportPolicyNotFound(f"No policy '{policy_key}' in this tenant")

    # ---- DSAR ---------------------------------------------------------------------------

    async def dsar(
        self,
        who: Principal,
        *,
        start: str | None,
        end: str | None,
        policy_key: str | None,
        group_by: Sequence[str],
    ) -> DsarReport:
        frm, to = self._range(start, end)
        now = self.clock()
        await self._policy_exists(who, policy_key)
        rows = await self.repo.dsar(
            who.tenant, start=frm, end=to, now=now, policy_key=policy_key, group_by=group_by
        )
        out = []
        for r in rows:
            m = r._mapping
            if not m["received"]:  # no group: one row, empty when nothing was received
                continue
            completed = int(m["completed"])
            on_time = int(m["completed_on_time"])
            out.append(
                DsarReportRow(
                    regime=m.get("regime"),
                    type=m.get("type"),
                    policy_key=m.get("policy"),
                    received=int(m["received"]),
                    completed=completed,
                    completed_on_time=on_time,
                    completed_late=int(m["completed_late"]),
                    rejected=int(m["rejected"]),
                    withdrawn=int(m["withdrawn"]),
                    open=int(m["open"]),
                    overdue=int(m["overdue"]),
                    median_days_to_close=one_decimal(m["median"]),
                    mean_days_to_close=one_decimal(m["mean"]),
                    p90_days_to_close=one_decimal(m["p90"]),
                    on_time_rate=(on_time / completed) if completed else None,
                )
            )
        return DsarReport(
            from_=frm,
            to=to,
            as_of=now,
            policy_key=policy_key,
            group_by=list(group_by),
            rows=out,
        )

    # ---- CCPA ---------------------------------------------------------------------------

    async def ccpa(
        self, who: Principal, *, year: int | None, policy_key: str | None
    ) -> CcpaMetrics:
        now = self.clock()
        year = year if year is not None else now.year - 1  # §7102: the previous calendar year
        versions = await self.repo.latest_versions(who.tenant, policy_key)
        if policy_key is not None and not versions:
            raise ReportPolicyNotFound(f"No policy '{policy_key}' in this tenant")
        if policy_key is None:
            versions = [v for v in versions if v.resolved["jurisdiction"]["regime"] == CCPA_REGIME]
        windows = [
            YearWindow(v.policy_key, *year_bounds(year, v.resolved["jurisdiction"]["timezone"]))
            for v in versions
        ]
        rows = await self.repo.ccpa(who.tenant, windows)
        by_kind = {r._mapping["kind"]: r._mapping for r in rows}
        kinds: dict[str, CcpaKindMetrics] = {}
        for kind in KINDS:
            m = by_kind.get(kind)
            kinds[kind] = CcpaKindMetrics(
                received=int(m["received"]) if m else 0,
                complied_in_whole_or_part=int(m["complied"]) if m else 0,
                denied=CcpaDenied(
                    total=int(m["denied"]) if m else 0,
                    by_reason_code={
                        code: int(m[f"denied_{code}"]) if m else 0 for code in DENIAL_CODES
                    },
                ),
                median_days_to_respond=one_decimal(m["median"]) if m else None,
                mean_days_to_respond=one_decimal(m["mean"]) if m else None,
            )
        assert set(CCPA_KINDS.values()) <= set(KINDS)
        return CcpaMetrics(
            year=year,
            policy_keys=[v.policy_key for v in versions],
            kinds=kinds,
        )

    # ---- consent ------------------------------------------------------------------------

    async def consent(
        self,
        who: Principal,
        *,
        start: str | None,
        end: str | None,
        interval: str,
        policy_key: str | None,
    ) -> ConsentReport:
        frm, to = self._range(start, end)
        now = self.clock()
        versions = await self.repo.latest_versions(who.tenant, policy_key)
        if policy_key is not None and not versions:
            raise ReportPolicyNotFound(f"No policy '{policy_key}' in this tenant")
        counts = await self.repo.consent_counts(
            who.tenant, start=frm, end=to, interval=interval, policy_key=policy_key
        )
        opted = await self.repo.opted_in(who.tenant, now=now, policy_key=policy_key)
        # every purpose the policies define now, and any other that has data
        keys: dict[tuple[str, str], None] = {}
        for v in versions:
            for p in v.resolved.get("consent_purposes") or ():
                keys[(v.policy_key, str(p["key"]))] = None
        cells: dict[tuple[str, str], dict[date, Any]] = defaultdict(dict)
        for r in counts:
            m = r._mapping
            bucket = m["bucket"]
            day = bucket if isinstance(bucket, date) else date.fromisoformat(str(bucket)[:10])
            cells[(m["policy_key"], m["purpose"])][day] = m
            keys.setdefault((m["policy_key"], m["purpose"]), None)
        opted_in = {
            (r._mapping["policy_key"], r._mapping["purpose"]): int(r._mapping["n"]) for r in opted
        }
        for key in opted_in:
            keys.setdefault(key, None)
        spans = intervals(frm, to, interval)
        purposes = []
        for key in sorted(keys):
            mine = cells.get(key, {})
            rows = []
            for first, s, e in spans:
                c = mine.get(first)
                rows.append(
                    ConsentIntervalCounts(
                        start=s,
                        end=e,
                        granted=int(c["granted"]) if c else 0,
                        denied=int(c["denied"]) if c else 0,
                        withdrawn=int(c["withdrawn"]) if c else 0,
                        gpc_applied=int(c["gpc_applied"]) if c else 0,
                    )
                )
            purposes.append(
                ConsentPurposeReport(
                    policy_key=key[0],
                    purpose=key[1],
                    opted_in_now=opted_in.get(key, 0),
                    intervals=rows,
                )
            )
        return ConsentReport(
            from_=frm,
            to=to,
            as_of=now,
            interval=interval,
            policy_key=policy_key,
            purposes=purposes,
        )

    # ---- breaches -----------------------------------------------------------------------

    async def breaches(
        self, who: Principal, *, start: str | None, end: str | None
    ) -> BreachRegister:
        frm = parse_bound(start, "from") if start is not None else None
        to = parse_bound(end, "to") if end is not None else None
        if frm is not None and to is not None:
            check_range(frm, to)
        now = self.clock()
        incidents, notices, events = await self.repo.incidents(who.tenant, frm, to)
        sent: dict[Any, list[BreachNotification]] = defaultdict(list)
        for n in notices:
            sent[n.incident_id].append(n)
        history: dict[Any, list[BreachEvent]] = defaultdict(list)
        for e in events:
            history[e.incident_id].append(e)
        return BreachRegister(
            from_=frm,
            to=to,
            as_of=now,
            incidents=[
                _entry(i, sent.get(i.id, []), history.get(i.id, []), now) for i in incidents
            ],
        )


def _entry(
    incident: BreachIncident,
    notices: Sequence[BreachNotification],
    events: Sequence[BreachEvent],
    now: datetime,
) -> RegisterEntry:
    risks = []
    for e in events:
        change = (e.changes or {}).get("risk")
        if change is not None:
            risks.append(
                RegisterRiskChange(
                    at=e.at,
                    actor=e.actor,
                    from_=change.get("from"),
                    to=change["to"],
                    reason=e.reason,
                )
            )
    listed: list[RegisterNotice] = []
    for audience in Audience:
        if audience == Audience.controller and incident.role == BreachRole.controller:
            continue
        required = bool(getattr(incident, f"{audience.value}_notification_required"))
        due: datetime | None = getattr(incident, f"{audience.value}_due_at")
        mine = [n for n in notices if n.audience == audience]
        for n in mine:
            listed.append(
                RegisterNotice(
                    audience=audience,
                    required=required,
                    due_at=n.due_at,
                    sent_at=n.sent_at,
                    late=n.late,
                    late_by_hours=_hours_late(n.due_at, n.sent_at),
                    late_reason=n.late_reason,
                    reference=n.reference,
                )
            )
        if required and not mine:
            listed.append(
                RegisterNotice(
                    audience=audience,
                    required=True,
                    due_at=due,
                    sent_at=None,
                    late=due is not None and now > due,
                    late_by_hours=_hours_late(due, now),
                    late_reason=None,
                    reference=None,
                )
            )
    return RegisterEntry(
        id=incident.id,
        policy_key=incident.policy_key,
        title=incident.title,
        occurred_at=incident.occurred_at,
        aware_at=incident.aware_at,
        data_categories=list(incident.data_categories),
        subjects_affected=incident.subjects_affected,
        risk=incident.risk,
        role=incident.role,
        status=incident.status,
        description=incident.description,
        overdue=incident.next_due_at is not None and incident.next_due_at < now,
        risk_history=risks,
        notices=listed,
        closed_at=incident.closed_at,
        closing_reason=incident.closing_reason,
    )
