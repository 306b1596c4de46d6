"""/v1/reports: figures for privacy officers, auditors and regulators (DESIGN §15).

Every report answers JSON, or CSV with `Accept: text/csv` (app/reports/csvout.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from app.core.deps import request_session, require
from app.core.errors import Unprocessable
from app.core.openapi import problems
from app.core.routing import AppRoute
from app.core.security import Principal
from app.policies.schemas import KEY_PATTERN
from app.reports import csvout
from app.reports.schemas import (
    RANGE_DOC,
    BreachRegister,
    CcpaMetrics,
    ConsentReport,
    DsarReport,
    Interval,
)
from app.reports.service import ReportsService

router = APIRouter(prefix="/v1/reports", tags=["reports"], route_class=AppRoute)

ReportsRead = Annotated[Principal, Depends(require("reports:read"))]
GROUPS = ("regime", "type", "policy")


async def get_service(request: Request) -> AsyncIterator[ReportsService]:
    async with request_session(request) as session:
        yield ReportsService(session, request.app.state.clock)


ServiceDep = Annotated[ReportsService, Depends(get_service)]
From = Annotated[str | None, Query(alias="from", max_length=40, description=RANGE_DOC)]
To = Annotated[str | None, Query(max_length=40, description=RANGE_DOC)]
PolicyKey = Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)]

M = TypeVar("M", bound=BaseModel)


def _answer(request: Request, report: M, to_csv: Callable[[M], str], name: str) -> Any:
    if csvout.wants_csv(request.headers.get("accept")):
        return csvout.csv_response(to_csv(report), f"{name}.csv")
    return Response(
        content=report.model_dump_json(by_alias=True),
        media_type="application/json",
        headers={"Vary": "Accept"},
    )


def _csv_doc(example: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "The report: JSON by default, CSV with `Accept: text/csv` (a header "
            "row, RFC 4180 quoting, UTF-8)",
            "content": {
                "text/csv": {"schema": {"type": "string"}, "example": example},
            },
        },
        **problems(404),
    }


def _group_by(value: str) -> list[str]:
    groups: list[str] = []
    for part in value.split(","):
        name = part.strip()
        if not name:
            continue
        if name not in GROUPS:
            raise Unprocessable.at(["query", "group_by"], f"one or more of {', '.join(GROUPS)}")
        if name not in groups:
            groups.append(name)
    return groups


@router.get(
    "/dsar",
    response_model=DsarReport,
    operation_id="getDsarReport",
    summary="Requests received in a range: outcomes, timeliness and days to close",
    description="Tickets received in `[from, to)` (default: the year up to now), grouped by "
    "`group_by` (any of regime, type, policy; default regime,type). Days to close are elapsed "
    "days (seconds / 86,400) from receipt to completion, one decimal, over completed tickets; "
    "median and p90 are `percentile_cont`; `overdue` counts open tickets past their due "
    "instant at `as_of`. Every figure is computed by the database.",
    responses=_csv_doc(
        "regime,type,policy_key,received,completed,completed_on_time,completed_late,rejected,"
        "withdrawn,open,overdue,median_days_to_close,mean_days_to_close,p90_days_to_close,"
        "on_time_rate\r\ngdpr,access,,12,9,8,1,1,0,2,1,17.5,19.2,31.0,0.8888888888888888\r\n"
    ),
)
async def get_dsar_report(
    request: Request,
    service: ServiceDep,
    who: ReportsRead,
    from_: From = None,
    to: To = None,
    policy_key: PolicyKey = None,
    group_by: Annotated[
        str,
        Query(
            max_length=40,
            description="Comma-separated: regime, type, policy (empty: one row for everything)",
        ),
    ] = "regime,type",
) -> Any:
    report = await service.dsar(
        who, start=from_, end=to, policy_key=policy_key, group_by=_group_by(group_by)
    )
    return _answer(request, report, csvout.dsar_csv, "dsar-report")


@router.get(
    "/ccpa-metrics",
    response_model=CcpaMetrics,
    operation_id="getCcpaMetrics",
    summary="The CCPA regulations §7102(a) figures for a calendar year",
    description="Per request kind (know ← access, delete ← erasure, correct ← rectification, "
    "opt_out ← opt_out; limit has no request type here and stays zero): received, complied "
    "with in whole or in part (completed), denied (rejected, by `reason_code`), and the median "
    "and mean days to respond (completed and rejected tickets). A request belongs to the year "
    "of its `received_at` in the policy's timezone. Without `policy_key`: every policy of the "
    "tenant whose regime is ccpa_cpra. Default year: the previous one.",
    responses=_csv_doc(
        "year,kind,received,complied_in_whole_or_part,denied_total,"
        "denied_identity_not_verified,denied_manifestly_unfounded,denied_excessive,"
        "denied_exemption,denied_no_data,denied_other,denied_unspecified,"
        "median_days_to_respond,mean_days_to_respond\r\n"
        "2027,know,40,35,5,3,0,0,1,1,0,0,21.0,23.4\r\n"
    ),
)
async def get_ccpa_metrics(
    request: Request,
    service: ServiceDep,
    who: ReportsRead,
    year: Annotated[int | None, Query(ge=1970, le=9998)] = None,
    policy_key: PolicyKey = None,
) -> Any:
    report = await service.ccpa(who, year=year, policy_key=policy_key)
    return _answer(request, report, csvout.ccpa_csv, f"ccpa-metrics-{report.year}")


@router.get(
    "/consent",
    response_model=ConsentReport,
    operation_id="getConsentReport",
    summary="Consent events per purpose and interval, and who is opted in now",
    description="Per purpose (of the policies' current versions, and any other with events) "
    "and per interval of `[from, to)` (UTC days, ISO weeks from Monday, or calendar months, "
    "cut at `from` and `to`; every interval listed): events granted, denied and withdrawn "
    "by a request, and opt-outs recorded for a `Sec-GPC: 1` signal (`gpc_applied`, not "
    "counted in `denied`); `opted_in_now`: subjects whose current state is granted and not "
    "expired.",
    responses=_csv_doc(
        "policy_key,purpose,start,end,granted,denied,withdrawn,gpc_applied,opted_in_now\r\n"
        "spotrak,audience_cookies,2027-01-01T00:00:00Z,2027-02-01T00:00:00Z,120,30,4,0,96\r\n"
    ),
)
async def get_consent_report(
    request: Request,
    service: ServiceDep,
    who: ReportsRead,
    from_: From = None,
    to: To = None,
    policy_key: PolicyKey = None,
    interval: Interval = "month",
) -> Any:
    report = await service.consent(
        who, start=from_, end=to, interval=interval, policy_key=policy_key
    )
    return _answer(request, report, csvout.consent_csv, "consent-report")


@router.get(
    "/breaches",
    response_model=BreachRegister,
    operation_id="getBreachRegister",
    summary="The breach register (GDPR Art. 33(5))",
    description="Every incident the tenant became aware of in `[from, to)` (both optional: "
    "the whole register by default): its facts, categories, subjects affected, risk "
    "history, and each notice with its due and sent instants, whether it was late (or is "
    "late now, when not sent) and the reasons given. CSV: one line per notice.",
    responses=_csv_doc(
        "incident_id,policy_key,title,occurred_at,aware_at,data_categories,subjects_affected,"
        "risk,role,status,overdue,risk_history,closed_at,closing_reason,description,"
        "notice_audience,notice_required,notice_due_at,notice_sent_at,notice_late,"
        "notice_late_by_hours,notice_late_reason,notice_reference\r\n"
    ),
)
async def get_breach_register(
    request: Request,
    service: ServiceDep,
    who: ReportsRead,
    from_: From = None,
    to: To = None,
) -> Any:
    report = await service.breaches(who, start=from_, end=to)
    return _answer(request, report, csvout.breaches_csv, "breach-register")
