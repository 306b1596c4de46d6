"""The reports' SQL. Every count, mean and percentile is computed by the database: one
statement per report, grouped in SQL, whatever the number of tickets or events.

Percentiles are PostgreSQL's `percentile_cont(p) WITHIN GROUP (ORDER BY x)`. SQLite has no
ordered-set aggregates: there the same interpolation is written with window functions —
rank the values in each group (row_number, count), take the values at rows floor(p·(n-1))
and the next one, and interpolate by the fraction — which is exactly what PostgreSQL's
percentile_cont computes (first_row = floor(p·(n-1)), proportion = p·(n-1) - first_row,
first + (second - first)·proportion), so both databases answer the same figures.

Elapsed days are seconds / 86,400: `EXTRACT(EPOCH FROM closed - received)` on PostgreSQL,
the difference of `julianday()`s on SQLite (which stores UTC text with millisecond-or-finer
fractions, so both agree far below the one decimal the reports show).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Date,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Subquery

from app.breaches.models import BreachEvent, BreachIncident, BreachNotification
from app.consent.models import ConsentAction, ConsentEvent, ConsentState
from app.core.db import is_postgres
from app.dsar.models import DsarStatus, DsarTicket, RejectionReason
from app.policies.models import Policy, PolicyVersion

# CCPA regulations §7102(a) request kinds, from this service's request types (DESIGN §15).
# No type here is a request to limit the use of sensitive personal information: `limit` is
# reported, always zero (schemas.CcpaMetrics says so).
CCPA_KINDS: Mapping[str, str] = {
    "access": "know",
    "erasure": "delete",
    "rectification": "correct",
    "opt_out": "opt_out",
}


@dataclass(frozen=True, slots=True)
class YearWindow:
    """One policy's calendar year as UTC instants (its timezone decides where a year starts)."""

    policy_key: str
    start: datetime
    end: datetime


def _days(session: AsyncSession, start: Any, end: Any) -> ColumnElement[Any]:
    """Elapsed days from `start` to `end`, as a double (seconds / 86,400)."""
    if is_postgres(session):
        return cast(func.extract("epoch", end - start), Float) / 86400.0
    return cast(func.julianday(end) - func.julianday(start), Float)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


def _percentiles(
    session: AsyncSession,
    base: Subquery,
    groups: Sequence[str],
    value: str,
    wanted: Mapping[str, float],
) -> Subquery | dict[str, ColumnElement[Any]]:
    """PostgreSQL: the percentile_cont aggregates, to select beside the counts over `base`.
    SQLite: a subquery with the group columns and one column per percentile, to join."""
    v = base.c[value]
    if is_postgres(session):
        return {
            name: func.percentile_cont(p).within_group(v.asc()).label(name)
            for name, p in wanted.items()
        }
    parts = [base.c[g] for g in groups]
    ranked = (
        select(
            *parts,
            v.label("v"),
            (func.row_number().over(partition_by=parts or None, order_by=v) - 1).label("rn"),
            func.count().over(partition_by=parts or None).label("n"),
        )
        .where(v.is_not(None))
        .subquery("ranked")
    )
    cols: list[ColumnElement[Any]] = [ranked.c[g] for g in groups]
    for name, p in wanted.items():
        position = (ranked.c.n - 1) * literal(p, Float)
        first = cast(position, Integer)  # positions are >= 0: truncation is floor
        lo = func.max(case((ranked.c.rn == first, ranked.c.v)))
        hi = func.max(case((ranked.c.rn == first + 1, ranked.c.v)))
        whole = (func.max(ranked.c.n) - 1) * literal(p, Float)
        fraction = whole - cast(whole, Integer)
        cols.append((lo + fraction * (func.coalesce(hi, lo) - lo)).label(name))
    return select(*cols).group_by(*[ranked.c[g] for g in groups]).subquery("pct")


async def _grouped(
    session: AsyncSession,
    base: Subquery,
    groups: Sequence[str],
    counts: Mapping[str, ColumnElement[Any]],
    value: str,
    wanted: Mapping[str, float],
    order: bool = True,
) -> Sequence[Row[Any]]:
    """SELECT the groups, `counts` (aggregates over `base`), avg(value) as `mean` and the
    percentiles in `wanted`, GROUP BY the groups."""
    group_cols = [base.c[g] for g in groups]
    aggregates = [expr.label(name) for name, expr in counts.items()]
    mean = func.avg(base.c[value]).label("mean")
    pct = _percentiles(session, base, groups, value, wanted)
    if isinstance(pct, dict):
        stmt: Select[Any] = select(*group_cols, *aggregates, mean, *pct.values()).group_by(
            *group_cols
        )
    else:
        main = select(*group_cols, *aggregates, mean).group_by(*group_cols).subquery("main")
        on = and_(true(), *[main.c[g] == pct.c[g] for g in groups])
        stmt = select(main, *[pct.c[name] for name in wanted]).select_from(main.outerjoin(pct, on))
        group_cols = [main.c[g] for g in groups]
    if order and group_cols:
        stmt = stmt.order_by(*group_cols)
    rows: Sequence[Row[Any]] = (await session.execute(stmt)).all()
    return rows


def _regimes(tenant: str) -> Subquery:
    """(policy_key, version, regime) of the tenant's policy versions: a ticket's regime is the
    one of the version it was recorded under."""
    return (
        select(
            PolicyVersion.policy_key,
            PolicyVersion.version,
            PolicyVersion.resolved[("jurisdiction", "regime")].as_string().label("regime"),
        )
        .where(PolicyVersion.tenant == tenant)
        .subquery("pv")
    )


class ReportsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---- policies -------------------------------------------------------------------------

    async def latest_versions(self, tenant: str, policy_key: str | None) -> Sequence[PolicyVersion]:
        """The latest published version of each of the tenant's policies (or of one)."""
        stmt = (
            select(PolicyVersion)
            .join(Policy, Policy.id == PolicyVersion.policy_id)
            .where(
                Policy.tenant == tenant,
                PolicyVersion.version == Policy.latest_version,
            )
            .order_by(Policy.key)
        )
        if policy_key is not None:
            stmt = stmt.where(Policy.key == policy_key)
        return (await self.session.scalars(stmt)).all()

    # ---- DSAR -----------------------------------------------------------------------------

    async def dsar(
        self,
        tenant: str,
        *,
        start: datetime,
        end: datetime,
        now: datetime,
        policy_key: str | None,
        group_by: Sequence[str],
    ) -> Sequence[Row[Any]]:
        t = DsarTicket
        pv = _regimes(tenant)
        dims: dict[str, Any] = {
            "regime": pv.c.regime,
            "type": t.type,
            "policy": t.policy_key,
        }
        completed = t.status == DsarStatus.completed
        base = (
            select(
                *[dims[g].label(g) for g in group_by],
                t.status,
                t.is_open,
                t.due_at,
                t.due_sort,
                t.closed_at,
                case((completed, _days(self.session, t.received_at, t.closed_at))).label("days"),
            )
            .join(pv, and_(pv.c.policy_key == t.policy_key, pv.c.version == t.policy_version))
            .where(t.tenant == tenant, t.received_at >= start, t.received_at < end)
        )
        if policy_key is not None:
            base = base.where(t.policy_key == policy_key)
        b = base.subquery("base")
        done = b.c.status == DsarStatus.completed
        counts = {
            "received": func.count(),
            "completed": _count(done),
            "completed_on_time": _count(
                and_(done, or_(b.c.due_at.is_(None), b.c.closed_at <= b.c.due_at))
            ),
            "completed_late": _count(
                and_(done, b.c.due_at.is_not(None), b.c.closed_at > b.c.due_at)
            ),
            "rejected": _count(b.c.status == DsarStatus.rejected),
            "withdrawn": _count(b.c.status == DsarStatus.withdrawn),
            "open": _count(b.c.is_open.is_(True)),
            # as the list's sla=overdue: due_sort is due_at, or the far future without one
            "overdue": _count(and_(b.c.is_open.is_(True), b.c.due_sort < now)),
        }
        return await _grouped(
            self.session, b, group_by, counts, "days", {"median": 0.5, "p90": 0.9}
        )

    # ---- CCPA -----------------------------------------------------------------------------

    async def ccpa(self, tenant: str, windows: Sequence[YearWindow]) -> Sequence[Row[Any]]:
        t = DsarTicket
        if not windows:
            return []
        kind = case(*[(t.type == k, literal(v)) for k, v in CCPA_KINDS.items()])
        answered = t.status.in_([DsarStatus.completed, DsarStatus.rejected])
        in_year = or_(
            false(),
            *[
                and_(t.policy_key == w.policy_key, t.received_at >= w.start, t.received_at < w.end)
                for w in windows
            ],
        )
        b = (
            select(
                kind.label("kind"),
                t.status,
                t.status_reason_code.label("code"),
                case((answered, _days(self.session, t.received_at, t.closed_at))).label("days"),
            )
            .where(t.tenant == tenant, t.type.in_(list(CCPA_KINDS)), in_year)
            .subquery("base")
        )
        rejected = b.c.status == DsarStatus.rejected
        counts: dict[str, ColumnElement[Any]] = {
            "received": func.count(),
            "complied": _count(b.c.status == DsarStatus.completed),
            "denied": _count(rejected),
            "denied_unspecified": _count(and_(rejected, b.c.code.is_(None))),
        }
        for code in RejectionReason:
            counts[f"denied_{code.value}"] = _count(and_(rejected, b.c.code == code))
        return await _grouped(self.session, b, ["kind"], counts, "days", {"median": 0.5})

    # ---- consent --------------------------------------------------------------------------

    def _bucket(self, interval: str) -> ColumnElement[Any]:
        """The UTC day, ISO week (from Monday) or month an event falls in, as a date."""
        at = ConsentEvent.occurred_at
        if is_postgres(self.session):
            return cast(func.date_trunc(interval, func.timezone("UTC", at)), Date)
        # stored as UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
        if interval == "day":
            return func.date(at)
        if interval == "month":
            return func.strftime("%Y-%m-01", at)
        return func.date(at, "-6 days", "weekday 1")  # the Monday on or before

    async def consent_counts(
        self,
        tenant: str,
        *,
        start: datetime,
        end: datetime,
        interval: str,
        policy_key: str | None,
    ) -> Sequence[Row[Any]]:
        e = ConsentEvent
        bucket = self._bucket(interval).label("bucket")
        by_request = e.gpc.is_(False)
        stmt = (
            select(
                e.policy_key,
                e.purpose,
                bucket,
                _count(and_(by_request, e.action == ConsentAction.granted)).label("granted"),
                _count(and_(by_request, e.action == ConsentAction.denied)).label("denied"),
                _count(and_(by_request, e.action == ConsentAction.withdrawn)).label("withdrawn"),
                _count(e.gpc.is_(True)).label("gpc_applied"),
            )
            .where(e.tenant == tenant, e.occurred_at >= start, e.occurred_at < end)
            .group_by(e.policy_key, e.purpose, bucket)
        )
        if policy_key is not None:
            stmt = stmt.where(e.policy_key == policy_key)
        return (await self.session.execute(stmt)).all()

    async def opted_in(
        self, tenant: str, *, now: datetime, policy_key: str | None
    ) -> Sequence[Row[str, str, int]]:
        s = ConsentState
        stmt = (
            select(s.policy_key, s.purpose, func.count().label("n"))
            .where(
                s.tenant == tenant,
                s.state == ConsentAction.granted,
                or_(s.expires_at.is_(None), s.expires_at > now),
            )
            .group_by(s.policy_key, s.purpose)
        )
        if policy_key is not None:
            stmt = stmt.where(s.policy_key == policy_key)
        return (await self.session.execute(stmt)).all()

    # ---- breaches -------------------------------------------------------------------------

    async def incidents(
        self, tenant: str, start: datetime | None, end: datetime | None
    ) -> tuple[Sequence[BreachIncident], Sequence[BreachNotification], Sequence[BreachEvent]]:
        """The incidents aware in [start, end), their notices and their history (3 reads)."""
        i = BreachIncident
        where: list[ColumnElement[bool]] = [i.tenant == tenant]
        if start is not None:
            where.append(i.aware_at >= start)
        if end is not None:
            where.append(i.aware_at < end)
        incidents = (
            await self.session.scalars(select(i).where(*where).order_by(i.aware_at, i.id))
        ).all()
        if not incidents:
            return incidents, [], []
        ids = select(i.id).where(*where).scalar_subquery()
        n = BreachNotification
        notices = (
            await self.session.scalars(
                select(n)
                .where(n.tenant == tenant, n.incident_id.in_(ids))
                .order_by(n.incident_id, n.sent_at, n.id)
            )
        ).all()
        ev = BreachEvent
        events = (
            await self.session.scalars(
                select(ev)
                .where(ev.tenant == tenant, ev.incident_id.in_(ids))
                .order_by(ev.incident_id, ev.version)
            )
        ).all()
        return incidents, notices, events
