"""Dated cases from the regulators' own published examples (RULES.md), one row each.

Every expected date below was worked out by hand, not copied from the module: the weekday
and the holiday of each date were checked with Python's `calendar` and the `holidays`
package (0.109), and the `due_at` is the last microsecond of the local day, converted to
UTC with the offset written next to it (Paris CET +1 / CEST +2, London GMT 0 / BST +1,
Toronto EST -5 / EDT -4, Los Angeles PST -8 / PDT -7, Vancouver PST -8 / PDT -7,
São Paulo -3, Casablanca 0 during Ramadan).

Sources (URLs as in RULES.md §7):
  ICO  https://ico.org.uk/for-organisations/uk-gdpr-guidance-and-resources/individual-rights/
       right-of-access/what-should-we-consider-when-responding-to-a-request/
  ICO SAR checklist  https://ico.org.uk/global/sar-checklist-for-smes/i-need-to-complete-a-sar
  GDPR Art. 12  https://gdprhub.eu/index.php?title=Article_12_GDPR
  Reg. 1182/71  https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX:31971R1182
  C-171/03 Toeters  https://eur-lex.europa.eu/legal-content/EN/AUTO/?uri=uriserv:OJ.C_.2005.006.01.0013.02.ENG
  CCPA §7021  https://www.law.cornell.edu/regulations/california/11-CCR-7021
  CCPA §7026  https://www.law.cornell.edu/regulations/california/11-CCR-7026
  PIPEDA s.8 / Interpretation Act  https://proteuscyber.com/privacy-database/pipeda-8 ,
       https://lawi.ca/time-computation
  Québec s.32 / I-16  https://publicitecomportementale.openum.ca/articles/article-32/ ,
       https://calculateurjudiciaire.com/loi-interpretation-rlrq
  LGPD art. 19  https://lgpd-brazil.info/chapter_03/article_19
  ANPD Res. 15/2024  https://trenchrossi.com/alertas-legais/regulamento-de-comunicacao-de-incidente-de-seguranca-
  Morocco 09-08  https://dataprotection.africa/morocco/
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from app.rules import deadlines
from tests.rules.helpers import (
    assert_rules,
    detail_text,
    end_of_day_utc,
    example,
    resolved,
    spotrak_example,
)

PARIS = ZoneInfo("Europe/Paris")
LONDON = ZoneInfo("Europe/London")
TORONTO = ZoneInfo("America/Toronto")
LA = ZoneInfo("America/Los_Angeles")
VANCOUVER = ZoneInfo("America/Vancouver")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
CASABLANCA = ZoneInfo("Africa/Casablanca")

Policy = Callable[[], dict[str, Any]]


def gdpr() -> dict[str, Any]:
    return resolved("gdpr")


def uk() -> dict[str, Any]:
    return resolved("uk_gdpr")


def ccpa() -> dict[str, Any]:
    return resolved("ccpa_cpra")


def pipeda() -> dict[str, Any]:
    return resolved("pipeda")


def quebec() -> dict[str, Any]:
    return example("calitrak")


def bc() -> dict[str, Any]:
    return example("protrack")


def lgpd() -> dict[str, Any]:
    return resolved("lgpd")


def morocco() -> dict[str, Any]:
    return example("caltryx")


# The Ministry of Habous announces Eid al-Fitr 1448 one day after the tabular estimate
# (9-10 March 2027 in `holidays`): the policy moves it with calendar add/remove (DESIGN §4).
def morocco_moon_sighted() -> dict[str, Any]:
    return resolved("morocco_09_08", calendar={"add": ["2027-03-11"], "remove": ["2027-03-09"]})


def _p(
    policy: Policy,
    type_: str,
    received: datetime,
    due_date: date,
    due_at: str,
    rules: tuple[str, ...],
    details: tuple[str, ...] = (),
    *,
    id: str,
) -> Any:
    return pytest.param(policy, type_, received, due_date, due_at, rules, details, id=id)


UK_ANSWER = "UK GDPR Art. 12(3)"
UK_ROLL = "ICO"
GDPR_ANSWER = "GDPR Art. 12(3)"
EU_ROLL = "Reg. 1182/71 Art. 3(4)"
END = "end of the last day"

DUE_CASES = [
    # ---- UK GDPR, ICO worked examples (ICO "calculating the time limit"; SAR checklist) ----
    # ICO SAR checklist: "request on 3 September → until 3 October". 2029-10-03 is a
    # Wednesday, no bank holiday: no roll. BST (+1) → 22:59:59.999999Z.
    _p(
        uk,
        "access",
        datetime(2029, 9, 3, 10, 0, tzinfo=LONDON),
        date(2029, 10, 3),
        end_of_day_utc(date(2029, 10, 3), 1),
        (UK_ANSWER, END),
        ("2029-10-03 (Wednesday)",),
        id="ICO-sar-checklist-3-september-to-3-october-weekday",
    ),
    # Same example in 2026: 2026-10-03 is a Saturday → the next working day, Monday 5 October.
    _p(
        uk,
        "access",
        datetime(2026, 9, 3, 10, 0, tzinfo=LONDON),
        date(2026, 10, 5),
        end_of_day_utc(date(2026, 10, 5), 1),
        (UK_ANSWER, UK_ROLL, END),
        (
            "2026-10-03 is a Saturday: ",
            "→ 2026-10-05 (Monday)",
        ),
        id="ICO-sar-checklist-3-september-to-3-october-saturday-rolls-to-monday",
    ),
    # ICO: "31 January → 28 February (29 February in a leap year)". 2027-02-28 is a Sunday
    # (no corresponding 31st) → rolls to Monday 1 March 2027; GMT (0).
    _p(
        uk,
        "access",
        datetime(2027, 1, 31, 9, 0, tzinfo=LONDON),
        date(2027, 3, 1),
        end_of_day_utc(date(2027, 3, 1), 0),
        (UK_ANSWER, UK_ROLL, END),
        ("February has no day 31", "2027-02-28 is a Sunday"),
        id="ICO-31-january-to-28-february-2027-sunday-rolls-to-1-march",
    ),
    # Leap year: 2028-02-29 is a Tuesday → stands.
    _p(
        uk,
        "access",
        datetime(2028, 1, 31, 9, 0, tzinfo=LONDON),
        date(2028, 2, 29),
        end_of_day_utc(date(2028, 2, 29), 0),
        (UK_ANSWER, END),
        ("February has no day 31",),
        id="ICO-31-january-to-29-february-leap-year-2028",
    ),
    # ICO (digitalcompliancehub quoting ICO): "31 March → 30 April". 2029-04-30 is a Monday,
    # the early May bank holiday is 7 May 2029 → stands; BST.
    _p(
        uk,
        "erasure",
        datetime(2029, 3, 31, 12, 0, tzinfo=LONDON),
        date(2029, 4, 30),
        end_of_day_utc(date(2029, 4, 30), 1),
        (UK_ANSWER, END),
        ("April has no day 31",),
        id="ICO-31-march-to-30-april",
    ),
    # Same in 2028: 30 April is a Sunday, 1 May 2028 is the May Day bank holiday → Tuesday.
    _p(
        uk,
        "erasure",
        datetime(2028, 3, 31, 12, 0, tzinfo=LONDON),
        date(2028, 5, 2),
        end_of_day_utc(date(2028, 5, 2), 1),
        (UK_ANSWER, UK_ROLL, END),
        (
            "2028-04-30 is a Sunday: ",
            "→ 2028-05-02",
        ),
        id="ICO-31-march-to-30-april-2028-sunday-then-may-day",
    ),
    # Lexology summary of ICO: "30 January → 28 February unless leap year". 2029-02-28: Wed.
    _p(
        uk,
        "access",
        datetime(2029, 1, 30, 8, 0, tzinfo=LONDON),
        date(2029, 2, 28),
        end_of_day_utc(date(2029, 2, 28), 0),
        (UK_ANSWER, END),
        ("February has no day 30",),
        id="ICO-30-january-to-28-february-non-leap",
    ),
    _p(
        uk,
        "access",
        datetime(2028, 1, 30, 8, 0, tzinfo=LONDON),
        date(2028, 2, 29),
        end_of_day_utc(date(2028, 2, 29), 0),
        (UK_ANSWER, END),
        (),
        id="ICO-30-january-to-29-february-leap-year",
    ),
    # ICO: "1 April → if 1 May falls on a weekend or public holiday, until the next working
    # day". 1 May 2028 is the early May bank holiday (Monday) → Tuesday 2 May.
    _p(
        uk,
        "access",
        datetime(2028, 4, 1, 8, 0, tzinfo=LONDON),
        date(2028, 5, 2),
        end_of_day_utc(date(2028, 5, 2), 1),
        (UK_ANSWER, UK_ROLL, END),
        ("2028-05-01 is a holiday (May Day)",),
        id="ICO-1-april-to-1-may-bank-holiday-rolls",
    ),
    # ---- EU GDPR (France), Reg. 1182/71 and CJEU C-171/03 Toeters ----
    # The same ICO/1182-71 arithmetic in Paris: 2027-02-28 Sunday → Monday 1 March, CET (+1):
    # due_at 2027-03-01T22:59:59.999999+00:00.
    _p(
        gdpr,
        "access",
        datetime(2027, 1, 31, 10, 0, tzinfo=PARIS),
        date(2027, 3, 1),
        "2027-03-01T22:59:59.999999+00:00",
        (GDPR_ANSWER, EU_ROLL, END),
        (
            "2027-02-28 is a Sunday: ",
            "→ 2027-03-01 (Monday)",
        ),
        id="Reg1182-71-art3(2)(c)-31-january-to-28-february-sunday-paris",
    ),
    # C-171/03 Toeters: the period ends on the same date as the day of the event (3rd → 3rd);
    # 2026-12-03 is a Thursday, no French holiday.
    _p(
        gdpr,
        "access",
        datetime(2026, 11, 3, 16, 45, tzinfo=PARIS),
        date(2026, 12, 3),
        end_of_day_utc(date(2026, 12, 3), 1),
        (GDPR_ANSWER, END),
        ("2026-12-03 (Thursday)",),
        id="CJEU-C-171-03-Toeters-same-date-end",
    ),
    # Receipt is the local date: 23:30 UTC on 31 January 2026 is 00:30 on 1 February in Paris.
    # 1 March 2026 is a Sunday → Monday 2 March.
    _p(
        gdpr,
        "access",
        datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        date(2026, 3, 2),
        end_of_day_utc(date(2026, 3, 2), 1),
        (GDPR_ANSWER, EU_ROLL, END),
        ("from 2026-02-01 (Sunday)",),
        id="Reg1182-71-art3(1)-local-date-of-receipt-in-paris",
    ),
    # Reg. 1182/71 Art. 3(4) with French public holidays (Code du travail L3133-1):
    # 14 July 2027 (Wednesday, Fête nationale) → Thursday 15 July; CEST (+2).
    _p(
        gdpr,
        "rectification",
        datetime(2027, 6, 14, 9, 0, tzinfo=PARIS),
        date(2027, 7, 15),
        end_of_day_utc(date(2027, 7, 15), 2),
        (GDPR_ANSWER, EU_ROLL, END),
        ("2027-07-14 is a holiday (National Day)",),
        id="Reg1182-71-art3(4)-FR-14-july-rolls",
    ),
    # 1 May 2026 (Friday, Fête du travail) → Sat, Sun → Monday 4 May.
    _p(
        gdpr,
        "access",
        datetime(2026, 4, 1, 9, 0, tzinfo=PARIS),
        date(2026, 5, 4),
        end_of_day_utc(date(2026, 5, 4), 2),
        (GDPR_ANSWER, EU_ROLL, END),
        (
            "2026-05-01 is a holiday (Labor Day): ",
            "→ 2026-05-04",
        ),
        id="Reg1182-71-art3(4)-FR-1-may-then-weekend",
    ),
    # 11 November 2027 (Thursday, Armistice) → Friday 12 November; CET again after 31 Oct.
    _p(
        gdpr,
        "erasure",
        datetime(2027, 10, 11, 9, 0, tzinfo=PARIS),
        date(2027, 11, 12),
        end_of_day_utc(date(2027, 11, 12), 1),
        (GDPR_ANSWER, EU_ROLL, END),
        ("2027-11-11 is a holiday (Armistice Day)",),
        id="Reg1182-71-art3(4)-FR-11-november-rolls",
    ),
    # Easter Monday 6 April 2026 → Tuesday 7 April.
    _p(
        gdpr,
        "access",
        datetime(2026, 3, 6, 9, 0, tzinfo=PARIS),
        date(2026, 4, 7),
        end_of_day_utc(date(2026, 4, 7), 2),
        (GDPR_ANSWER, EU_ROLL, END),
        ("2026-04-06 is a holiday (Easter Monday)",),
        id="Reg1182-71-art3(4)-FR-easter-monday-rolls",
    ),
    # Whit Monday 25 May 2026 (lundi de Pentecôte, a legal holiday even if worked) → 26 May.
    _p(
        gdpr,
        "access",
        datetime(2026, 4, 25, 9, 0, tzinfo=PARIS),
        date(2026, 5, 26),
        end_of_day_utc(date(2026, 5, 26), 2),
        (GDPR_ANSWER, EU_ROLL, END),
        ("2026-05-25 is a holiday (Pentecost Monday)",),
        id="Reg1182-71-art3(4)-FR-whit-monday-rolls",
    ),
    # 28 March 2027 is a Sunday and 29 March Easter Monday → Tuesday 30 March (CEST from 28th).
    _p(
        gdpr,
        "access",
        datetime(2027, 2, 28, 9, 0, tzinfo=PARIS),
        date(2027, 3, 30),
        end_of_day_utc(date(2027, 3, 30), 2),
        (GDPR_ANSWER, EU_ROLL, END),
        (
            "2027-03-28 is a Sunday: ",
            "→ 2027-03-30",
        ),
        id="Reg1182-71-art3(4)-FR-sunday-then-easter-monday",
    ),
    # ---- CCPA: 45 calendar days, no roll (RULES §6.5); 15 business days for opt-out ----
    # 11 CCR §7021(b): 2026-11-25 + 45 days = Saturday 9 January 2027, which stands; PST (-8).
    _p(
        ccpa,
        "access",
        datetime(2026, 11, 25, 9, 0, tzinfo=LA),
        date(2027, 1, 9),
        end_of_day_utc(date(2027, 1, 9), -8),
        ("CCPA regs 11 CCR §7021", "CCPA regulations"),
        ("2027-01-09 (Saturday) is not a business day, but it does not move the deadline",),
        id="CCPA-11CCR7021(b)-45-days-ends-saturday-no-roll",
    ),
    # 45 days landing on Christmas Day 2026 (Friday): still no roll.
    _p(
        ccpa,
        "erasure",
        datetime(2026, 11, 10, 9, 0, tzinfo=LA),
        date(2026, 12, 25),
        end_of_day_utc(date(2026, 12, 25), -8),
        ("CCPA regs 11 CCR §7021",),
        (),
        id="CCPA-11CCR7021(b)-45-days-ends-christmas-no-roll",
    ),
    # 11 CCR §7026(f) + RULES §6.6: 15 business days from Friday 20 November 2026 on the
    # federal calendar (Thanksgiving 26 Nov skipped) → Monday 14 December (California's
    # calendar, with the day after Thanksgiving, would give 15 December).
    _p(
        ccpa,
        "opt_out",
        datetime(2026, 11, 20, 9, 0, tzinfo=LA),
        date(2026, 12, 14),
        end_of_day_utc(date(2026, 12, 14), -8),
        ("CCPA regs 11 CCR §7026(f)", END),
        ("holidays skipped: 2026-11-26 Thanksgiving Day",),
        id="CCPA-11CCR7026(f)-15-business-days-thanksgiving-federal-14-december",
    ),
    # Across Christmas 2027 (Sat, observed Fri 24 Dec) and New Year 2028 (Sat, observed Fri
    # 31 Dec): 21,22,23 | 27-30 | 3-7 Jan | 10,11,12 → Wednesday 12 January 2028.
    _p(
        ccpa,
        "opt_out",
        datetime(2027, 12, 20, 9, 0, tzinfo=LA),
        date(2028, 1, 12),
        end_of_day_utc(date(2028, 1, 12), -8),
        ("CCPA regs 11 CCR §7026(f)",),
        ("2027-12-24 Christmas Day (observed)", "2027-12-31 New Year's Day (observed)"),
        id="CCPA-11CCR7026(f)-15-business-days-observed-christmas-new-year",
    ),
    # ---- PIPEDA s.8(3) + Interpretation Act s.26/s.35: Sundays and holidays roll, not
    # Saturdays ----
    # 2026-12-31 + 30 days = Saturday 30 January 2027 → stands (EST -5).
    _p(
        pipeda,
        "access",
        datetime(2026, 12, 31, 9, 0, tzinfo=TORONTO),
        date(2027, 1, 30),
        end_of_day_utc(date(2027, 1, 30), -5),
        ("PIPEDA s.8(3)-(4)", "Interpretation Act", END),
        ("2027-01-30 (Saturday) is not a business day, but it does not move the deadline",),
        id="PIPEDA-s8(3)-30-days-saturday-does-not-roll",
    ),
    # 2027-01-01 + 30 = Sunday 31 January → Monday 1 February.
    _p(
        pipeda,
        "access",
        datetime(2027, 1, 1, 9, 0, tzinfo=TORONTO),
        date(2027, 2, 1),
        end_of_day_utc(date(2027, 2, 1), -5),
        ("PIPEDA s.8(3)-(4)", "Interpretation Act", END),
        ("2027-01-31 is a Sunday",),
        id="PIPEDA-s8(3)-interpretation-act-s26-sunday-rolls",
    ),
    # Canada Day Thursday 1 July 2027 → Friday 2 July (EDT -4).
    _p(
        pipeda,
        "access",
        datetime(2027, 6, 1, 9, 0, tzinfo=TORONTO),
        date(2027, 7, 2),
        end_of_day_utc(date(2027, 7, 2), -4),
        ("PIPEDA s.8(3)-(4)", "Interpretation Act"),
        ("2027-07-01 is a holiday (Canada Day)",),
        id="PIPEDA-s8(3)-interpretation-act-s35-canada-day-rolls",
    ),
    # Canada Day on Saturday 1 July 2028 is still a holiday (s.35), so it rolls → Sunday →
    # Monday 3 July (the statute has no substitute day, so Monday is a working day).
    _p(
        pipeda,
        "access",
        datetime(2028, 6, 1, 9, 0, tzinfo=TORONTO),
        date(2028, 7, 3),
        end_of_day_utc(date(2028, 7, 3), -4),
        ("PIPEDA s.8(3)-(4)", "Interpretation Act"),
        (
            "2028-07-01 is a holiday (Canada Day): ",
            "→ 2028-07-03",
        ),
        id="PIPEDA-s8(3)-interpretation-act-s35-canada-day-on-saturday-rolls",
    ),
    # Easter Monday 29 March 2027 (added to the federal list, s.35) → Tuesday 30 March.
    _p(
        pipeda,
        "access",
        datetime(2027, 2, 27, 9, 0, tzinfo=TORONTO),
        date(2027, 3, 30),
        end_of_day_utc(date(2027, 3, 30), -4),
        ("PIPEDA s.8(3)-(4)", "Interpretation Act"),
        ("2027-03-29 is a holiday (Easter Monday)",),
        id="PIPEDA-s8(3)-interpretation-act-s35-easter-monday-rolls",
    ),
    # ---- Québec P-39.1 s.32 + Loi d'interprétation I-16 s.52, s.61(23) ----
    # 24 June 2027 (Thursday, fête nationale) → Friday 25 June.
    _p(
        quebec,
        "access",
        datetime(2027, 5, 25, 9, 0, tzinfo=TORONTO),
        date(2027, 6, 25),
        end_of_day_utc(date(2027, 6, 25), -4),
        ("Québec P-39.1 s.32", "Loi d'interprétation"),
        ("2027-06-24 is a holiday",),
        id="Quebec-P39.1-s32-I16-s61-saint-jean-baptiste-rolls",
    ),
    # Journée nationale des patriotes, Monday 24 May 2027 (the Sovereign's birthday date,
    # s.61(23)(i)) → Tuesday 25 May.
    _p(
        quebec,
        "access",
        datetime(2027, 4, 24, 9, 0, tzinfo=TORONTO),
        date(2027, 5, 25),
        end_of_day_utc(date(2027, 5, 25), -4),
        ("Québec P-39.1 s.32", "Loi d'interprétation"),
        ("2027-05-24 is a holiday",),
        id="Quebec-P39.1-s32-I16-s61-patriots-day-rolls",
    ),
    # s.61(23)(f): "le 1er juillet … ou le 2 juillet si le 1er tombe un dimanche". 1 July 2029
    # is a Sunday, so Monday 2 July is a jour férié too → Tuesday 3 July.
    _p(
        quebec,
        "access",
        datetime(2029, 6, 1, 9, 0, tzinfo=TORONTO),
        date(2029, 7, 3),
        end_of_day_utc(date(2029, 7, 3), -4),
        ("Québec P-39.1 s.32", "Loi d'interprétation"),
        (
            "2029-07-01 is a holiday (Canada Day): ",
            "→ 2029-07-03",
        ),
        id="Quebec-I16-s61(23)(f)-2-july-when-canada-day-is-sunday",
    ),
    # s.61(23) has no substitute day for Christmas: Monday 27 December 2027 (a labour-law
    # "observed" day in the holidays package) is not a jour férié → the date stands (EST).
    _p(
        quebec,
        "access",
        datetime(2027, 11, 27, 9, 0, tzinfo=TORONTO),
        date(2027, 12, 27),
        end_of_day_utc(date(2027, 12, 27), -5),
        ("Québec P-39.1 s.32", END),
        (),
        id="Quebec-I16-s61(23)-no-observed-christmas-monday",
    ),
    # Nor for New Year: Monday 3 January 2028 stands.
    _p(
        quebec,
        "access",
        datetime(2027, 12, 4, 9, 0, tzinfo=TORONTO),
        date(2028, 1, 3),
        end_of_day_utc(date(2028, 1, 3), -5),
        ("Québec P-39.1 s.32", END),
        (),
        id="Quebec-I16-s61(23)-no-observed-new-year-monday",
    ),
    # ---- BC PIPA s.29 + s.1 ("day" excludes Saturdays and holidays): 30 working days ----
    # From Monday 20 July 2026, BC Day (3 August) skipped → Tuesday 1 September (PDT -7).
    _p(
        bc,
        "access",
        datetime(2026, 7, 20, 9, 0, tzinfo=VANCOUVER),
        date(2026, 9, 1),
        end_of_day_utc(date(2026, 9, 1), -7),
        ("BC PIPA s.29 and s.31", END),
        ("2026-08-03 British Columbia Day",),
        id="BC-PIPA-s29-30-business-days-across-bc-day",
    ),
    # From Monday 26 January 2026, Family Day (16 February) skipped → Tuesday 10 March (PDT
    # from 8 March).
    _p(
        bc,
        "access",
        datetime(2026, 1, 26, 9, 0, tzinfo=VANCOUVER),
        date(2026, 3, 10),
        end_of_day_utc(date(2026, 3, 10), -7),
        ("BC PIPA s.29 and s.31", END),
        ("2026-02-16 Family Day",),
        id="BC-PIPA-s29-30-business-days-across-family-day",
    ),
    # ---- LGPD art. 19 II (15 days) + Código Civil art. 132 ----
    # 2026-11-05 + 15 = Friday 20 November (Consciência Negra, national since Lei 14.759/23)
    # → Monday 23 November (São Paulo -3).
    _p(
        lgpd,
        "access",
        datetime(2026, 11, 5, 9, 0, tzinfo=SAO_PAULO),
        date(2026, 11, 23),
        end_of_day_utc(date(2026, 11, 23), -3),
        ("LGPD art. 19 II", "Código Civil art. 132"),
        ("2026-11-20 is a holiday",),
        id="LGPD-art19-II-15-days-black-awareness-day-rolls",
    ),
    # Carnival Tuesday 9 February 2027 is a ponto facultativo, not a holiday: it stands.
    _p(
        lgpd,
        "access",
        datetime(2027, 1, 25, 9, 0, tzinfo=SAO_PAULO),
        date(2027, 2, 9),
        end_of_day_utc(date(2027, 2, 9), -3),
        ("LGPD art. 19 II", END),
        (),
        id="LGPD-art19-II-15-days-carnival-is-a-business-day",
    ),
    # ---- Morocco 09-08 art. 8: ten days, next working day ----
    # 2027-02-28 + 10 = Wednesday 10 March, Eid al-Fitr (estimated 9-10 March) → 11 March.
    # Casablanca is on UTC+0 during Ramadan per tzdata → 23:59:59.999999Z.
    _p(
        morocco,
        "erasure",
        datetime(2027, 2, 28, 9, 0, tzinfo=CASABLANCA),
        date(2027, 3, 11),
        end_of_day_utc(date(2027, 3, 11), 0),
        ("Law 09-08 art. 8", "Moroccan practice"),
        ("2027-03-10 is a holiday (Eid al-Fitr (estimated))",),
        id="Morocco-09-08-art8-10-days-estimated-eid-rolls",
    ),
    # Moon sighting moves Eid to 10-11 March (calendar add 11, remove 9): 9 March is now a
    # working day and stands …
    _p(
        morocco_moon_sighted,
        "erasure",
        datetime(2027, 2, 27, 9, 0, tzinfo=CASABLANCA),
        date(2027, 3, 9),
        end_of_day_utc(date(2027, 3, 9), 0),
        ("Law 09-08 art. 8", END),
        (),
        id="Morocco-09-08-art8-calendar-remove-estimated-eid",
    ),
    # … and 10 March rolls over the added 11 March to Friday 12 March.
    _p(
        morocco_moon_sighted,
        "erasure",
        datetime(2027, 2, 28, 9, 0, tzinfo=CASABLANCA),
        date(2027, 3, 12),
        end_of_day_utc(date(2027, 3, 12), 0),
        ("Law 09-08 art. 8", "Moroccan practice"),
        ("2027-03-10 is a holiday", "→ 2027-03-12"),
        id="Morocco-09-08-art8-calendar-add-moon-sighted-eid-rolls",
    ),
]


@pytest.mark.parametrize(
    ("policy", "type_", "received", "due_date", "due_at", "rules", "details"), DUE_CASES
)
def test_response_due_date_follows_the_regulators_example(
    policy: Policy,
    type_: str,
    received: datetime,
    due_date: date,
    due_at: str,
    rules: tuple[str, ...],
    details: tuple[str, ...],
) -> None:
    result = deadlines.dsar_deadlines(policy(), type=type_, received_at=received)
    assert result.due_date == due_date
    assert result.due_at is not None
    assert result.due_at.isoformat() == due_at
    assert result.due_at.tzinfo is UTC
    assert result.clock_started_at == received
    assert_rules(result.explanation, rules)
    text = detail_text(result.explanation)
    for fragment in details:
        assert fragment in text, text


def test_paris_winter_due_at_is_2259_utc() -> None:
    """The DESIGN §5 example, spelled out: a day-based deadline ends at the last microsecond
    of its local day (Paris CET +1 → 22:59:59.999999 UTC)."""
    result = deadlines.dsar_deadlines(
        gdpr(), type="access", received_at=datetime(2027, 1, 31, 10, tzinfo=PARIS)
    )
    assert result.due_at == datetime(2027, 3, 1, 22, 59, 59, 999_999, tzinfo=UTC)


# ---- acknowledgements ----------------------------------------------------------------------

ACK_CASES = [
    # 11 CCR §7021(a): confirm receipt within 10 business days (federal calendar, RULES §6.6).
    # From Friday 20 Nov 2026: 23,24,25 | (26 Thanksgiving) 27 | 30 | 1-4 Dec | 7 → 7 December.
    pytest.param(
        ccpa,
        datetime(2026, 11, 20, 9, tzinfo=LA),
        date(2026, 12, 7),
        "CCPA regs 11 CCR §7021",
        "2026-11-26 Thanksgiving Day",
        id="CCPA-11CCR7021(a)-10-business-days-across-thanksgiving",
    ),
    # From Friday 18 Dec 2026: 21-24 | (25 Christmas) | 28-31 | (1 Jan) | 4, 5 → 5 January.
    pytest.param(
        ccpa,
        datetime(2026, 12, 18, 9, tzinfo=LA),
        date(2027, 1, 5),
        "CCPA regs 11 CCR §7021",
        "2026-12-25 Christmas Day",
        id="CCPA-11CCR7021(a)-10-business-days-across-christmas-and-new-year",
    ),
    # Observed days (5 U.S.C. 6103(b)): Fri 24 Dec 2027 and Fri 31 Dec 2027 → 5 January 2028.
    pytest.param(
        ccpa,
        datetime(2027, 12, 20, 9, tzinfo=LA),
        date(2028, 1, 5),
        "CCPA regs 11 CCR §7021",
        "2027-12-31 New Year's Day (observed)",
        id="CCPA-11CCR7021(a)-10-business-days-observed-holidays",
    ),
    # RULES §8: Spotrak's own promise, 5 business days on the French calendar. From Thursday
    # 7 May 2026: (8 May Victoire) 11, 12, 13, (14 Ascension) 15, 18 → Monday 18 May.
    pytest.param(
        lambda: example("spotrak"),
        datetime(2026, 5, 7, 9, tzinfo=PARIS),
        date(2026, 5, 18),
        "policy promise",
        "the policy's own promise",
        id="RULES-s8-spotrak-policy-promise-5-business-days",
    ),
]


@pytest.mark.parametrize(("policy", "received", "ack", "rule", "fragment"), ACK_CASES)
def test_acknowledgement_date(
    policy: Policy, received: datetime, ack: date, rule: str, fragment: str
) -> None:
    result = deadlines.dsar_deadlines(policy(), type="access", received_at=received)
    assert result.acknowledge_by == ack
    step = next(s for s in result.explanation if s.detail.startswith("Acknowledge receipt"))
    assert step.rule.startswith(rule)
    assert fragment in step.detail


def test_spotrak_promise_does_not_replace_the_gdpr_month() -> None:
    """RULES §8: the acknowledgement is the policy's promise, the answer still the GDPR month."""
    result = deadlines.dsar_deadlines(
        example("spotrak"), type="access", received_at=datetime(2026, 5, 7, 9, tzinfo=PARIS)
    )
    assert result.due_date == date(2026, 6, 8)  # 7 June 2026 is a Sunday → Monday 8 June
    assert_rules(result.explanation, ("GDPR Art. 12(3)", "policy promise", "GDPR Art. 12(3)"))


# ---- extensions ----------------------------------------------------------------------------


def gdpr_month_plus_30_days() -> dict[str, Any]:
    return resolved("gdpr", response={"default": {"extension": {"value": 30, "unit": "days"}}})


EXTENSION_CASES = [
    # ICO: "calculate the extension as three months from the original start date". From
    # 31 January 2027: 30 April 2027 (Friday; April has no 31st), NOT one month after the
    # rolled first deadline (1 March + 2 months = 1 May). BST (+1).
    pytest.param(
        uk,
        "access",
        datetime(2027, 1, 31, 9, tzinfo=LONDON),
        date(2027, 3, 1),
        date(2027, 4, 30),
        end_of_day_utc(date(2027, 4, 30), 1),
        date(2027, 3, 1),
        UK_ANSWER,
        id="ICO-extension-three-months-from-original-start-31-january",
    ),
    # 3 September 2026 → 3 December 2026 (Thursday), GMT.
    pytest.param(
        uk,
        "access",
        datetime(2026, 9, 3, 9, tzinfo=LONDON),
        date(2026, 10, 5),
        date(2026, 12, 3),
        end_of_day_utc(date(2026, 12, 3), 0),
        date(2026, 10, 5),
        UK_ANSWER,
        id="ICO-extension-three-months-3-september-to-3-december",
    ),
    # GDPR Art. 12(3), Paris: 30 November 2026 + 3 months = 28 Feb 2027 (Sunday) → 1 March.
    pytest.param(
        gdpr,
        "access",
        datetime(2026, 11, 30, 9, tzinfo=PARIS),
        date(2026, 12, 30),
        date(2027, 3, 1),
        "2027-03-01T22:59:59.999999+00:00",
        date(2026, 12, 30),
        GDPR_ANSWER,
        id="GDPR-art12(3)-extension-three-months-clamped-and-rolled",
    ),
    # PIPEDA s.8(4): at most 30 more days → 60 days from 1 Jan 2027 = Tuesday 2 March (EST).
    pytest.param(
        pipeda,
        "access",
        datetime(2027, 1, 1, 9, tzinfo=TORONTO),
        date(2027, 2, 1),
        date(2027, 3, 2),
        end_of_day_utc(date(2027, 3, 2), -5),
        date(2027, 2, 1),
        "PIPEDA s.8(3)-(4)",
        id="PIPEDA-s8(4)-extension-30-more-days",
    ),
    # 11 CCR §7021(b): at most 90 calendar days from receipt: 25 Nov 2026 → 23 Feb 2027; the
    # notice of extension is due within the first 45 days (9 January, no roll).
    pytest.param(
        ccpa,
        "access",
        datetime(2026, 11, 25, 9, tzinfo=LA),
        date(2027, 1, 9),
        date(2027, 2, 23),
        end_of_day_utc(date(2027, 2, 23), -8),
        date(2027, 1, 9),
        "CCPA regs 11 CCR §7021",
        id="CCPA-11CCR7021(b)-extension-90-days-maximum",
    ),
    # BC PIPA s.31: 30 + 30 working days from 20 July 2026, skipping BC Day, Labour Day
    # (7 Sep), Truth and Reconciliation (30 Sep) and Thanksgiving (12 Oct) → 16 October (PDT).
    pytest.param(
        bc,
        "access",
        datetime(2026, 7, 20, 9, tzinfo=VANCOUVER),
        date(2026, 9, 1),
        date(2026, 10, 16),
        end_of_day_utc(date(2026, 10, 16), -7),
        date(2026, 9, 1),
        "BC PIPA s.29 and s.31",
        id="BC-PIPA-s31-extension-30-more-working-days",
    ),
    # An extension in another unit than the base period (a policy's own 30 days after the
    # GDPR month): counted from the end of the first period before any roll (28 February
    # 2027, a Sunday), like the ICO's "from the original start" — so 30 March 2027, not
    # 31 March (which is what counting from the rolled 1 March gives).
    pytest.param(
        gdpr_month_plus_30_days,
        "access",
        datetime(2027, 1, 31, 9, tzinfo=PARIS),
        date(2027, 3, 1),
        date(2027, 3, 30),
        end_of_day_utc(date(2027, 3, 30), 2),
        date(2027, 3, 1),
        "policy promise",
        id="GDPR-art12(3)-policy-extension-in-days-after-a-month-not-from-rolled-date",
    ),
]


@pytest.mark.parametrize(
    ("policy", "type_", "received", "due", "extended", "extended_at", "notice_by", "rule"),
    EXTENSION_CASES,
)
def test_extension_counts_from_the_original_start(
    policy: Policy,
    type_: str,
    received: datetime,
    due: date,
    extended: date,
    extended_at: str,
    notice_by: date,
    rule: str,
) -> None:
    first = deadlines.dsar_deadlines(policy(), type=type_, received_at=received)
    result = deadlines.dsar_deadlines(policy(), type=type_, received_at=received, extended=True)
    assert first.extended_due_date == result.extended_due_date
    assert result.due_date == due
    assert result.extension_allowed
    assert result.extended_due_date == extended
    assert result.extended_due_at is not None
    assert result.extended_due_at.isoformat() == extended_at
    assert result.extension_notice_by == notice_by
    extended_steps = [s for s in result.explanation if s.detail.startswith("Extended:")]
    assert len(extended_steps) == 1
    assert extended_steps[0].rule.startswith(rule)
    assert not [s for s in first.explanation if s.detail.startswith("Extended:")]


def test_quebec_has_no_extension() -> None:
    result = deadlines.dsar_deadlines(
        quebec(), type="access", received_at=datetime(2027, 5, 25, 9, tzinfo=TORONTO)
    )
    assert not result.extension_allowed
    assert result.extended_due_date is None
    assert any(s.detail == "This rule allows no extension" for s in result.explanation)


# ---- clock start: verified identity --------------------------------------------------------


def gdpr_verified() -> dict[str, Any]:
    return resolved("gdpr", response={"default": {"clock_starts": "verified"}})


VERIFICATION_CASES = [
    # ICO / RULES §1.1 and §6(2): the month restarts on receipt of the identity information.
    # Verified 20 January 2027 → 20 February (Saturday) → Monday 22 February.
    pytest.param(
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        datetime(2027, 1, 20, 15, tzinfo=PARIS),
        date(2027, 2, 22),
        False,
        id="ICO-RULES-s6(2)-clock-restarts-at-verified-identity",
    ),
    # Not verified yet: the dates are provisional, counted from receipt (10 Feb, Wednesday).
    pytest.param(
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        None,
        date(2027, 2, 10),
        True,
        id="ICO-RULES-s6(2)-provisional-before-verification",
    ),
    # UK GDPR Art. 12A: the relevant time is the LATEST of receipt and identity information;
    # identity already known before the request → the clock starts at receipt.
    pytest.param(
        datetime(2027, 1, 10, 10, tzinfo=PARIS),
        datetime(2027, 1, 5, 10, tzinfo=PARIS),
        date(2027, 2, 10),
        False,
        id="UK-GDPR-art12A-relevant-time-is-the-latest-of-receipt-and-identity",
    ),
]


@pytest.mark.parametrize(("received", "verified", "due", "provisional"), VERIFICATION_CASES)
def test_clock_start_at_verified_identity(
    received: datetime, verified: datetime | None, due: date, provisional: bool
) -> None:
    result = deadlines.dsar_deadlines(
        gdpr_verified(), type="access", received_at=received, verified_at=verified
    )
    assert result.provisional is provisional
    assert result.due_date == due
    assert result.due_at == datetime.combine(due, datetime.max.time(), tzinfo=PARIS).astimezone(UTC)
    expected_start = max(received, verified) if verified is not None else received
    assert result.clock_started_at == expected_start
    # the clock start is the policy's choice; the month is still the GDPR's
    assert_rules(result.explanation, ("policy promise", GDPR_ANSWER, END))
    text = detail_text(result.explanation)
    assert ("provisional" in text) is provisional


def test_acknowledgement_counts_from_receipt_even_when_the_clock_waits_for_identity() -> None:
    policy = resolved("ccpa_cpra", response={"default": {"clock_starts": "verified"}})
    result = deadlines.dsar_deadlines(
        policy,
        type="access",
        received_at=datetime(2026, 11, 20, 9, tzinfo=LA),
        verified_at=datetime(2026, 12, 1, 9, tzinfo=LA),
    )
    assert result.acknowledge_by == date(2026, 12, 7)
    assert result.due_date == date(2027, 1, 15)  # 1 Dec 2026 + 45 days


def test_a_controller_instruction_rule_governs_only_controller_requests() -> None:
    """Officetrax (processor): 30 business days for a client's erasure instruction."""
    officetrax = example("officetrax")
    received = datetime(2027, 6, 1, 9, tzinfo=TORONTO)
    subject = deadlines.dsar_deadlines(officetrax, type="erasure", received_at=received)
    client = deadlines.dsar_deadlines(
        officetrax, type="erasure", received_at=received, requester="controller"
    )
    assert subject.due_date == date(2027, 7, 2)  # 30 days → Canada Day → 2 July
    # 30 business days from Tue 1 June 2027: 2-4 | 7-11 | 14-18 | 21-25 | 28-30 June (21),
    # (Canada Day 1 July) 2 (22) | 5-9 (27) | 12, 13, 14 July (30)
    assert client.due_date == date(2027, 7, 14)
    assert_rules(client.explanation, ("policy promise",))


# ---- breaches ------------------------------------------------------------------------------

GDPR_BREACH = "GDPR Art. 33(1)/34(1)"

BREACH_CASES = [
    # GDPR Art. 33(1): 72 clock hours; 1182/71 Art. 3(4) does not roll periods in hours.
    # Spring DST in Paris (29 March 2026, 02:00 → 03:00): Fri 10:00 CET = 09:00Z → Mon
    # 09:00Z = 11:00 CEST (the wall clock shows 73 hours later; the law counts 72).
    pytest.param(
        gdpr,
        datetime(2026, 3, 27, 10, tzinfo=PARIS),
        "high_risk",
        "2026-03-30T09:00:00+00:00",
        None,
        GDPR_BREACH,
        "2026-03-30 11:00",
        id="GDPR-art33(1)-72-hours-across-EU-spring-DST-paris",
    ),
    # Autumn DST (25 October 2026, 03:00 → 02:00): Thu 10:00 CEST = 08:00Z → Sun 08:00Z =
    # 09:00 CET, on a Sunday and not rolled.
    pytest.param(
        gdpr,
        datetime(2026, 10, 22, 10, tzinfo=PARIS),
        "risk",
        "2026-10-25T08:00:00+00:00",
        None,
        GDPR_BREACH,
        "2026-10-25 09:00",
        id="GDPR-art33(1)-72-hours-across-EU-autumn-DST-sunday-no-roll",
    ),
    # UK (ICO breach guide): 72 hours across BST starting 29 March 2026 01:00 GMT.
    pytest.param(
        uk,
        datetime(2026, 3, 28, 12, tzinfo=LONDON),
        "risk",
        "2026-03-31T12:00:00+00:00",
        None,
        "UK GDPR Art. 33(1)/34(1)",
        "2026-03-31 13:00",
        id="ICO-breach-72-hours-across-UK-spring-DST",
    ),
    pytest.param(
        uk,
        datetime(2026, 10, 23, 9, tzinfo=LONDON),
        "risk",
        "2026-10-26T08:00:00+00:00",
        None,
        "UK GDPR Art. 33(1)/34(1)",
        "2026-10-26 08:00",
        id="ICO-breach-72-hours-across-UK-autumn-DST",
    ),
    # ANPD Res. 15/2024 art. 6: 3 business days. From Friday 5 Feb 2027: Carnival Mon 8 and
    # Tue 9 are business days (ponto facultativo), Ash Wednesday 10 → 10 February.
    pytest.param(
        lgpd,
        datetime(2027, 2, 5, 9, tzinfo=SAO_PAULO),
        "risk",
        end_of_day_utc(date(2027, 2, 10), -3),
        end_of_day_utc(date(2027, 2, 10), -3),
        "Res. CD/ANPD 15/2024",
        "2027-02-10 (Wednesday)",
        id="ANPD-Res15-2024-art6-3-business-days-carnival-counts",
    ),
    # From Friday 17 April 2026: Mon 20, (Tue 21 Tiradentes), Wed 22, Thu 23 → 23 April.
    pytest.param(
        lgpd,
        datetime(2026, 4, 17, 9, tzinfo=SAO_PAULO),
        "high_risk",
        end_of_day_utc(date(2026, 4, 23), -3),
        end_of_day_utc(date(2026, 4, 23), -3),
        "Res. CD/ANPD 15/2024",
        "2026-04-21 Tiradentes' Day",
        id="ANPD-Res15-2024-art6-3-business-days-across-tiradentes",
    ),
    # From Wednesday 18 Nov 2026: Thu 19, (Fri 20 Consciência Negra), Mon 23, Tue 24.
    pytest.param(
        lgpd,
        datetime(2026, 11, 18, 9, tzinfo=SAO_PAULO),
        "risk",
        end_of_day_utc(date(2026, 11, 24), -3),
        end_of_day_utc(date(2026, 11, 24), -3),
        "Res. CD/ANPD 15/2024",
        "2026-11-20 National Day of Zumbi",
        id="ANPD-Res15-2024-art6-3-business-days-across-20-november",
    ),
    # RULES §8: Spotrak promises to tell its users within 72 hours whatever the risk (GDPR
    # Art. 34 only at high risk, with no number): the promise drives the clock.
    pytest.param(
        spotrak_example,
        datetime(2026, 10, 22, 10, tzinfo=PARIS),
        "risk",
        "2026-10-25T08:00:00+00:00",
        "2026-10-25T08:00:00+00:00",
        "policy promise",
        "whatever the risk",
        id="RULES-s8-spotrak-policy-promise-subjects-72-hours-always",
    ),
]


@pytest.mark.parametrize(
    ("policy", "aware", "risk", "authority_at", "subjects_at", "rule", "fragment"),
    BREACH_CASES,
)
def test_breach_clock(
    policy: Policy,
    aware: datetime,
    risk: Any,
    authority_at: str,
    subjects_at: str | None,
    rule: str,
    fragment: str,
) -> None:
    result = deadlines.breach_deadlines(policy(), aware_at=aware, risk=risk)
    assert result.authority_notification_required
    assert result.authority_due_at is not None
    assert result.authority_due_at.isoformat() == authority_at
    if subjects_at is None:
        assert result.subjects_due_at is None
    else:
        assert result.subjects_notification_required
        assert result.subjects_due_at is not None
        assert result.subjects_due_at.isoformat() == subjects_at
    assert_rules(result.explanation, (rule,))
    assert fragment in detail_text(result.explanation)
    # hours never roll forward: no roll step in a 72-hour clock
    if authority_at.endswith(":00:00+00:00"):
        assert not [s for s in result.explanation if "next working day" in s.detail]


def test_gdpr_tells_people_only_at_high_risk_unlike_spotraks_promise() -> None:
    aware = datetime(2026, 10, 22, 10, tzinfo=PARIS)
    law = deadlines.breach_deadlines(gdpr(), aware_at=aware, risk="risk")
    promise = deadlines.breach_deadlines(spotrak_example(), aware_at=aware, risk="risk")
    assert not law.subjects_notification_required
    assert law.subjects_due_at is None
    assert promise.subjects_notification_required
    assert promise.subjects_due_at == datetime(2026, 10, 25, 8, tzinfo=UTC)
    promise_steps = [s for s in promise.explanation if s.rule == "policy promise"]
    assert any("only when the risk is high" in s.detail for s in promise_steps)
    # at high risk the GDPR names the duty but sets no number
    high = deadlines.breach_deadlines(gdpr(), aware_at=aware, risk="high_risk")
    assert high.subjects_notification_required
    assert high.subjects_due_at is None
    assert "no fixed period (no number of hours or days)" in detail_text(high.explanation)


def test_unlikely_risk_needs_no_authority_notice_under_gdpr() -> None:
    result = deadlines.breach_deadlines(
        gdpr(), aware_at=datetime(2026, 1, 5, 9, tzinfo=PARIS), risk="unlikely"
    )
    assert not result.authority_notification_required
    assert result.authority_due_at is None
    assert not result.subjects_notification_required


def test_processor_tells_its_controller() -> None:
    policy = resolved("gdpr", breach={"controller_within": {"value": 24, "unit": "hours"}})
    result = deadlines.breach_deadlines(
        policy, aware_at=datetime(2026, 3, 28, 12, tzinfo=PARIS), risk="high_risk", role="processor"
    )
    assert result.controller_notification_required
    assert result.controller_due_at == datetime(2026, 3, 29, 11, tzinfo=UTC)
    assert not result.authority_notification_required
    assert_rules(result.explanation, ("awareness", "GDPR Art. 33(2)", "policy promise"))
