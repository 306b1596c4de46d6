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
    text,
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
        # date_part is double precision (EXTRACT is numeric since PostgreSQL 14, far slower)
        return func.date_part("epoch", end - start) / 86400.0
    return cast(func.julianday(end) - func.julianday(start), Float)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count().filter(condition)


def _percentiles(
    session: AsyncSession, values: Subquery, groups: Sequence[str], wanted: Mapping[str, float]
) -> Subquery:
    """The group columns and one column per percentile in `wanted`, over `values` (the group
    columns and `v`, one row per value, no NULLs)."""
    parts = [values.c[g] for g in groups]
    v = values.c.v
    if is_postgres(session):
        return (
            select(
                *parts,
                *[
                    func.percentile_cont(p).within_group(v.asc()).label(name)
                    for name, p in wanted.items()
                ],
            )
            .group_by(*parts)
            .subquery("pct")
        )
    ranked = select(
        *parts,
        v,
        (func.row_number().over(partition_by=parts or None, order_by=v) - 1).label("rn"),
        func.count().over(partition_by=parts or None).label("n"),
    ).subquery("ranked")
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


async def _tune(session: AsyncSession) -> None:
    """PostgreSQL, this transaction only: room to sort a million values in memory, and no JIT
    (compiling the expressions costs more than it saves on a report of a few seconds)."""
    if is_postgres(session):
        await session.execute(text("SET LOCAL work_mem = '64MB'"))
        await session.execute(text("SET LOCAL jit = off"))


async def _report(
    session: AsyncSession,
    totals: Select[Any],
    values: Select[Any],
    groups: Sequence[str],
    wanted: Mapping[str, float],
) -> Sequence[Row[Any]]:
    """`totals` (grouped by `groups`: the counts and `mean`) beside the percentiles of
    `values`, matched on the groups, in group order.

    The counts come from a first aggregation by narrow keys (a hash aggregate, parallel on
    PostgreSQL) re-summed by the report's groups; only the values a percentile needs are
    sorted."""
    await _tune(session)
    main = totals.subquery("main")
    pct = _percentiles(session, values.subquery("vals"), groups, wanted)
    on = and_(true(), *[main.c[g] == pct.c[g] for g in groups])
    stmt = select(main, *[pct.c[name] for name in wanted]).select_from(main.outerjoin(pct, on))
    if groups:
        stmt = stmt.order_by(*[main.c[g] for g in groups])
    rows: Sequence[Row[Any]] = (await session.execute(stmt)).all()
    return rows


def _regimes(tenant: str) -> Any:
    """(policy_key, version, regime) of the tenant's policy versions: a ticket's regime is the
    one of the version it was recorded under. MATERIALIZED on PostgreSQL: inlined, the JSON
    path would be read (and the policy's TOASTed document decompressed) once per ticket."""
    return (
        select(
            PolicyVersion.policy_key,
            PolicyVersion.version,
            PolicyVersion.resolved[("jurisdiction", "regime")].as_string().label("regime"),
        )
        .where(PolicyVersion.tenant == tenant)
        .cte("pv")
        .prefix_with("MATERIALIZED", dialect="postgresql")
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
        where: list[ColumnElement[bool]] = [
            t.tenant == tenant,
            t.received_at >= start,
            t.received_at < end,
        ]
        if policy_key is not None:
            where.append(t.policy_key == policy_key)
        completed = t.status == DsarStatus.completed
        days = _days(self.session, t.received_at, t.closed_at)
        # 1. counts by (policy, version, type): few groups, any number of tickets
        pre = (
            select(
                t.policy_key,
                t.policy_version,
                t.type,
                func.count().label("received"),
                _count(completed).label("completed"),
                _count(and_(completed, or_(t.due_at.is_(None), t.closed_at <= t.due_at))).label(
                    "completed_on_time"
                ),
                _count(and_(completed, t.due_at.is_not(None), t.closed_at > t.due_at)).label(
                    "completed_late"
                ),
                _count(t.status == DsarStatus.rejected).label("rejected"),
                _count(t.status == DsarStatus.withdrawn).label("withdrawn"),
                _count(t.is_open.is_(True)).label("open"),
                # as the list's sla=overdue: due_sort is due_at, or the far future without one
                _count(and_(t.is_open.is_(True), t.due_sort < now)).label("overdue"),
                func.sum(days).filter(completed).label("days_sum"),
            )
            .where(*where)
            .group_by(t.policy_key, t.policy_version, t.type)
            .subquery("pre")
        )
        # 2. re-summed by the report's groups (the regime comes with the policy version)
        pv = _regimes(tenant)
        dims: dict[str, Any] = {
            "regime": pv.c.regime,
            "type": pre.c.type,
            "policy": pre.c.policy_key,
        }
        names = [
            "received",
            "completed",
            "completed_on_time",
            "completed_late",
            "rejected",
            "withdrawn",
            "open",
            "overdue",
        ]
        source: Any = pre
        if "regime" in group_by:
            source = pre.join(
                pv, and_(pv.c.policy_key == pre.c.policy_key, pv.c.version == pre.c.policy_version)
            )
        totals = (
            select(
                *[dims[g].label(g) for g in group_by],
                *[func.sum(pre.c[n]).label(n) for n in names],
                (
                    cast(func.sum(pre.c.days_sum), Float)
                    / func.nullif(cast(func.sum(pre.c.completed), Float), 0)
                ).label("mean"),
            )
            .select_from(source)
            .group_by(*[dims[g] for g in group_by])
        )
        # 3. the days of the completed tickets, for the percentiles
        vdims: dict[str, Any] = {"regime": pv.c.regime, "type": t.type, "policy": t.policy_key}
        vsource: Any = t
        if "regime" in group_by:
            vsource = t.__table__.join(
                pv, and_(pv.c.policy_key == t.policy_key, pv.c.version == t.policy_version)
            )
        values = (
            select(*[vdims[g].label(g) for g in group_by], days.label("v"))
            .select_from(vsource)
            .where(*where, completed)
        )
        return await _report(self.session, totals, values, group_by, {"median": 0.5, "p90": 0.9})

    # ---- CCPA -----------------------------------------------------------------------------

    async def ccpa(self, tenant: str, windows: Sequence[YearWindow]) -> Sequence[Row[Any]]:
        t = DsarTicket
        if not windows:
            return []
        kind = case(*[(t.type == k, literal(v)) for k, v in CCPA_KINDS.items()]).label("kind")
        answered = t.status.in_([DsarStatus.completed, DsarStatus.rejected])
        rejected = t.status == DsarStatus.rejected
        where = [
            t.tenant == tenant,
            t.type.in_(list(CCPA_KINDS)),
            or_(
                false(),
                *[
                    and_(
                        t.policy_key == w.policy_key,
                        t.received_at >= w.start,
                        t.received_at < w.end,
                    )
                    for w in windows
                ],
            ),
        ]
        days = _days(self.session, t.received_at, t.closed_at)
        counts: list[ColumnElement[Any]] = [
            func.count().label("received"),
            _count(t.status == DsarStatus.completed).label("complied"),
            _count(rejected).label("denied"),
            _count(and_(rejected, t.status_reason_code.is_(None))).label("denied_unspecified"),
            *[
                _count(and_(rejected, t.status_reason_code == code)).label(f"denied_{code.value}")
                for code in RejectionReason
            ],
            (cast(func.sum(days).filter(answered), Float) / func.nullif(_count(answered), 0)).label(
                "mean"
            ),
        ]
        totals = select(kind, *counts).where(*where).group_by(kind)
        values = select(kind, days.label("v")).where(*where, answered)
        return await _report(self.session, totals, values, ["kind"], {"median": 0.5})

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
