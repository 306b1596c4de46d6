"""Issue 13, dated cases: identity clocks, provincial holidays, controller instructions,
explanations that tell one story and cite the regime's own law (one row per source).

Every expected date was counted by hand (weekdays with Python's `calendar`; holidays from the
statute lists in docs/legal-rules.md), not read from the module.

Sources:
  UK GDPR Art. 12A / ICO  https://ico.org.uk/for-organisations/uk-gdpr-guidance-and-resources/
      individual-rights/right-of-access/what-should-we-consider-when-responding-to-a-request/
  EDPB Guidelines 01/2022 (right of access), timing section  https://www.edpb.europa.eu
  CCPA 11 CCR §7021(b)  https://advisori.com/cpra/ (… "regardless of time required to verify")
  PIPEDA s.8(3)-(4), s.8(7)  https://proteuscyber.com/privacy-database/pipeda-8
  Interpretation Act s.35(1)(a); Ontario Legislation Act, 2006 s.88
      https://ottawaemploymentlaw.com/2018/07/holidays-on-sunday.html (s.88 quoted)
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.rules import deadlines, regimes
from tests.rules.helpers import body, detail_text, example, resolved

PARIS = ZoneInfo("Europe/Paris")
LONDON = ZoneInfo("Europe/London")
LA = ZoneInfo("America/Los_Angeles")
TORONTO = ZoneInfo("America/Toronto")


def _federal_pipeda() -> dict[str, Any]:
    declared = body("pipeda")
    declared["jurisdiction"]["subdivision"] = None
    return regimes.resolve(declared)


def _officetrax_federal() -> dict[str, Any]:
    """Officetrax as if it had no province: the federal list alone (the old calendar)."""
    policy = example("officetrax")
    policy["jurisdiction"]["calendar"]["extra_holidays"] = [
        d
        for d in policy["jurisdiction"]["calendar"]["extra_holidays"]
        if d in ("easter_monday", "july_2_if_canada_day_is_sunday")
    ]
    policy["jurisdiction"]["calendar"]["source"] = "federal list only"
    return policy


# ---- 1. identity verification under GDPR and UK GDPR ---------------------------------------

IDENTITY_CASES = [
    # The controller asked for identity information on 10 Jan; it arrived 20 Jan 2027: the
    # month runs from the 20th → Saturday 20 Feb → Monday 22 Feb (Reg. 1182/71 Art. 3(4)).
    pytest.param(
        "gdpr",
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        datetime(2027, 1, 20, 15, tzinfo=PARIS),
        True,
        date(2027, 2, 22),
        False,
        "EDPB",
        id="EDPB-01-2022-identity-asked-for-clock-from-its-receipt",
    ),
    # Verified at intake (no identity information asked for): the receipt date stands even
    # though the operator recorded the verification later.
    pytest.param(
        "gdpr",
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        datetime(2027, 1, 20, 15, tzinfo=PARIS),
        False,
        date(2027, 2, 10),
        False,
        "without asking the person",
        id="GDPR-art12(3)-verified-at-intake-keeps-receipt-date",
    ),
    # Asked for, not arrived yet: provisional, counted from receipt.
    pytest.param(
        "gdpr",
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        None,
        True,
        date(2027, 2, 10),
        True,
        "provisional",
        id="EDPB-01-2022-identity-asked-for-not-arrived-provisional",
    ),
    # The preview's reading: identity verified after receipt means it was asked for.
    pytest.param(
        "gdpr",
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        datetime(2027, 1, 20, 15, tzinfo=PARIS),
        None,
        date(2027, 2, 22),
        False,
        "EDPB",
        id="EDPB-01-2022-preview-infers-identity-asked-for",
    ),
    # UK GDPR Art. 12A: relevant time = receipt of the requested identity information,
    # 10 Sep 2026 → 10 Oct 2026 (Saturday) → Monday 12 Oct (ICO: weekend → next working day).
    pytest.param(
        "uk_gdpr",
        datetime(2026, 9, 3, 10, tzinfo=LONDON),
        datetime(2026, 9, 10, 11, tzinfo=LONDON),
        True,
        date(2026, 10, 12),
        False,
        "UK GDPR Art. 12A",
        id="UK-GDPR-art12A-relevant-time-is-receipt-of-identity-information",
    ),
    # Identity known before the request arrived: the relevant time is the later, receipt.
    pytest.param(
        "uk_gdpr",
        datetime(2029, 9, 3, 10, tzinfo=LONDON),
        datetime(2029, 9, 1, 10, tzinfo=LONDON),
        True,
        date(2029, 10, 3),
        False,
        "the later of the two",
        id="UK-GDPR-art12A-relevant-time-is-the-latest-not-the-earliest",
    ),
    # CCPA 11 CCR §7021(b): 45 days from receipt "regardless of time required to verify".
    # 20 Nov 2026 + 45 days = Monday 4 Jan 2027.
    pytest.param(
        "ccpa_cpra",
        datetime(2026, 11, 20, 9, tzinfo=LA),
        datetime(2026, 12, 1, 9, tzinfo=LA),
        True,
        date(2027, 1, 4),
        False,
        "",
        id="CCPA-11CCR7021(b)-45-days-regardless-of-verification",
    ),
]


@pytest.mark.parametrize(
    ("regime", "received", "verified", "asked", "due", "provisional", "fragment"),
    IDENTITY_CASES,
)
def test_identity_information_moves_the_clock_only_where_the_law_says(
    regime: str,
    received: datetime,
    verified: datetime | None,
    asked: bool | None,
    due: date,
    provisional: bool,
    fragment: str,
) -> None:
    result = deadlines.dsar_deadlines(
        resolved(regime),
        type="access",
        received_at=received,
        verified_at=verified,
        identity_requested=asked,
    )
    assert result.due_date == due
    assert result.provisional is provisional
    assert fragment in detail_text(result.explanation)


def test_uk_extension_is_three_months_from_receipt_of_the_identity_information() -> None:
    """ICO: "calculate the extension as three months from the original start date, ie the day
    you receive the request, fee or other requested information": 10 Sep → 10 Dec 2026
    (Thursday)."""
    result = deadlines.dsar_deadlines(
        resolved("uk_gdpr"),
        type="access",
        received_at=datetime(2026, 9, 3, 10, tzinfo=LONDON),
        verified_at=datetime(2026, 9, 10, 11, tzinfo=LONDON),
        identity_requested=True,
        extended=True,
    )
    assert result.extended_due_date == date(2026, 12, 10)
    assert result.extension_notice_by == date(2026, 10, 12)


def test_a_policy_may_promise_receipt_whatever_identity() -> None:
    """A GDPR policy that declares clock_starts "received" keeps its stricter promise."""
    policy = resolved("gdpr", response={"default": {"clock_starts": "received"}})
    result = deadlines.dsar_deadlines(
        policy,
        type="access",
        received_at=datetime(2027, 1, 10, 10, tzinfo=PARIS),
        verified_at=datetime(2027, 1, 20, 15, tzinfo=PARIS),
        identity_requested=True,
    )
    assert result.due_date == date(2027, 2, 10)


# ---- 2. provincial non-juridical days (Officetrax, Ontario) --------------------------------

PROVINCE_CASES = [
    # Officetrax: a client's erasure instruction in 30 business days. From Mon 24 Nov 2025:
    # 25-28 Nov (4), 1-5 Dec (9), 8-12 (14), 15-19 (19), 22-24 (22), [25 Christmas, 26 Boxing
    # Day], 29-31 (25), [1 Jan], 2 Jan (26), 5-8 Jan (30) → Thursday 8 January 2026.
    pytest.param(
        datetime(2025, 11, 24, 9, tzinfo=TORONTO),
        date(2026, 1, 8),
        date(2026, 1, 7),
        "2025-12-26 Boxing Day",
        id="Interpretation-Act-s35(1)(a)-Legislation-Act-s88-officetrax-across-boxing-day",
    ),
    # From Mon 1 Feb 2027: 2-5 (4), 8-12 (9), [15 Family Day], 16-19 (13), 22-26 (18),
    # 1-5 Mar (23), 8-12 (28), 15-16 (30) → Tuesday 16 March 2027.
    pytest.param(
        datetime(2027, 2, 1, 9, tzinfo=TORONTO),
        date(2027, 3, 16),
        date(2027, 3, 15),
        "2027-02-15 Family Day",
        id="Interpretation-Act-s35(1)(a)-Legislation-Act-s88-officetrax-across-family-day",
    ),
]


@pytest.mark.parametrize(("received", "due", "federal_due", "skipped"), PROVINCE_CASES)
def test_officetrax_business_days_skip_ontario_holidays(
    received: datetime, due: date, federal_due: date, skipped: str
) -> None:
    officetrax = example("officetrax")
    result = deadlines.dsar_deadlines(
        officetrax, type="erasure", received_at=received, requester="controller"
    )
    assert result.due_date == due
    assert skipped in detail_text(result.explanation)
    assert "Legislation Act, 2006" in officetrax["jurisdiction"]["calendar"]["source"]
    # the calendar before the fix (federal list only) was a day early
    before = deadlines.dsar_deadlines(
        _officetrax_federal(), type="erasure", received_at=received, requester="controller"
    )
    assert before.due_date == federal_due


def test_pipeda_thirty_days_ending_on_christmas_2026() -> None:
    """25 Nov 2026 + 30 days = Friday 25 Dec (Christmas). Federally: the next day that is not
    a holiday is Saturday 26 (Saturday is not a s.35 holiday). In Ontario: Boxing Day (s.88)
    is a holiday too → Sunday → Monday 28 December."""
    received = datetime(2026, 11, 25, 9, tzinfo=TORONTO)
    ontario = deadlines.dsar_deadlines(resolved("pipeda"), type="access", received_at=received)
    federal = deadlines.dsar_deadlines(_federal_pipeda(), type="access", received_at=received)
    assert ontario.due_date == date(2026, 12, 28)
    assert federal.due_date == date(2026, 12, 26)
    text = detail_text(federal.explanation)
    # one story: the Saturday it lands on is explained by the same rule that moved it there
    assert "→ 2026-12-26 (Saturday) (Saturdays are not counted as business days" in text
    assert "next working day" not in text


def test_a_saturday_that_stands_and_a_saturday_reached_by_a_roll_say_the_same_thing() -> None:
    """26 Nov 2026 + 30 days = Saturday 26 Dec (federal): the date stands, for the reason the
    Christmas roll above gives."""
    result = deadlines.dsar_deadlines(
        _federal_pipeda(), type="access", received_at=datetime(2026, 11, 26, 9, tzinfo=TORONTO)
    )
    assert result.due_date == date(2026, 12, 26)
    text = detail_text(result.explanation)
    assert "2026-12-26 (Saturday) is not a business day, but it does not move the deadline" in text
    assert "Saturdays are not counted as business days, but they are not holidays" in text
    assert "[Interpretation Act (R.S.C. 1985 c. I-21) s.26 and s.35(1)]" in text


# ---- 3. controller instructions -------------------------------------------------------------


def test_a_controller_instruction_has_no_extension_and_no_notice_to_the_subject() -> None:
    """Officetrax's erasure rule for a client's instruction names no extension: PIPEDA's
    s.8(4) extension (owed to the individual) is not stacked on the 30 business days."""
    result = deadlines.dsar_deadlines(
        example("officetrax"),
        type="erasure",
        received_at=datetime(2027, 6, 1, 9, tzinfo=TORONTO),
        requester="controller",
    )
    assert not result.extension_allowed
    assert result.extended_due_date is None
    assert result.extension_notice_by is None
    text = detail_text(result.explanation)
    assert "subject must be told" not in text
    assert "names no extension" in text


def test_a_request_relayed_by_a_controller_owes_the_subject_no_notice() -> None:
    """Officetrax access relayed by a client: the access rule (30 days) keeps PIPEDA's
    extension, but the notice to the individual is not the service's step to take."""
    result = deadlines.dsar_deadlines(
        example("officetrax"),
        type="access",
        received_at=datetime(2027, 6, 1, 9, tzinfo=TORONTO),
        requester="controller",
    )
    assert result.extension_allowed
    assert result.extension_notice_by is None
    assert "subject must be told" not in detail_text(result.explanation)
    subject = deadlines.dsar_deadlines(
        example("officetrax"), type="access", received_at=datetime(2027, 6, 1, 9, tzinfo=TORONTO)
    )
    assert subject.extension_notice_by == date(2027, 7, 2)  # 1 Jul Canada Day → 2 Jul


def test_a_controller_instruction_rule_that_names_an_extension_keeps_it() -> None:
    policy = resolved(
        "pipeda",
        response={
            "by_type": {
                "erasure": {
                    "within": {"value": 30, "unit": "business_days"},
                    "extension": {"value": 10, "unit": "business_days"},
                    "applies_to": "controller_instruction",
                }
            }
        },
    )
    assert policy["response"]["by_type"]["erasure"]["extension"] == {
        "value": 10,
        "unit": "business_days",
    }
    assert policy["response"]["by_type"]["erasure"]["extension_notice_within"] is None
    result = deadlines.dsar_deadlines(
        policy,
        type="erasure",
        received_at=datetime(2027, 6, 1, 9, tzinfo=TORONTO),
        requester="controller",
    )
    assert result.extension_allowed
    # 30 business days → 14 July 2027 (see test_deadlines_table); 10 more: 15-16, 19-23,
    # 26-28 July → Wednesday 28 July 2027
    assert result.extended_due_date == date(2027, 7, 28)


# ---- 4. breach wording ----------------------------------------------------------------------


@pytest.mark.parametrize("regime", regimes.REGIMES)
@pytest.mark.parametrize("risk", ["unlikely", "risk", "high_risk"])
def test_breach_duties_read_as_one_story(regime: str, risk: Any) -> None:
    result = deadlines.breach_deadlines(
        resolved(regime), aware_at=datetime(2027, 3, 1, 9, tzinfo=PARIS), risk=risk
    )
    for audience, label in (
        ("authority", "the supervisory authority"),
        ("subjects", "the people affected"),
    ):
        required = getattr(result, f"{audience}_notification_required")
        duty = [s.detail for s in result.explanation if s.detail.startswith(f"Notifying {label}")]
        assert len(duty) == 1
        assert duty[0].startswith(
            f"Notifying {label} is {'required' if required else 'not required'}"
        )
        assert "the rule says" not in duty[0]
        if "never requires" in duty[0]:
            assert "whatever the risk" in duty[0]


# ---- 5. the law cited is the regime's own ---------------------------------------------------

# What each regime's explanations may name; any other regime's law in them is a mistake.
FOREIGN = {
    "gdpr": r"UK GDPR|ICO|CCPA|PIPEDA|P-39\.1|PIPA|LGPD|ANPD|09-08|Interpretation Act",
    "uk_gdpr": r"(?<!UK )GDPR Art|EDPB|1182/71|CCPA|PIPEDA|P-39\.1|PIPA|LGPD|ANPD|09-08",
    "ccpa_cpra": r"GDPR|1182/71|PIPEDA|P-39\.1|PIPA|LGPD|ANPD|09-08|Interpretation Act",
    "pipeda": r"GDPR|1182/71|CCPA|P-39\.1|BC PIPA|LGPD|ANPD|09-08",
    "quebec_law25": r"GDPR|1182/71|CCPA|PIPEDA|BC PIPA|LGPD|ANPD|09-08",
    "bc_pipa": r"GDPR|1182/71|CCPA|PIPEDA|P-39\.1|LGPD|ANPD|09-08",
    "lgpd": r"GDPR|1182/71|CCPA|PIPEDA|P-39\.1|PIPA|09-08|Interpretation Act",
    "morocco_09_08": r"GDPR|1182/71|CCPA|PIPEDA|P-39\.1|PIPA|LGPD|ANPD|Interpretation Act",
    "custom": r"GDPR|1182/71|CCPA|PIPEDA|P-39\.1|PIPA|LGPD|ANPD|09-08|Interpretation Act",
}


def _all_text(steps: list[Any]) -> str:
    return "\n".join(f"{s.rule} {s.source or ''} {s.detail}" for s in steps)


@pytest.mark.parametrize("regime", regimes.REGIMES)
def test_every_explanation_cites_only_its_own_regime(regime: str) -> None:
    policy = resolved(regime)
    received = datetime(2026, 12, 20, 9, tzinfo=PARIS)
    texts: list[str] = []
    for right in policy["rights"]:
        for requester in ("subject", "controller"):
            for asked, verified in ((False, None), (True, None), (True, received + timedelta(3))):
                for extended in (False, True):
                    result = deadlines.dsar_deadlines(
                        policy,
                        type=right,
                        received_at=received,
                        verified_at=verified,
                        identity_requested=asked,
                        requester=requester,
                        extended=extended,
                    )
                    texts.append(_all_text(result.explanation))
    for risk in ("unlikely", "risk", "high_risk"):
        for role in ("controller", "processor"):
            breach = deadlines.breach_deadlines(
                policy,
                aware_at=received,
                risk=risk,
                role=role,  # type: ignore[arg-type]
            )
            texts.append(_all_text(breach.explanation))
    foreign = re.compile(FOREIGN[regime])
    for text in texts:
        assert not foreign.search(text), text


REFUSALS = [
    pytest.param("gdpr", "GDPR Art. 12(4)", id="GDPR-art12(4)"),
    pytest.param("uk_gdpr", "UK GDPR Art. 12(4)", id="UK-GDPR-art12(4)"),
    pytest.param("ccpa_cpra", "CCPA regulations 11 CCR §7022(f)", id="CCPA-11CCR7022(f)"),
    pytest.param("pipeda", "PIPEDA s.8(7)", id="PIPEDA-s8(7)"),
    pytest.param("quebec_law25", "Québec P-39.1 s.34", id="Quebec-P39.1-s34"),
    pytest.param("bc_pipa", "BC PIPA s.30(1)(c)", id="BC-PIPA-s30(1)(c)"),
    pytest.param("lgpd", "LGPD art. 18 §4", id="LGPD-art18-par4"),
    pytest.param("morocco_09_08", "the service's own rule", id="Morocco-09-08-no-provision"),
    pytest.param("custom", "the service's own rule", id="custom-no-law"),
]


@pytest.mark.parametrize(("regime", "rule"), REFUSALS)
def test_a_refusal_cites_the_regimes_own_rule(regime: str, rule: str) -> None:
    assert regimes.cite(regime, "refusal")[0].startswith(rule)


# ---- 6. no fixed period -----------------------------------------------------------------------


def test_morocco_access_has_no_due_date_unless_the_policy_promises_one() -> None:
    received = datetime(2027, 1, 11, 9, tzinfo=ZoneInfo("Africa/Casablanca"))
    law = deadlines.dsar_deadlines(example("caltryx"), type="access", received_at=received)
    assert law.due_date is None
    assert not law.extension_allowed
    assert "sans délais" in law.explanation[-1].detail
    promise = resolved(
        "morocco_09_08",
        response={"by_type": {"access": {"within": {"value": 15, "unit": "days"}}}},
    )
    own = deadlines.dsar_deadlines(promise, type="access", received_at=received)
    # 11 Jan 2027 + 15 days = Tuesday 26 January 2027
    assert own.due_date == date(2027, 1, 26)
    assert "policy's own promise" in detail_text(own.explanation)
