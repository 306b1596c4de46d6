"""Regime presets as data, and how a policy's declared configuration merges over them.

Every fact below comes from ../shared/RULES.md (which cites the regulators' texts); the
`source` strings travel into every explanation. A policy may override any of it; the
resolved rules name which fields came from the policy (`overrides`) and keep the legal
source they replaced (`legal_source`).

Merge order for a request type T (later wins, field by field):
preset.default < declared.default < preset.by_type[T] < declared.by_type[T]
— a law's rule for one right (CCPA's 15 business days for opt-out, LGPD's 15 days for
access) stands unless the policy names that right itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, cast, get_args

from app.rules.calendars import check_country, supported_categories
from app.rules.fulfilment import settings as fulfilment_settings
from app.rules.policy import (
    BreachRules,
    CalendarRules,
    ConsentPurposeRule,
    FulfilmentRules,
    PeriodRule,
    RecordsRules,
    Regime,
    ResolvedPolicy,
    ResponseRules,
    RetentionRule,
)
from app.rules.records import settings as records_settings

# The regimes with a preset: the one list is rules.policy.Regime (a Literal).
REGIMES: tuple[str, ...] = get_args(Regime)
RULE_FIELDS = (
    "within",
    "extension",
    "extension_notice_within",
    "acknowledge_within",
    "clock_starts",
    "applies_to",
)
_OWED_TO_THE_PERSON = ("extension", "extension_notice_within", "acknowledge_within")
BREACH_FIELDS = (
    "authority_within",
    "subjects_within",
    "controller_within",
    "notify_authority",
    "notify_subjects",
    "records_kept_for",
)


def _p(value: int, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit}


SAT_SUN = ["saturday", "sunday"]

_GDPR_RESPONSE_SRC = (
    "GDPR Art. 12(3): within one month of receipt, extendable by two further months; the "
    "subject is told of an extension within the first month "
    "(https://gdprhub.eu/index.php?title=Article_12_GDPR)"
)
_GDPR_BREACH_SRC = (
    "GDPR Art. 33(1)/34(1): the supervisory authority within 72 hours of awareness unless "
    "the breach is unlikely to result in a risk; the people affected without undue delay "
    "when the risk is high; a processor tells its controller without undue delay (Art. 33(2))"
)
_UK_RESPONSE_SRC = (
    "UK GDPR Art. 12(3) and ICO guidance: one month from the day of receipt to the "
    "corresponding calendar date, extendable to three months from the original start "
    "(https://ico.org.uk/for-organisations/uk-gdpr-guidance-and-resources/individual-rights/"
    "right-of-access/what-should-we-consider-when-responding-to-a-request/)"
)
_UK_BREACH_SRC = (
    "UK GDPR Art. 33(1)/34(1) and ICO breach guidance: the ICO within 72 hours of awareness "
    "unless unlikely to result in a risk; people affected without undue delay at high risk"
)

# Federal Interpretation Act s.35(1)(a): a province's non-juridical days are holidays there.
# Each entry: the days its own interpretation statute adds to the federal list (named rules in
# calendars.EXTRA_HOLIDAYS) and the statute, for the explanation. A province not listed here
# adds nothing (its days can be added with jurisdiction.calendar.add), and the explanation
# says so. Sources: docs/legal-rules.md.
_CA_PROVINCIAL: dict[str, dict[str, Any]] = {
    "ON": {
        "extra_holidays": [
            "family_day_ontario",
            "boxing_day",
            "ontario_new_year_substitute",
            "ontario_christmas_substitute",
        ],
        "source": "Ontario Legislation Act, 2006 (S.O. 2006 c. 21 Sch. F) s.88: adds Family "
        "Day and Boxing Day (Civic Holiday is not in the list), Monday 2 January when New "
        "Year's Day is a Sunday, and 27 December when Christmas falls on a weekend "
        "(https://www.ontario.ca/laws/statute/06l21)",
    },
    "BC": {
        "extra_holidays": ["family_day_bc", "british_columbia_day", "december_26"],
        "source": "BC Interpretation Act (RSBC 1996 c. 238) s.29: adds Family Day, British "
        "Columbia Day and 26 December "
        "(https://www.bclaws.gov.bc.ca/civix/document/id/complete/statreg/96238_01)",
    },
    "QC": {
        "extra_holidays": ["june_24"],
        "source": "Québec Loi d'interprétation (CQLR c. I-16) s.61(23): adds 24 June, the "
        "Fête nationale (https://www.legisquebec.gouv.qc.ca/en/document/cs/I-16)",
    },
    "NL": {
        "extra_holidays": ["boxing_day"],
        "source": "Newfoundland and Labrador Interpretation Act (RSNL 1990 c. I-19) "
        "s.27(1)(l): adds Boxing Day (Memorial Day is Canada Day, 1 July) "
        "(https://www.assembly.nl.ca/Legislation/sr/statutes/i19.htm)",
    },
}

# What each regime's law says in the places where the service cites a rule outside a clock:
# the clock start when identity information was asked for, a refusal's reasons, a late breach
# notice's reasons, a processor's duty to its controller, and the words for "no fixed period".
# None means the law has no such rule and the service says the rule is its own.
SERVICE_OWN = "the service's own rule"
CITES: dict[str, dict[str, str | None]] = {
    "gdpr": {
        "identity": "EDPB Guidelines 01/2022 on the right of access (timing) and GDPR "
        "Art. 12(6): where the controller has reasonable doubts and asks for information to "
        "confirm identity, the period waits for that information; this service restarts the "
        "month on its receipt, as supervisory authorities count it "
        "(https://www.edpb.europa.eu/our-work-tools/our-documents/guidelines/"
        "guidelines-012022-data-subject-rights-right-access_en)",
        "refusal": "GDPR Art. 12(4): a controller that does not act on a request tells the "
        "subject, within one month of receipt, the reasons and that they may complain to a "
        "supervisory authority",
        "late_notice": "GDPR Art. 33(1): a notification made after 72 hours is accompanied by "
        "the reasons for the delay",
        "processor": "GDPR Art. 33(2): the processor notifies the controller without undue "
        "delay after becoming aware of a personal data breach",
        "processor_when": "without undue delay",
        "no_period": "without undue delay",
    },
    "uk_gdpr": {
        "identity": "UK GDPR Art. 12A and ICO guidance: the month runs from the 'relevant "
        "time', the latest of receipt of the request, of the identity information the "
        "controller asked for, and of any fee (https://ico.org.uk/for-organisations/"
        "uk-gdpr-guidance-and-resources/individual-rights/right-of-access/"
        "what-should-we-consider-when-responding-to-a-request/)",
        "refusal": "UK GDPR Art. 12(4): a controller that does not act on a request tells the "
        "individual, within one month, the reasons and their right to complain to the ICO",
        "late_notice": "UK GDPR Art. 33(1): a notification to the ICO made after 72 hours is "
        "accompanied by the reasons for the delay",
        "processor": "UK GDPR Art. 33(2): the processor notifies the controller without undue "
        "delay after becoming aware of a personal data breach",
        "processor_when": "without undue delay",
        "no_period": "without undue delay",
    },
    "ccpa_cpra": {
        "identity": None,
        "refusal": "CCPA regulations 11 CCR §7022(f) (and §§7023-7024 for correction and "
        "know): a business that denies a request explains the basis for the denial",
        "late_notice": None,
        "processor": "Cal. Civ. Code §1798.82(b): a business that maintains data it does not "
        "own notifies the owner immediately following discovery of the breach",
        "processor_when": "immediately following discovery",
        "no_period": "without undue delay",
    },
    "pipeda": {
        "identity": None,
        "refusal": "PIPEDA s.8(7): an organization that refuses a request informs the "
        "individual in writing, setting out the reasons and any recourse "
        "(https://laws-lois.justice.gc.ca/eng/acts/P-8.6/section-8.html)",
        "late_notice": None,
        "processor": None,
        "no_period": "as soon as feasible",
    },
    "quebec_law25": {
        "identity": None,
        "refusal": "Québec P-39.1 s.34: a refusal is reasoned, names the provision of law it "
        "rests on and tells the person of their recourse",
        "late_notice": None,
        "processor": None,
        "no_period": "promptly ('avec diligence')",
    },
    "bc_pipa": {
        "identity": None,
        "refusal": "BC PIPA s.30(1)(c): a refusal gives its reasons and the provision of the "
        "Act it rests on, and tells the applicant of their right to ask for a review",
        "late_notice": None,
        "processor": None,
        "no_period": "as soon as feasible",
    },
    "lgpd": {
        "identity": None,
        "refusal": "LGPD art. 18 §4: a controller that cannot act at once tells the data "
        "subject the reasons of fact or law that prevent it",
        "late_notice": None,
        "processor": None,
        "no_period": "immediately, or with a reasoned reply",
    },
    "morocco_09_08": {
        "identity": None,
        "refusal": None,
        "late_notice": None,
        "processor": None,
        "no_period": "without delay ('sans délais', Law 09-08 art. 7)",
    },
    "custom": {
        "identity": None,
        "refusal": None,
        "late_notice": None,
        "processor": None,
        "no_period": "without undue delay",
    },
}


def cite(regime: str, what: str) -> tuple[str, str | None]:
    """(rule name, source) the regime's law gives for `what`, or the service's own rule."""
    source = CITES.get(regime, CITES["custom"]).get(what)
    if source is None:
        return SERVICE_OWN, None
    head, sep, _ = source.partition(": ")
    return (head if sep else source), source


PRESETS: dict[str, dict[str, Any]] = {
    "gdpr": {
        "title": "EU General Data Protection Regulation",
        "calendar": {
            "categories": ["public"],
            "observed": True,
            "extra_holidays": [],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["saturday", "sunday", "holiday"],
            "source": "Reg. 1182/71 Art. 3(4): a period other than in hours that ends on a "
            "Saturday, Sunday or public holiday ends on the next working day "
            "(https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX:31971R1182)",
        },
        "response": {
            "default": {
                "within": _p(1, "months"),
                "extension": _p(2, "months"),
                "extension_notice_within": _p(1, "months"),
                "acknowledge_within": None,
                "clock_starts": "received_or_identity",
                "applies_to": "subject",
                "source": _GDPR_RESPONSE_SRC,
            },
            "by_type": {},
        },
        "breach": {
            "authority_within": _p(72, "hours"),
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "risk",
            "notify_subjects": "high_risk",
            "records_kept_for": None,
            "source": _GDPR_BREACH_SRC,
        },
    },
    "uk_gdpr": {
        "title": "UK GDPR and Data Protection Act 2018",
        "calendar": {
            "default_subdivision": {"GB": "ENG"},
            "categories": ["public"],
            "observed": True,
            "extra_holidays": [],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["saturday", "sunday", "holiday"],
            "source": "ICO: if the corresponding date falls on a weekend or a public holiday, "
            "you have until the next working day (bank holidays of the controller's nation)",
        },
        "response": {
            "default": {
                "within": _p(1, "months"),
                "extension": _p(2, "months"),
                "extension_notice_within": _p(1, "months"),
                "acknowledge_within": None,
                "clock_starts": "received_or_identity",
                "applies_to": "subject",
                "source": _UK_RESPONSE_SRC,
            },
            "by_type": {},
        },
        "breach": {
            "authority_within": _p(72, "hours"),
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "risk",
            "notify_subjects": "high_risk",
            "records_kept_for": None,
            "source": _UK_BREACH_SRC,
        },
    },
    "ccpa_cpra": {
        "title": "California Consumer Privacy Act as amended by the CPRA",
        "calendar": {
            # Business days are undefined in the CCPA regulations; the federal calendar has
            # fewer holidays than California's, so it gives the earlier (safer) date.
            "subdivision": None,
            "categories": ["public"],
            "observed": True,
            "extra_holidays": [],
            "non_business_days": SAT_SUN,
            "roll_forward_on": [],
            "source": "CCPA regulations: calendar days do not roll (Civ. Code §10 counting; "
            "CCP §12a not applied by the CPPA); business days on the US federal calendar",
        },
        "response": {
            "default": {
                "within": _p(45, "days"),
                "extension": _p(45, "days"),
                "extension_notice_within": _p(45, "days"),
                "acknowledge_within": _p(10, "business_days"),
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "CCPA regs 11 CCR §7021: confirm receipt within 10 business days; "
                "respond within 45 calendar days of receipt regardless of verification, "
                "extendable once by 45 days with notice (https://www.law.cornell.edu/"
                "regulations/california/11-CCR-7021)",
            },
            "by_type": {
                "opt_out": {
                    "within": _p(15, "business_days"),
                    "extension": None,
                    "extension_notice_within": None,
                    "acknowledge_within": None,
                    "source": "CCPA regs 11 CCR §7026(f): comply with an opt-out of sale or "
                    "sharing no later than 15 business days from receipt "
                    "(https://www.law.cornell.edu/regulations/california/11-CCR-7026)",
                },
            },
        },
        "breach": {
            "authority_within": None,
            "subjects_within": _p(30, "days"),
            "controller_within": None,
            "notify_authority": "never",
            "notify_subjects": "always",
            "records_kept_for": None,
            "source": "Cal. Civ. Code §1798.82 (SB 446, from 2026-01-01): residents within 30 "
            "calendar days of discovery whatever the assessed risk; a sample copy to the "
            "Attorney General within 15 days of the consumer notice only when more than 500 "
            "California residents are notified",
        },
    },
    "pipeda": {
        "title": "Personal Information Protection and Electronic Documents Act (Canada)",
        "calendar": {
            "default_country": "CA",
            "categories": ["government"],
            "observed": False,
            # the Holidays Act moves Canada Day to 2 July when 1 July is a Sunday
            "extra_holidays": ["easter_monday", "july_2_if_canada_day_is_sunday"],
            # s.35(1) itself does not list Boxing Day (the package's "government" list does):
            # it is a holiday only where a province makes it one, para. (a), below.
            "excluded_holidays": ["Boxing Day"],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["sunday", "holiday"],
            # s.35(1)(a): "in any province, … any day that is a non-juridical day by virtue of
            # an Act of the legislature of the province" — the policy's province
            # (jurisdiction.subdivision) adds its own interpretation statute's days.
            "provincial": _CA_PROVINCIAL,
            "source": "Interpretation Act (R.S.C. 1985 c. I-21) s.26 and s.35(1): a time limit "
            "ending on a holiday (Sundays included, Saturdays not) runs to the next day "
            "that is not a holiday; the holidays are New Year's Day, Good Friday, Easter "
            "Monday, Victoria Day, Canada Day, Labour Day, the National Day for Truth and "
            "Reconciliation, Thanksgiving (proclaimed), Remembrance Day and Christmas Day, "
            "plus the province's non-juridical days (para. (a)) "
            "(https://laws-lois.justice.gc.ca/eng/acts/I-21/section-35.html)",
        },
        "response": {
            "default": {
                "within": _p(30, "days"),
                "extension": _p(30, "days"),
                "extension_notice_within": _p(30, "days"),
                "acknowledge_within": None,
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "PIPEDA s.8(3)-(4): not later than 30 days after receipt; extendable "
                "by at most 30 days with notice within the first 30 days "
                "(https://laws-lois.justice.gc.ca/eng/acts/P-8.6/section-8.html)",
            },
            "by_type": {},
        },
        "breach": {
            "authority_within": None,
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "risk",
            "notify_subjects": "risk",
            "records_kept_for": _p(24, "months"),
            "source": "PIPEDA s.10.1 and SOR/2018-64 s.6: report to the OPC and tell the people "
            "affected as soon as feasible when there is a real risk of significant harm; keep "
            "a record of every breach for 24 months",
        },
    },
    "quebec_law25": {
        "title": "Québec Act respecting the protection of personal information in the private "
        "sector (Law 25)",
        "calendar": {
            "default_country": "CA",
            "default_subdivision": {"CA": "QC"},
            "categories": ["public", "optional"],
            # s.61(23) lists its one substitute day (2 July when 1 July is a Sunday); the
            # package's observed Christmas / New Year Mondays are not jours fériés.
            "observed": False,
            "extra_holidays": ["july_2_if_canada_day_is_sunday"],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["sunday", "holiday"],
            "source": "Loi d'interprétation (CQLR c. I-16) s.52 and s.61(23): a deadline "
            "ending on a jour férié (Sundays included, Saturdays not) runs to the next "
            "jour ouvrable",
        },
        "response": {
            "default": {
                "within": _p(30, "days"),
                "extension": None,
                "extension_notice_within": None,
                "acknowledge_within": None,
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "Québec P-39.1 s.32: within 30 days of receipt; no extension in the "
                "private-sector Act; silence is a deemed refusal",
            },
            "by_type": {},
        },
        "breach": {
            "authority_within": None,
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "risk",
            "notify_subjects": "risk",
            "records_kept_for": _p(5, "years"),
            "source": "Québec P-39.1 ss.3.5, 3.8 and A-2.1 r.3.1: notify the CAI and the "
            "persons promptly when there is a risk of serious injury; keep the incident "
            "register 5 years",
        },
    },
    "bc_pipa": {
        "title": "British Columbia Personal Information Protection Act",
        "calendar": {
            "default_country": "CA",
            "default_subdivision": {"CA": "BC"},
            "categories": ["public"],
            # s.29 names its days and has no substitutes; Easter Monday and 26 December are
            # in it but not in the package's BC "public" list
            "observed": False,
            "extra_holidays": [
                "easter_monday",
                "december_26",
                "july_2_if_canada_day_is_sunday",
            ],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["saturday", "sunday", "holiday"],
            "source": "BC PIPA s.1: a 'day' excludes Saturdays and holidays; BC Interpretation "
            "Act (RSBC 1996 c. 238) s.29 'holiday': Sunday, Christmas Day, Good Friday, Easter "
            "Monday, Canada Day, Victoria Day, British Columbia Day, Labour Day, Remembrance "
            "Day, New Year's Day, 26 December, and days set or proclaimed as public holidays "
            "or of thanksgiving (Family Day, National Day for Truth and Reconciliation, "
            "Thanksgiving)",
        },
        "response": {
            "default": {
                "within": _p(30, "business_days"),
                "extension": _p(30, "business_days"),
                "extension_notice_within": _p(30, "business_days"),
                "acknowledge_within": None,
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "BC PIPA s.29 and s.31: not later than 30 days (working days, s.1) "
                "after receiving the request; extendable by up to 30 days, telling the "
                "applicant the reason and the new date",
            },
            "by_type": {},
        },
        "breach": {
            "authority_within": None,
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "never",
            "notify_subjects": "never",
            "records_kept_for": None,
            "source": "BC PIPA: no mandatory breach notification in the Act",
        },
    },
    "lgpd": {
        "title": "Lei Geral de Proteção de Dados (Brazil)",
        "calendar": {
            "default_country": "BR",
            "categories": ["public"],
            "observed": False,
            "extra_holidays": [],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["saturday", "sunday", "holiday"],
            "source": "Código Civil art. 132 §1: a period ending on a holiday runs to the next "
            "business day",
        },
        "response": {
            "default": {
                "within": None,
                "extension": None,
                "extension_notice_within": None,
                "acknowledge_within": None,
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "LGPD art. 18 §§3-5: act immediately or send a reasoned reply; no "
                "general period set by ANPD regulation",
            },
            "by_type": {
                "access": {
                    "within": _p(15, "days"),
                    "source": "LGPD art. 19 II: a clear and complete declaration within 15 days "
                    "of the request (https://lgpd-brazil.info/chapter_03/article_19)",
                },
            },
        },
        "breach": {
            "authority_within": _p(3, "business_days"),
            "subjects_within": _p(3, "business_days"),
            "controller_within": None,
            "notify_authority": "risk",
            "notify_subjects": "risk",
            "records_kept_for": _p(5, "years"),
            "source": "Res. CD/ANPD 15/2024 arts. 6, 9, 10: ANPD and data subjects within 3 "
            "business days of knowing the incident affected personal data, when it may "
            "create relevant risk or damage; keep the incident record 5 years",
        },
    },
    "morocco_09_08": {
        "title": "Moroccan Law 09-08 (CNDP)",
        "calendar": {
            "default_country": "MA",
            "categories": ["public"],
            "observed": True,
            "extra_holidays": [],
            "non_business_days": SAT_SUN,
            "roll_forward_on": ["saturday", "sunday", "holiday"],
            "source": "Moroccan practice: a period ending on a non-working day runs to the next "
            "working day (Islamic holidays are estimated; adjust with calendar add/remove)",
        },
        "response": {
            "default": {
                "within": None,
                "extension": None,
                "extension_notice_within": None,
                "acknowledge_within": None,
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "Law 09-08 art. 7: access 'sans délais' (no number; the CNDP may set "
                "response times, art. 28)",
            },
            "by_type": {
                "rectification": {
                    "within": _p(10, "days"),
                    "source": "Law 09-08 art. 8: corrections within ten clear days "
                    "('dix jours francs'); counted conservatively as 10 days",
                },
                "erasure": {
                    "within": _p(10, "days"),
                    "source": "Law 09-08 art. 8: erasure within ten clear days "
                    "('dix jours francs'); counted conservatively as 10 days",
                },
            },
        },
        "breach": {
            "authority_within": None,
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "never",
            "notify_subjects": "never",
            "records_kept_for": None,
            "source": "Law 09-08: no general breach-notification duty",
        },
    },
    "custom": {
        "title": "Custom rules (the policy says everything)",
        "calendar": {
            "categories": ["public"],
            "observed": True,
            "extra_holidays": [],
            "non_business_days": SAT_SUN,
            "roll_forward_on": [],
            "source": "the service's own rule (custom regime): business days skip weekends "
            "and the country's public "
            "holidays; deadlines do not roll",
        },
        "response": {
            "default": {
                "within": None,
                "extension": None,
                "extension_notice_within": None,
                "acknowledge_within": None,
                "clock_starts": "received",
                "applies_to": "subject",
                "source": "the service's own rule (custom regime): no statutory period",
            },
            "by_type": {},
        },
        "breach": {
            "authority_within": None,
            "subjects_within": None,
            "controller_within": None,
            "notify_authority": "risk",
            "notify_subjects": "high_risk",
            "records_kept_for": None,
            "source": "the service's own rule (custom regime): no statutory breach window",
        },
    },
}

_PURPOSE_DEFAULTS: dict[str, Any] = {
    "description": None,
    "lawful_basis": "consent",
    "default": "denied",
    "expires_after": None,
    "honors_gpc": False,
    "withdrawal_method": None,
}
_RETENTION_DEFAULTS: dict[str, Any] = {"starts_at": "collected", "then": "delete"}


def preset(regime: str) -> dict[str, Any]:
    """A deep copy of the regime's preset (callers may change it)."""
    return copy.deepcopy(PRESETS[regime])


def validate_country(country: str, subdivision: str | None) -> None:
    """ValueError (mentioning 'subdivision' when that is the problem) if no calendar exists."""
    check_country(country, subdivision)


def _merge_rule(
    base: dict[str, Any], layer: Mapping[str, Any] | None, *, declared: bool
) -> dict[str, Any]:
    out = dict(base)
    if not layer:
        return out
    for name in RULE_FIELDS:
        if name in layer:
            # a policy that restates the law is not making a promise of its own
            differs = layer[name] != out.get(name)
            out[name] = layer[name]
            if declared and differs and name not in out["overrides"]:
                out["overrides"] = [*out["overrides"], name]
            elif not declared and name in out["overrides"]:
                out["overrides"] = [f for f in out["overrides"] if f != name]
    if not declared and "source" in layer:
        out["legal_source"] = layer["source"]
    return out


def _finish(rule: dict[str, Any]) -> dict[str, Any]:
    overrides = rule["overrides"]
    legal = rule["legal_source"]
    rule["source"] = (
        f"policy promise ({', '.join(overrides)}); otherwise {legal}" if overrides else legal
    )
    return rule


def _calendar(jur: Mapping[str, Any], preset_cal: Mapping[str, Any]) -> dict[str, Any]:
    country = str(jur["country"])
    if "subdivision" in preset_cal:  # the preset fixes it (CCPA: federal calendar)
        subdivision = preset_cal["subdivision"]
    else:
        subdivision = jur.get("subdivision") or (preset_cal.get("default_subdivision") or {}).get(
            country
        )
    try:
        available = set(supported_categories(country))
    except NotImplementedError:
        available = {"public"}
    categories = [c for c in preset_cal["categories"] if c in available] or ["public"]
    adjust = jur.get("calendar") or {}
    same_country = preset_cal.get("default_country", country) == country
    extra = list(preset_cal["extra_holidays"]) if same_country else []
    source = str(preset_cal["source"])
    provincial = preset_cal.get("provincial") if same_country else None
    if provincial is not None:
        province = provincial.get(subdivision) if subdivision else None
        if province is not None:
            extra += [d for d in province["extra_holidays"] if d not in extra]
            source += f"; in {subdivision}: {province['source']}"
        elif subdivision:
            source += (
                f"; no provincial list is modelled for {subdivision}: add its non-juridical "
                "days with jurisdiction.calendar.add"
            )
        else:
            source += "; no province given, so only the federal list applies"
    return {
        "country": country,
        "subdivision": subdivision,
        "categories": categories,
        "observed": bool(preset_cal["observed"]),
        # named extra days only make sense on the calendar they were written for
        "extra_holidays": extra,
        "excluded_holidays": list(preset_cal.get("excluded_holidays") or [])
        if same_country
        else [],
        "non_business_days": list(preset_cal["non_business_days"]),
        "roll_forward_on": list(preset_cal["roll_forward_on"]),
        "add": sorted(str(d) for d in adjust.get("add") or []),
        "remove": sorted(str(d) for d in adjust.get("remove") or []),
        "source": source,
    }


def _fulfilment(declared: Mapping[str, Any] | None) -> FulfilmentRules:
    """The fulfilment block (DESIGN §13): what the policy sets, over the defaults."""
    return cast(FulfilmentRules, fulfilment_settings({"fulfilment": declared or {}}))


def _records(declared: Mapping[str, Any] | None) -> RecordsRules:
    """The records block (DESIGN §14): what the policy sets, over the defaults."""
    block = records_settings({"records": declared or {}})
    # which fields the policy set itself (the explanation then cites the policy, not the law)
    block["overrides"] = sorted(k for k, v in (declared or {}).items() if v is not None)
    return cast(RecordsRules, block)


def resolve(declared: Mapping[str, Any]) -> ResolvedPolicy:
    """The rules in force: the declared configuration merged over its regime's preset.

    `declared` is the policy as published (fields the caller did not send are absent; an
    explicit null removes a preset value, e.g. `"extension": null`)."""
    jur = declared["jurisdiction"]
    regime = cast(Regime, str(jur["regime"]))
    base = PRESETS[regime]
    rights = list(declared["rights"])

    d_response = declared.get("response") or {}
    default = dict(base["response"]["default"])
    default.update(overrides=[], legal_source=default.pop("source"))
    default = _merge_rule(default, d_response.get("default"), declared=True)

    by_type: dict[str, dict[str, Any]] = {}
    d_by_type = d_response.get("by_type") or {}
    for right in rights:
        p_rule = base["response"]["by_type"].get(right)
        d_rule = d_by_type.get(right)
        if p_rule is None and d_rule is None:
            continue
        rule = _merge_rule(default, p_rule, declared=False)
        rule = _merge_rule(rule, d_rule, declared=True)
        if rule["applies_to"] == "controller_instruction":
            # A client's instruction to its processor does not inherit the duties the law
            # owes the person (an extension told to the subject, an acknowledgement): only
            # what this rule itself names applies.
            for name in _OWED_TO_THE_PERSON:
                if d_rule is None or name not in d_rule:
                    rule[name] = None
                    rule["overrides"] = [f for f in rule["overrides"] if f != name]
        by_type[right] = _finish(rule)
    default = _finish(default)

    breach = {k: v for k, v in base["breach"].items() if k != "source"}
    overrides = []
    for name, value in (declared.get("breach") or {}).items():
        if name in BREACH_FIELDS:
            if breach.get(name) != value:
                overrides.append(name)
            breach[name] = value
    breach["overrides"] = overrides
    breach["legal_source"] = base["breach"]["source"]
    _finish(breach)

    return {
        "key": declared["key"],
        "title": declared["title"],
        "controller": {
            "name": declared["controller"]["name"],
            "contact_email": declared["controller"].get("contact_email"),
            "country": declared["controller"].get("country"),
        },
        "jurisdiction": {
            "regime": regime,
            "country": jur["country"],
            "subdivision": jur.get("subdivision"),
            "timezone": jur["timezone"],
            "calendar": cast(CalendarRules, _calendar(jur, base["calendar"])),
        },
        "rights": rights,
        "response": cast(ResponseRules, {"default": default, "by_type": by_type}),
        "retention": [
            cast(RetentionRule, {**_RETENTION_DEFAULTS, **r})
            for r in declared.get("retention") or []
        ],
        "breach": cast(BreachRules, breach),
        "consent_purposes": [
            cast(ConsentPurposeRule, {**_PURPOSE_DEFAULTS, **p})
            for p in declared.get("consent_purposes") or []
        ],
        "minimum_age": declared.get("minimum_age"),
        "fulfilment": _fulfilment(declared.get("fulfilment")),
        "records": _records(declared.get("records")),
        "change_notice": cast(
            PeriodRule, declared.get("change_notice") or {"value": 0, "unit": "days"}
        ),
        "effective_from": declared.get("effective_from"),
    }
