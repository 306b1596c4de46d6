"""Response deadlines for requests, breach notification clocks, and when a version takes effect.

Pure functions of a policy's resolved rules (`regimes.resolve`) and the facts; each result
carries its explanation, one `Step` per rule applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal

from app.rules.calendars import WorkCalendar, calendar_for
from app.rules.explain import Step, describe_period, local_moment, rule_name, utc_text, weekday
from app.rules.periods import Period, add_period, add_to_date, end_of_local_day, zone
from app.rules.policy import ResolvedPolicy
from app.rules.regimes import PRESETS, cite

Risk = Literal["unlikely", "risk", "high_risk"]
Role = Literal["controller", "processor"]
Requester = Literal["subject", "controller"]

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True, slots=True)
class _Context:
    tz: tzinfo
    tz_name: str
    calendar: WorkCalendar


def _context(resolved: ResolvedPolicy) -> _Context:
    jur = resolved["jurisdiction"]
    return _Context(zone(jur["timezone"]), jur["timezone"], calendar_for(jur["calendar"]))


def _day(d: date) -> str:
    return f"{d.isoformat()} ({weekday(d)})"


def _count(
    ctx: _Context,
    start: datetime,
    period: Period,
    *,
    what: str,
    rule: str,
    source: str | None,
    steps: list[Step],
) -> tuple[datetime, date]:
    """Count `period` from `start`; append the steps; return (instant due, local date due)."""
    if period.unit == "hours":
        due = start.astimezone(UTC) + timedelta(hours=period.value)
        steps.append(
            Step(
                rule,
                source,
                f"{what}: {describe_period(period)} from "
                f"{local_moment(start, ctx.tz, ctx.tz_name)} → "
                f"{local_moment(due, ctx.tz, ctx.tz_name)}; clock hours on the UTC timeline "
                "(a DST change does not alter the count) and hours never roll forward",
            )
        )
        return due, due.astimezone(ctx.tz).date()
    start_date = start.astimezone(ctx.tz).date()
    counted = add_to_date(start_date, period, ctx.calendar)
    detail = (
        f"{what}: {describe_period(period)} from {_day(start_date)}, that day excluded → "
        f"{_day(counted.end)}"
    )
    if counted.clamped:
        detail += (
            f"; {_MONTHS[counted.end.month - 1]} has no day {start_date.day}, so the period "
            "ends on its last day"
        )
    if counted.skipped:
        detail += "; holidays skipped: " + ", ".join(
            f"{d.isoformat()} {name}" for d, name in counted.skipped
        )
    steps.append(Step(rule, source, detail))
    end = counted.end
    cal = ctx.calendar
    why = cal.why_not_working(end)
    cal_source = cal.source
    if why is not None:
        rolled = cal.roll_forward(end)
        note = cal.weekend_note(rolled)
        steps.append(
            Step(
                rule_name(cal_source),
                cal_source,
                f"{end.isoformat()} is {why}: {cal.roll_words()} → {_day(rolled)}"
                + (f" ({note})" if note else ""),
            )
        )
        end = rolled
    elif period.unit != "business_days" and not cal.is_business_day(end):
        note = cal.weekend_note(end)
        steps.append(
            Step(
                rule_name(cal_source),
                cal_source,
                f"{_day(end)} is not a business day, but it does not move the deadline: "
                f"{cal.roll_words()}" + (f"; {note}" if note else "") + " → the date stands",
            )
        )
    return end_of_local_day(end, ctx.tz), end


def _ends(ctx: _Context, due_date: date, due_at: datetime, steps: list[Step], what: str) -> None:
    steps.append(
        Step(
            "end of the last day",
            None,
            f"{what} ends {_due_text(ctx, due_at, due_date, hours=False)}",
        )
    )


# ---- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DsarDeadlines:
    clock_started_at: datetime
    acknowledge_by: date | None
    due_at: datetime | None
    due_date: date | None
    provisional: bool
    extension_allowed: bool
    extended_due_at: datetime | None
    extended_due_date: date | None
    extension_notice_by: date | None
    rule: dict[str, Any]
    explanation: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clock_started_at": self.clock_started_at,
            "acknowledge_by": self.acknowledge_by,
            "due_at": self.due_at,
            "due_date": self.due_date,
            "provisional": self.provisional,
            "extension_allowed": self.extension_allowed,
            "extended_due_at": self.extended_due_at,
            "extended_due_date": self.extended_due_date,
            "extension_notice_by": self.extension_notice_by,
            "explanation": [s.to_dict() for s in self.explanation],
        }


def rule_for(resolved: ResolvedPolicy, type: str, requester: str = "subject") -> dict[str, Any]:
    """The rule governing a request of `type`: its own rule if the policy or the regime has
    one for this requester, else the default. A rule that `applies_to` controller
    instructions governs only requests a controller relays to its processor."""
    response = resolved["response"]
    rule = response["by_type"].get(type)
    if rule is None:
        return dict(response["default"])
    if rule.get("applies_to") == "controller_instruction" and requester != "controller":
        return dict(response["default"])
    return dict(rule)


def _legal_rule(resolved: ResolvedPolicy, type: str) -> dict[str, Any]:
    base = PRESETS[resolved["jurisdiction"]["regime"]]["response"]
    return {**base["default"], **base["by_type"].get(type, {})}


def _label(rule: Mapping[str, Any], name: str) -> tuple[str, str | None]:
    if name in rule.get("overrides", ()):
        return "policy promise", None
    legal = str(rule.get("legal_source") or rule.get("source") or "")
    return rule_name(legal), legal


def _promise_note(rule: Mapping[str, Any], legal: Mapping[str, Any], name: str) -> str:
    if name not in rule.get("overrides", ()):
        return ""
    law = legal.get(name)
    law_text = describe_period(law) if law is not None else "no fixed period"
    return f" (the policy's own promise; the regime's rule: {law_text})"


def _clock_start(
    ctx: _Context,
    resolved: Mapping[str, Any],
    rule: Mapping[str, Any],
    received_at: datetime,
    verified_at: datetime | None,
    identity_requested: bool | None,
    steps: list[Step],
) -> tuple[datetime, bool]:
    """When the answer's clock starts, and whether that is still provisional (it waits for
    identity); appends the step that says which rule decided it."""
    mode = rule["clock_starts"]
    verified = verified_at.astimezone(UTC) if verified_at is not None else None
    if identity_requested is None:
        # the preview's reading of the facts: identity information that arrived after the
        # request is information the controller asked for
        identity_requested = verified is not None and verified > received_at
    if mode == "verified":
        s_rule, s_source = _label(rule, "clock_starts")
        if verified is None:
            steps.append(
                Step(
                    s_rule,
                    s_source,
                    "The clock starts when identity is verified, which has not happened yet: "
                    "the dates below are provisional, counted from receipt, and are recomputed "
                    "at verification",
                )
            )
            return received_at, True
        if verified <= received_at:
            # The clock starts at the latest of receipt and identity (UK GDPR Art. 12A
            # "relevant time"): identity known before the request does not back-date it.
            steps.append(
                Step(
                    s_rule,
                    s_source,
                    f"Identity verified {local_moment(verified, ctx.tz, ctx.tz_name)}, "
                    "before the request arrived: the clock runs from receipt, the later of "
                    "the two",
                )
            )
            return received_at, False
        steps.append(
            Step(
                s_rule,
                s_source,
                f"Identity verified {local_moment(verified, ctx.tz, ctx.tz_name)}: the clock "
                "runs from verification, not from receipt",
            )
        )
        return verified, False
    if mode != "received_or_identity":
        return received_at, False
    if "clock_starts" in rule.get("overrides", ()):
        i_rule, i_source = "policy promise", None
    else:
        i_rule, i_source = cite(resolved["jurisdiction"]["regime"], "identity")
        if i_source is None:
            i_rule, i_source = rule_name(str(rule.get("legal_source") or "")), None
    if not identity_requested:
        if verified is not None:
            detail = (
                f"Identity verified {local_moment(verified, ctx.tz, ctx.tz_name)} without "
                "asking the person for more information: the clock runs from receipt"
            )
        else:
            detail = (
                "The clock runs from receipt; had the controller asked for information to "
                "confirm identity, it would run from the receipt of that information"
            )
        steps.append(Step(i_rule, i_source, detail))
        return received_at, False
    if verified is None:
        steps.append(
            Step(
                i_rule,
                i_source,
                "Information to confirm identity was asked for and has not arrived: the clock "
                "starts on its receipt. The dates below are provisional, counted from receipt, "
                "and are recomputed at verification",
            )
        )
        return received_at, True
    if verified <= received_at:
        steps.append(
            Step(
                i_rule,
                i_source,
                f"Identity verified {local_moment(verified, ctx.tz, ctx.tz_name)}, not after "
                "receipt: the clock runs from receipt, the later of the two",
            )
        )
        return received_at, False
    steps.append(
        Step(
            i_rule,
            i_source,
            "Information to confirm identity was asked for and received "
            f"{local_moment(verified, ctx.tz, ctx.tz_name)}: the clock runs from then, not "
            "from receipt of the request",
        )
    )
    return verified, False


def _due_text(ctx: _Context, at: datetime, d: date, hours: bool) -> str:
    """'at 2027-03-01T22:59:59.999999Z (UTC), the last moment of 2027-03-01 in Europe/Paris':
    the local date comes last, so the last date a reader sees is the date returned."""
    if hours:
        local = at.astimezone(ctx.tz)
        return f"at {utc_text(at)} (UTC), {local:%H:%M} on {d.isoformat()} in {ctx.tz_name}"
    return f"at {utc_text(at)} (UTC), the last moment of {d.isoformat()} in {ctx.tz_name}"


def dsar_deadlines(
    resolved: ResolvedPolicy,
    *,
    type: str,
    received_at: datetime,
    verified_at: datetime | None = None,
    requester: str = "subject",
    extended: bool = False,
    identity_requested: bool | None = None,
) -> DsarDeadlines:
    """When a request of `type`, received at `received_at`, must be acknowledged and answered.

    `identity_requested`: whether the controller asked the person for information to confirm
    identity (the ticket went through `awaiting_verification`); None reads it from the facts
    (identity verified after receipt). The explanation ends with the date returned: the
    extended date when `extended`, else the first one."""
    ctx = _context(resolved)
    rule = rule_for(resolved, type, requester)
    legal = _legal_rule(resolved, type)
    regime = resolved["jurisdiction"]["regime"]
    steps: list[Step] = []
    received_at = received_at.astimezone(UTC)
    relayed = requester == "controller"
    instruction = rule.get("applies_to") == "controller_instruction"

    r_rule, r_source = _label(rule, "within")
    steps.append(
        Step(
            r_rule,
            r_source,
            f"Request ({type}) received {local_moment(received_at, ctx.tz, ctx.tz_name)}"
            + (" from the controller, on its instruction" if relayed else ""),
        )
    )
    start, provisional = _clock_start(
        ctx, resolved, rule, received_at, verified_at, identity_requested, steps
    )

    acknowledge_by: date | None = None
    ack = Period.of(rule.get("acknowledge_within"))
    if ack is not None:
        a_rule, a_source = _label(rule, "acknowledge_within")
        _, acknowledge_by = _count(
            ctx,
            received_at,
            ack,
            what="Acknowledge receipt" + _promise_note(rule, legal, "acknowledge_within"),
            rule=a_rule,
            source=a_source,
            steps=steps,
        )

    within = Period.of(rule.get("within"))
    w_rule, w_source = _label(rule, "within")
    due_at: datetime | None = None
    due_date: date | None = None
    if within is not None:
        note = _promise_note(rule, legal, "within")
        if instruction and note:
            note = " (the policy's own promise to the controller that relayed the request)"
        due_at, due_date = _count(
            ctx,
            start,
            within,
            what="Answer" + note,
            rule=w_rule,
            source=w_source,
            steps=steps,
        )

    extension = Period.of(rule.get("extension"))
    extension_allowed = extension is not None and within is not None
    ext_at: datetime | None = None
    ext_date: date | None = None
    notice_by: date | None = None
    if extension is not None and within is not None and due_at is not None:
        e_rule, e_source = _label(rule, "extension")
        if extension.unit == within.unit:
            total = within.plus(extension)
            ext_at, ext_date = _count(
                ctx,
                start,
                total,
                what=f"If extended by {describe_period(extension)}: {describe_period(total)} "
                "counted from the original start, not from the first deadline",
                rule=e_rule,
                source=e_source,
                steps=steps,
            )
        else:
            # A day-based extension continues the first period from its last day *before*
            # any roll-forward (a roll moves only the final end, Reg. 1182/71 Art. 3(4)), just
            # as the same-unit case counts the total from the original start. Hours run from
            # the first deadline's instant.
            first_end = (
                due_at
                if "hours" in (within.unit, extension.unit)
                else end_of_local_day(
                    add_to_date(start.astimezone(ctx.tz).date(), within, ctx.calendar).end,
                    ctx.tz,
                )
            )
            ext_at, ext_date = _count(
                ctx,
                first_end,
                extension,
                what=f"If extended: {describe_period(extension)} after the end of the first "
                "period (before any roll-forward)",
                rule=e_rule,
                source=e_source,
                steps=steps,
            )
        if not relayed:
            # a duty owed to the person: a controller relaying its client's request is told
            # by the service's own answer, not by a statutory notice
            notice = Period.of(rule.get("extension_notice_within")) or within
            n_rule, n_source = _label(rule, "extension_notice_within")
            _, notice_by = _count(
                ctx,
                start,
                notice,
                what="The subject must be told of an extension, with its reasons",
                rule=n_rule,
                source=n_source,
                steps=steps,
            )
    elif within is not None:
        if instruction:
            steps.append(
                Step(
                    "policy promise",
                    None,
                    "This rule, for a controller's instruction, names no extension; the "
                    "regime's extension is owed to the person and does not apply to it",
                )
            )
        else:
            e_rule, e_source = _label(rule, "extension")
            steps.append(Step(e_rule, e_source, "This rule allows no extension"))

    hours = within is not None and within.unit == "hours"
    if within is None:
        words = cite(regime, "no_period")[1] or "without undue delay"
        steps.append(
            Step(
                w_rule,
                w_source,
                f"No fixed period applies to this request: answer {words}, so no due date is "
                "set (a policy may set its own promise)",
            )
        )
    elif extended and ext_at is not None and ext_date is not None:
        ext_hours = extension is not None and extension.unit == "hours"
        told = (
            f"the extension and its reasons were to be told to the subject by "
            f"{notice_by.isoformat()}; "
            if notice_by is not None
            else ""
        )
        e_rule, e_source = _label(rule, "extension")
        steps.append(
            Step(
                e_rule,
                e_source,
                f"Extended: {told}the answer is now due "
                + _due_text(ctx, ext_at, ext_date, ext_hours),
            )
        )
    elif due_at is not None and due_date is not None:
        steps.append(
            Step(
                "end of the last day" if not hours else "exact instant",
                None,
                ("Provisional: " if provisional else "")
                + f"the answer is due {_due_text(ctx, due_at, due_date, hours)}",
            )
        )

    return DsarDeadlines(
        clock_started_at=start,
        acknowledge_by=acknowledge_by,
        due_at=due_at,
        due_date=due_date,
        provisional=provisional,
        extension_allowed=extension_allowed,
        extended_due_at=ext_at,
        extended_due_date=ext_date,
        extension_notice_by=notice_by,
        rule=rule,
        explanation=steps,
    )


# ---- breaches ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreachDeadlines:
    authority_notification_required: bool
    authority_due_at: datetime | None
    subjects_notification_required: bool
    subjects_due_at: datetime | None
    controller_notification_required: bool
    controller_due_at: datetime | None
    explanation: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "authority_notification_required": self.authority_notification_required,
            "authority_due_at": self.authority_due_at,
            "subjects_notification_required": self.subjects_notification_required,
            "subjects_due_at": self.subjects_due_at,
            "controller_notification_required": self.controller_notification_required,
            "controller_due_at": self.controller_due_at,
            "explanation": [s.to_dict() for s in self.explanation],
        }


_RISK_WORDS = {
    "unlikely": "unlikely to result in a risk",
    "risk": "likely to result in a risk (not a high one)",
    "high_risk": "likely to result in a high risk",
}
_WHEN_WORDS = {
    "always": "whatever the risk",
    "never": "never",
    "risk": "unless the breach is unlikely to result in a risk",
    "high_risk": "only when the risk is high",
}


def notification_required(when: str, risk: str) -> bool:
    if when == "always":
        return True
    if when == "never":
        return False
    if when == "risk":
        return risk in ("risk", "high_risk")
    return risk == "high_risk"


def _duty_words(label: str, when: str, risk: str, required: bool) -> str:
    """One sentence that cannot read as a contradiction: the duty, then the facts that
    decide it ('Telling X is not required: this rule never requires it, whatever the risk
    (assessed as a high risk)')."""
    assessed = f"the breach is assessed as {_RISK_WORDS[risk]}"
    if when == "never":
        return (
            f"Notifying {label} is not required: this rule never requires it, whatever the "
            f"risk ({assessed})"
        )
    if when == "always":
        return f"Notifying {label} is required whatever the risk ({assessed})"
    threshold = (
        "unless the breach is unlikely to result in a risk"
        if when == "risk"
        else "only when the risk is high"
    )
    verdict = "required" if required else "not required"
    return f"Notifying {label} is {verdict}: this rule requires it {threshold}, and {assessed}"


def breach_deadlines(
    resolved: ResolvedPolicy,
    *,
    aware_at: datetime,
    risk: Risk,
    role: Role = "controller",
) -> BreachDeadlines:
    """Who must be told of a breach assessed at `risk`, and by when, counted from awareness."""
    ctx = _context(resolved)
    # read by field name (the audiences share their code): the rules as a plain mapping
    breach: Mapping[str, Any] = resolved["breach"]
    legal = PRESETS[resolved["jurisdiction"]["regime"]]["breach"]
    aware_at = aware_at.astimezone(UTC)
    steps = [
        Step(
            "awareness",
            None,
            f"Aware of the breach {local_moment(aware_at, ctx.tz, ctx.tz_name)}; the clocks run "
            f"from this moment. The breach is assessed as {_RISK_WORDS[risk]}",
        )
    ]
    result: dict[str, Any] = {
        "authority_notification_required": False,
        "authority_due_at": None,
        "subjects_notification_required": False,
        "subjects_due_at": None,
        "controller_notification_required": False,
        "controller_due_at": None,
    }

    regime = resolved["jurisdiction"]["regime"]

    def clock(audience: str, label: str, field_name: str) -> None:
        period = Period.of(breach.get(field_name))
        rule, source = _label(breach, field_name)
        note = _promise_note(breach, legal, field_name)
        words = cite(regime, "no_period")[1] or "without undue delay"
        if audience == "controller" and field_name not in breach.get("overrides", ()):
            # a processor's duty has its own rule (GDPR Art. 33(2)), or is the service's own
            rule, source = cite(regime, "processor")
            words = cite(regime, "processor_when")[1] or "without undue delay"
        if period is None:
            steps.append(
                Step(
                    rule,
                    source,
                    f"Tell {label} {words}: the rule sets no fixed period (no number of hours "
                    f"or days), so no due instant is given{note}",
                )
            )
            return
        due_at, due_date = _count(
            ctx,
            aware_at,
            period,
            what=f"Tell {label}{note}",
            rule=rule,
            source=source,
            steps=steps,
        )
        if period.unit != "hours":
            _ends(ctx, due_date, due_at, steps, f"The period to tell {label}")
        result[f"{audience}_due_at"] = due_at

    if role == "processor":
        result["controller_notification_required"] = True
        p_rule, p_source = cite(regime, "processor")
        steps.append(
            Step(
                p_rule,
                p_source,
                "Acting as processor: the duty is to tell the controller; notifying the "
                "authority and the people affected is the controller's decision"
                + (
                    ""
                    if p_source is not None
                    else " (this regime's law names no processor duty: the service applies "
                    "its own rule, the processor tells its controller)"
                ),
            )
        )
        clock("controller", "the controller", "controller_within")
        return BreachDeadlines(**result, explanation=steps)

    for audience, label in (
        ("authority", "the supervisory authority"),
        ("subjects", "the people affected"),
    ):
        when = str(breach[f"notify_{audience}"])
        required = notification_required(when, risk)
        rule, source = _label(breach, f"notify_{audience}")
        note = ""
        if f"notify_{audience}" in breach.get("overrides", ()):
            legal_when = str(legal[f"notify_{audience}"])
            note = f" (the policy's own promise; the regime's rule: {_WHEN_WORDS[legal_when]})"
        steps.append(Step(rule, source, _duty_words(label, when, risk, required) + note))
        result[f"{audience}_notification_required"] = required
        if required:
            clock(audience, label, f"{audience}_within")
    return BreachDeadlines(**result, explanation=steps)


# ---- versions ------------------------------------------------------------------------------


def effective_at(
    resolved: ResolvedPolicy, *, published_at: datetime, is_first_version: bool
) -> datetime:
    """When a version governs from. Version 1: its publication (and it also governs every
    earlier instant). A later version: publication + the change notice, at the same local
    wall-clock time, or its `effective_from` if that is later."""
    if is_first_version:
        return published_at.astimezone(UTC)
    ctx = _context(resolved)
    notice = Period.of(resolved.get("change_notice")) or Period(0, "days")
    at = add_period(published_at, notice, ctx.tz, ctx.calendar)
    raw = resolved.get("effective_from")
    if raw:
        wanted = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
        if wanted.tzinfo is not None and wanted > at:
            at = wanted.astimezone(UTC)
    return at
