"""The reports (DESIGN §15) against the test's own count, in JSON and in CSV, on SQLite and on
PostgreSQL (every test here takes `client`, so runs on both).

Data is back-dated with the pinned clock: each ticket is received, moved and closed at
instants the test chooses, so every figure (counts, on time or late against the due instant
the API answered, days to close, percentiles) is computed here from the API's own answers
and compared with what the database computed.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import MutableClock, auth_headers, spotrak_body
from tests.consent.helpers import consent_policy

POLICY_AT = datetime(2026, 1, 1, tzinfo=UTC)
FROM, TO = "2027-01-01", "2027-04-01"
REPORT_NOW = datetime(2027, 4, 10, 12, 0, tzinfo=UTC)
CSV = {"Accept": "text/csv"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def one_decimal(x: float | None) -> float | None:
    if x is None:
        return None
    return float(Decimal(str(round(x, 9))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def percentile_cont(values: list[float], p: float) -> float | None:
    """PostgreSQL's definition, in Python."""
    if not values:
        return None
    v = sorted(values)
    h = p * (len(v) - 1)
    lo = math.floor(h)
    hi = math.ceil(h)
    return v[lo] + (v[hi] - v[lo]) * (h - lo)


def ccpa_body(key: str = "calco") -> dict[str, Any]:
    body = spotrak_body(key)
    body["jurisdiction"] = {
        "regime": "ccpa_cpra",
        "country": "US",
        "subdivision": "CA",
        "timezone": "America/Los_Angeles",
    }
    body["rights"] = ["access", "rectification", "erasure", "opt_out"]
    for k in ("response", "breach"):
        body.pop(k, None)
    return body


class Desk:
    """Creates and moves tickets at chosen instants (the pinned clock), keeping what the API
    answered."""

    def __init__(self, client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock):
        self.client, self.auth, self.clock = client, auth, clock
        self.tickets: dict[str, dict[str, Any]] = {}

    async def policy(self, body: dict[str, Any]) -> None:
        self.clock.pinned = POLICY_AT
        r = await self.client.post("/v1/policies", headers=self.auth, json=body)
        assert r.status_code == 201, r.text

    async def open(self, policy: str, type: str, received: str, regime: str) -> str:
        self.clock.pinned = at(received) + timedelta(minutes=1)
        r = await self.client.post(
            "/v1/dsars",
            headers=self.auth,
            json={
                "policy_key": policy,
                "type": type,
                "subject": {"id": f"s-{len(self.tickets)}"},
                "received_at": received,
            },
        )
        assert r.status_code == 201, r.text
        t = r.json()
        t["regime"] = regime
        self.tickets[t["id"]] = t
        return str(t["id"])

    async def move(self, tid: str, to: str, when: str, **extra: Any) -> dict[str, Any]:
        self.clock.pinned = at(when)
        r = await self.client.post(
            f"/v1/dsars/{tid}/transitions", headers=self.auth, json={"to": to, **extra}
        )
        assert r.status_code == 200, r.text
        self.tickets[tid].update(r.json())
        return dict(r.json())

    async def complete(self, tid: str, when: str) -> None:
        await self.move(tid, "in_progress", when)
        await self.move(tid, "completed", when)

    async def extend(self, tid: str, when: str) -> None:
        self.clock.pinned = at(when)
        r = await self.client.post(
            f"/v1/dsars/{tid}/extension", headers=self.auth, json={"reason": "Six systems"}
        )
        assert r.status_code == 200, r.text
        self.tickets[tid].update(r.json())


async def _dsar_dataset(desk: Desk) -> None:
    await desk.policy(spotrak_body())
    await desk.policy(ccpa_body())
    # spotrak (GDPR, one month): on time, late, extended then on time, rejected, withdrawn,
    # open and overdue, open and not yet due; and one received before the range
    a = await desk.open("spotrak", "access", "2027-01-04T09:00:00Z", "gdpr")
    await desk.complete(a, "2027-01-20T15:00:00Z")  # 16.25 days, on time
    b = await desk.open("spotrak", "access", "2027-01-05T10:00:00Z", "gdpr")
    await desk.complete(b, "2027-02-25T10:00:00Z")  # 51 days, late
    c = await desk.open("spotrak", "access", "2027-01-06T08:00:00Z", "gdpr")
    await desk.extend(c, "2027-01-10T08:00:00Z")
    await desk.complete(c, "2027-03-01T08:00:00Z")  # 54 days, within the extended due
    d = await desk.open("spotrak", "erasure", "2027-02-01T12:00:00Z", "gdpr")
    await desk.complete(d, "2027-02-03T00:00:00Z")  # 1.5 days
    e = await desk.open("spotrak", "erasure", "2027-02-02T12:00:00Z", "gdpr")
    await desk.move(
        e,
        "rejected",
        "2027-02-10T12:00:00Z",
        reason="Repeats 3 earlier requests",
        reason_code="manifestly_unfounded",
    )
    f = await desk.open("spotrak", "access", "2027-02-03T12:00:00Z", "gdpr")
    await desk.move(f, "withdrawn", "2027-02-04T12:00:00Z")
    await desk.open("spotrak", "access", "2027-01-10T12:00:00Z", "gdpr")  # open, overdue
    h = await desk.open("spotrak", "erasure", "2027-03-25T12:00:00Z", "gdpr")
    await desk.move(h, "in_progress", "2027-03-26T12:00:00Z")  # open, not yet due
    x = await desk.open("spotrak", "access", "2026-12-30T12:00:00Z", "gdpr")
    await desk.complete(x, "2027-01-02T12:00:00Z")  # received before the range
    # calco (CCPA, 45 days)
    k = await desk.open("calco", "access", "2027-01-01T09:00:00Z", "ccpa_cpra")
    await desk.complete(k, "2027-01-20T09:00:00Z")  # 19 days
    m = await desk.open("calco", "access", "2027-02-01T00:00:00Z", "ccpa_cpra")
    await desk.move(
        m,
        "rejected",
        "2027-02-11T12:00:00Z",
        reason="No answer to our ID request",
        reason_code="identity_not_verified",
    )
    o = await desk.open("calco", "opt_out", "2027-03-01T00:00:00Z", "ccpa_cpra")
    await desk.complete(o, "2027-03-20T00:00:00Z")  # 19 days, late (15 business days)


def _expected_rows(
    tickets: list[dict[str, Any]], dims: list[str], now: datetime
) -> dict[tuple[Any, ...], dict[str, Any]]:
    start, end = at(FROM + "T00:00:00Z"), at(TO + "T00:00:00Z")
    names = {"regime": "regime", "type": "type", "policy": "policy_key"}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for t in tickets:
        if start <= at(t["received_at"]) < end:
            groups[tuple(t[names[d]] for d in dims)].append(t)
    out = {}
    for key, ts in groups.items():
        done = [t for t in ts if t["status"] == "completed"]
        on_time = [t for t in done if t["due_at"] is None or at(t["closed_at"]) <= at(t["due_at"])]
        days = [(at(t["closed_at"]) - at(t["received_at"])).total_seconds() / 86400 for t in done]
        open_ = [
            t for t in ts if t["status"] in ("received", "awaiting_verification", "in_progress")
        ]
        out[key] = {
            "received": len(ts),
            "completed": len(done),
            "completed_on_time": len(on_time),
            "completed_late": len(done) - len(on_time),
            "rejected": sum(t["status"] == "rejected" for t in ts),
            "withdrawn": sum(t["status"] == "withdrawn" for t in ts),
            "open": len(open_),
            "overdue": sum(at(t["due_at"]) < now for t in open_ if t["due_at"]),
            "median_days_to_close": one_decimal(percentile_cont(days, 0.5)),
            "mean_days_to_close": one_decimal(sum(days) / len(days)) if days else None,
            "p90_days_to_close": one_decimal(percentile_cont(days, 0.9)),
            "on_time_rate": len(on_time) / len(done) if done else None,
        }
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_csv(r: httpx.Response) -> list[dict[str, str]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith("attachment; filename=")
    text = r.content.decode("utf-8")
    assert text.endswith("\r\n")  # RFC 4180 line ends
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_dsar_report_matches_the_tests_own_count_in_json_and_csv(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    desk = Desk(client, auth, clock)
    await _dsar_dataset(desk)
    tickets = list(desk.tickets.values())
    # sanity of the story the data tells (due instants are the API's)
    assert sum(t["status"] == "completed" for t in tickets) == 7
    assert any(t["extended"] and t["status"] == "completed" for t in tickets)
    clock.pinned = REPORT_NOW
    for group_by, dims in [
        ("regime,type", ["regime", "type"]),
        ("policy", ["policy"]),
        ("type,policy,regime", ["type", "policy", "regime"]),
        ("", []),
    ]:
        params = {"from": FROM, "to": TO, "group_by": group_by}
        r = await client.get("/v1/reports/dsar", headers=auth, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["from"] == "2027-01-01T00:00:00Z"
        assert body["to"] == "2027-04-01T00:00:00Z"
        assert body["group_by"] == dims
        expected = _expected_rows(tickets, dims, REPORT_NOW)
        names = {"regime": "regime", "type": "type", "policy": "policy_key"}
        got = {tuple(row[names[d]] for d in dims): row for row in body["rows"]}
        assert set(got) == set(expected)
        for key, want in expected.items():
            row = got[key]
            for field, value in want.items():
                assert row[field] == value, (group_by, key, field)
            for dim in set(names) - set(dims):
                assert row[names[dim]] is None
        # the same figures as CSV, in the same order
        c = await client.get("/v1/reports/dsar", headers={**auth, **CSV}, params=params)
        lines = _parse_csv(c)
        assert len(lines) == len(body["rows"])
        for line, row in zip(lines, body["rows"], strict=True):
            assert list(line) == list(row)
            for field, value in row.items():
                if isinstance(value, float):
                    assert float(line[field]) == value
                else:
                    assert line[field] == _cell(value), field
    # a figure spelled out, as a person would check it: GDPR access tickets
    r = await client.get("/v1/reports/dsar", headers=auth, params={"from": FROM, "to": TO})
    access = next(x for x in r.json()["rows"] if (x["regime"], x["type"]) == ("gdpr", "access"))
    assert access["received"] == 5  # a, b, c, f, g (x was received in 2026)
    assert (access["completed"], access["completed_on_time"], access["completed_late"]) == (3, 2, 1)
    assert (access["withdrawn"], access["open"], access["overdue"]) == (1, 1, 1)
    assert access["median_days_to_close"] == 51.0  # of 16.25, 51, 54
    assert access["mean_days_to_close"] == 40.4  # 121.25 / 3 = 40.41…
    assert access["p90_days_to_close"] == 53.4  # 51 + 0.8 * 3
    assert access["on_time_rate"] == pytest.approx(2 / 3)


async def test_days_to_close_percentiles_equal_percentile_cont_computed_here(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    """Many durations with uneven gaps: the database's interpolated median and p90 (PostgreSQL
    percentile_cont; SQLite window functions) equal PostgreSQL's definition computed here."""
    desk = Desk(client, auth, clock)
    await desk.policy(spotrak_body())
    rng = random.Random(17)
    days: list[float] = []
    for i in range(23):
        received = datetime(2027, 1, 1, tzinfo=UTC) + timedelta(hours=7 * i)
        tid = await desk.open(
            "spotrak", "erasure", received.isoformat().replace("+00:00", "Z"), "gdpr"
        )
        took = timedelta(minutes=rng.randint(30, 60 * 24 * 40))
        await desk.complete(tid, (received + took).isoformat())
        days.append(took.total_seconds() / 86400)
    clock.pinned = REPORT_NOW
    r = await client.get(
        "/v1/reports/dsar", headers=auth, params={"from": FROM, "to": TO, "group_by": "type"}
    )
    [row] = r.json()["rows"]
    assert row["completed"] == 23
    assert row["median_days_to_close"] == one_decimal(percentile_cont(days, 0.5))
    assert row["p90_days_to_close"] == one_decimal(percentile_cont(days, 0.9))
    assert row["mean_days_to_close"] == one_decimal(sum(days) / len(days))


async def test_ccpa_metrics_count_kinds_denials_by_reason_and_the_local_year(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    desk = Desk(client, auth, clock)
    await desk.policy(ccpa_body())
    await desk.policy(spotrak_body())  # GDPR: not counted without policy_key
    # 03:00Z on 1 January is still 31 December in Los Angeles: year 2026
    await desk.open("calco", "access", "2027-01-01T03:00:00Z", "ccpa_cpra")
    k1 = await desk.open("calco", "access", "2027-01-01T09:00:00Z", "ccpa_cpra")
    await desk.complete(k1, "2027-01-20T09:00:00Z")  # 19.0
    k2 = await desk.open("calco", "access", "2027-02-01T00:00:00Z", "ccpa_cpra")
    await desk.move(
        k2,
        "rejected",
        "2027-02-11T12:00:00Z",
        reason="Unverified",
        reason_code="identity_not_verified",
    )  # 10.5
    await desk.open("calco", "access", "2028-01-01T07:30:00Z", "ccpa_cpra")  # 23:30 local, 2027
    d1 = await desk.open("calco", "erasure", "2027-03-01T00:00:00Z", "ccpa_cpra")
    await desk.complete(d1, "2027-03-04T12:00:00Z")  # 3.5
    d2 = await desk.open("calco", "erasure", "2027-03-02T00:00:00Z", "ccpa_cpra")
    await desk.move(d2, "rejected", "2027-03-03T00:00:00Z", reason="No code given")  # 1.0
    c1 = await desk.open("calco", "rectification", "2027-04-01T00:00:00Z", "ccpa_cpra")
    await desk.move(
        c1, "rejected", "2027-04-05T00:00:00Z", reason="Exempt", reason_code="exemption"
    )  # 4.0
    o1 = await desk.open("calco", "opt_out", "2027-05-01T00:00:00Z", "ccpa_cpra")
    await desk.complete(o1, "2027-05-02T00:00:00Z")  # 1.0
    o2 = await desk.open("calco", "opt_out", "2027-05-02T00:00:00Z", "ccpa_cpra")
    await desk.move(o2, "withdrawn", "2027-05-03T00:00:00Z")
    g = await desk.open("spotrak", "access", "2027-06-01T00:00:00Z", "gdpr")
    await desk.complete(g, "2027-06-02T00:00:00Z")

    clock.pinned = datetime(2028, 2, 1, tzinfo=UTC)
    zero = {
        "identity_not_verified": 0,
        "manifestly_unfounded": 0,
        "excessive": 0,
        "exemption": 0,
        "no_data": 0,
        "other": 0,
        "unspecified": 0,
    }
    expected = {
        "know": (3, 1, 1, {"identity_not_verified": 1}, 14.8, 14.8),  # 14.75 half up
        "delete": (2, 1, 1, {"unspecified": 1}, 2.3, 2.3),  # 2.25 half up
        "correct": (1, 0, 1, {"exemption": 1}, 4.0, 4.0),
        "opt_out": (2, 1, 0, {}, 1.0, 1.0),
        "limit": (0, 0, 0, {}, None, None),
    }
    for params in ({"year": 2027}, {"year": "2027", "policy_key": "calco"}, {}):
        r = await client.get("/v1/reports/ccpa-metrics", headers=auth, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["year"] == 2027  # the default is the previous year
        assert body["policy_keys"] == ["calco"]
        assert list(body["kinds"]) == ["know", "delete", "correct", "opt_out", "limit"]
        for kind, (rec, comp, den, codes, median, mean) in expected.items():
            m = body["kinds"][kind]
            assert m["received"] == rec, kind
            assert m["complied_in_whole_or_part"] == comp, kind
            assert m["denied"] == {"total": den, "by_reason_code": {**zero, **codes}}, kind
            assert m["median_days_to_respond"] == median, kind
            assert m["mean_days_to_respond"] == mean, kind
        lines = _parse_csv(
            await client.get("/v1/reports/ccpa-metrics", headers={**auth, **CSV}, params=params)
        )
        assert [line["kind"] for line in lines] == list(expected)
        for line in lines:
            m = body["kinds"][line["kind"]]
            assert line["year"] == "2027"
            assert int(line["received"]) == m["received"]
            assert int(line["complied_in_whole_or_part"]) == m["complied_in_whole_or_part"]
            assert int(line["denied_total"]) == m["denied"]["total"]
            for code, n in m["denied"]["by_reason_code"].items():
                assert int(line[f"denied_{code}"]) == n
            assert line["median_days_to_respond"] == _cell(m["median_days_to_respond"])
            assert line["mean_days_to_respond"] == _cell(m["mean_days_to_respond"])
    # 2026 holds the request received on 31 December, local time
    r = await client.get("/v1/reports/ccpa-metrics", headers=auth, params={"year": 2026})
    assert r.json()["kinds"]["know"]["received"] == 1
    # a GDPR policy asked for by key is reported too (its own timezone)
    r = await client.get(
        "/v1/reports/ccpa-metrics", headers=auth, params={"year": 2027, "policy_key": "spotrak"}
    )
    assert r.json()["kinds"]["know"]["complied_in_whole_or_part"] == 1


async def test_rejection_reason_code_is_recorded_and_only_taken_when_rejecting(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    desk = Desk(client, auth, clock)
    await desk.policy(spotrak_body())
    tid = await desk.open("spotrak", "access", "2027-01-04T09:00:00Z", "gdpr")
    clock.pinned = at("2027-01-05T09:00:00Z")
    r = await client.post(
        f"/v1/dsars/{tid}/transitions",
        headers=auth,
        json={"to": "in_progress", "reason_code": "excessive"},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "reason_code"]
    r = await client.post(
        f"/v1/dsars/{tid}/transitions",
        headers=auth,
        json={"to": "rejected", "reason": "x", "reason_code": "because"},
    )
    assert r.status_code == 422
    assert "because" not in r.text  # never echoed
    t = await desk.move(tid, "rejected", "2027-01-06T09:00:00Z", reason="x", reason_code="no_data")
    assert t["status_reason_code"] == "no_data"
    r = await client.get(f"/v1/dsars/{tid}", headers=auth)
    assert r.json()["status_reason_code"] == "no_data"
    events = (await client.get(f"/v1/dsars/{tid}/events", headers=auth)).json()["items"]
    assert events[-1]["data"]["reason_code"] == "no_data"


async def test_consent_report_counts_per_purpose_and_interval(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = POLICY_AT
    r = await client.post("/v1/policies", headers=auth, json=consent_policy())
    assert r.status_code == 201, r.text
    clock.pinned = REPORT_NOW
    # (subject, purpose, action, occurred_at, GPC signal)
    events = [
        ("s1", "audience_cookies", "granted", "2027-03-01T10:00:00Z", False),
        ("s2", "audience_cookies", "granted", "2027-03-02T10:00:00Z", False),
        ("s2", "audience_cookies", "withdrawn", "2027-03-09T10:00:00Z", False),
        ("s3", "audience_cookies", "denied", "2027-03-07T23:30:00Z", False),
        ("s4", "audience_cookies", "granted", "2027-03-15T10:00:00Z", True),
        ("s1", "ad_personalisation", "granted", "2027-02-27T10:00:00Z", False),
        ("s5", "sale_of_data", "granted", "2027-03-31T23:59:00Z", False),
        ("s6", "audience_cookies", "granted", "2027-04-01T00:00:00Z", False),  # after `to`
        ("s7", "audience_cookies", "denied", "2027-02-21T23:59:59Z", False),  # before `from`
    ]
    for subject, purpose, action, when, gpc in events:
        r = await client.post(
            "/v1/consent-events",
            headers={**auth, **({"Sec-GPC": "1"} if gpc else {})},
            json={
                "policy_key": "spotrak",
                "subject_id": subject,
                "purpose": purpose,
                "action": action,
                "occurred_at": when,
            },
        )
        assert r.status_code == 201, r.text
    gpc_purposes = ["ad_personalisation", "sale_of_data"]  # honors_gpc in the helper's policy
    start, end = at("2027-02-22T00:00:00Z"), at("2027-04-01T00:00:00Z")

    def bucket(d: date, interval: str) -> date:
        if interval == "day":
            return d
        if interval == "week":
            return d - timedelta(days=d.weekday())
        return d.replace(day=1)

    for interval in ("day", "week", "month"):
        want: dict[tuple[str, date], Counter[str]] = defaultdict(Counter)
        for _subject, purpose, action, when, gpc in events:
            if not start <= at(when) < end:
                continue
            want[(purpose, bucket(at(when).date(), interval))][action] += 1
            if gpc:
                for p in gpc_purposes:
                    want[(p, bucket(at(when).date(), interval))]["gpc_applied"] += 1
        params = {"from": "2027-02-22", "to": "2027-04-01", "interval": interval}
        r = await client.get("/v1/reports/consent", headers=auth, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["interval"] == interval
        by_purpose = {p["purpose"]: p for p in body["purposes"]}
        assert set(by_purpose) == {"audience_cookies", "ad_personalisation", "sale_of_data"}
        assert by_purpose["audience_cookies"]["opted_in_now"] == 3  # s1, s4, s6
        assert by_purpose["ad_personalisation"]["opted_in_now"] == 1  # s1 (s4: GPC)
        assert by_purpose["sale_of_data"]["opted_in_now"] == 1  # s5
        n_intervals = {"day": 38, "week": 6, "month": 2}[interval]
        seen = 0
        for p in body["purposes"]:
            assert len(p["intervals"]) == n_intervals
            assert p["intervals"][0]["start"] == "2027-02-22T00:00:00Z"  # cut at `from`
            assert p["intervals"][-1]["end"] == "2027-04-01T00:00:00Z"
            for i in p["intervals"]:
                first = bucket(at(i["start"]).date(), interval)
                counts = want.get((p["purpose"], first), Counter())
                for field in ("granted", "denied", "withdrawn", "gpc_applied"):
                    assert i[field] == counts[field], (interval, p["purpose"], i["start"], field)
                seen += sum(i[f] for f in ("granted", "denied", "withdrawn", "gpc_applied"))
        assert seen == 7 + 2  # seven events in range, two GPC opt-outs
        lines = _parse_csv(
            await client.get("/v1/reports/consent", headers={**auth, **CSV}, params=params)
        )
        flat = [
            {
                **{
                    k: i[k]
                    for k in ("start", "end", "granted", "denied", "withdrawn", "gpc_applied")
                },
                "policy_key": p["policy_key"],
                "purpose": p["purpose"],
                "opted_in_now": p["opted_in_now"],
            }
            for p in body["purposes"]
            for i in p["intervals"]
        ]
        assert len(lines) == len(flat)
        for line, row in zip(lines, flat, strict=True):
            assert line == {k: _cell(v) for k, v in row.items()}


async def test_breach_register_lists_notices_due_sent_lateness_and_reasons(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock
) -> None:
    clock.pinned = POLICY_AT
    r = await client.post("/v1/policies", headers=auth, json=spotrak_body())
    assert r.status_code == 201, r.text

    async def incident(title: str, aware: str, risk: str) -> dict[str, Any]:
        clock.pinned = at(aware) + timedelta(hours=1)
        r = await client.post(
            "/v1/breaches",
            headers=auth,
            json={
                "policy_key": "spotrak",
                "title": title,
                "aware_at": aware,
                "occurred_at": aware,
                "data_categories": ["contact", "billing"],
                "subjects_affected": 1200,
                "risk": risk,
                "description": '=HYPERLINK("x") laptop left on a train',
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    before = await incident("Old incident", "2026-12-01T10:00:00Z", "risk")
    laptop = await incident("Lost laptop", "2027-01-10T10:00:00Z", "risk")
    clock.pinned = at("2027-01-11T10:00:00Z")
    r = await client.patch(
        f"/v1/breaches/{laptop['id']}",
        headers=auth,
        json={"risk": "high_risk", "reason": "Backups were unencrypted"},
    )
    assert r.status_code == 200, r.text
    clock.pinned = at("2027-01-12T10:00:00Z")
    r = await client.post(
        f"/v1/breaches/{laptop['id']}/notifications",
        headers=auth,
        json={"audience": "authority", "sent_at": "2027-01-12T09:00:00Z", "reference": "CNIL-1"},
    )
    assert r.status_code == 201, r.text
    clock.pinned = at("2027-01-20T12:00:00Z")
    r = await client.post(
        f"/v1/breaches/{laptop['id']}/notifications",
        headers=auth,
        json={
            "audience": "subjects",
            "sent_at": "2027-01-20T10:00:00Z",
            "late_reason": "Addresses had to be reconstructed",
        },
    )
    assert r.status_code == 201, r.text
    laptop = r.json()
    silent = await incident("Misdirected e-mail", "2027-02-01T10:00:00Z", "high_risk")
    clock.pinned = at("2027-02-10T10:00:00Z")

    r = await client.get("/v1/reports/breaches", headers=auth, params={"from": FROM, "to": TO})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["id"] for i in body["incidents"]] == [laptop["id"], silent["id"]]
    entry = body["incidents"][0]
    assert entry["title"] == "Lost laptop"
    assert entry["data_categories"] == ["contact", "billing"]
    assert entry["subjects_affected"] == 1200
    assert entry["risk"] == "high_risk"
    assert [(h["from"], h["to"], h["reason"]) for h in entry["risk_history"]] == [
        (None, "risk", None),
        ("risk", "high_risk", "Backups were unencrypted"),
    ]
    notices = {n["audience"]: n for n in entry["notices"]}
    assert set(notices) == {"authority", "subjects"}
    auth_due, subj_due = at(laptop["authority_due_at"]), at(laptop["subjects_due_at"])
    assert notices["authority"]["due_at"] == laptop["authority_due_at"]
    assert notices["authority"]["sent_at"] == "2027-01-12T09:00:00Z"
    assert notices["authority"]["late"] is False
    assert notices["authority"]["late_by_hours"] is None
    assert notices["authority"]["reference"] == "CNIL-1"
    assert notices["subjects"]["late"] is True
    hours = (at("2027-01-20T10:00:00Z") - subj_due).total_seconds() / 3600
    assert notices["subjects"]["late_by_hours"] == one_decimal(hours)
    assert notices["subjects"]["late_reason"] == "Addresses had to be reconstructed"
    assert auth_due < at("2027-01-20T10:00:00Z")
    # the silent incident: both notices required, not sent, late now
    pending = body["incidents"][1]["notices"]
    assert [(n["audience"], n["sent_at"], n["late"]) for n in pending] == [
        ("authority", None, True),
        ("subjects", None, True),
    ]
    assert body["incidents"][1]["overdue"] is True
    # no bounds: the whole register
    r = await client.get("/v1/reports/breaches", headers=auth)
    assert [i["id"] for i in r.json()["incidents"]] == [before["id"], laptop["id"], silent["id"]]
    # CSV: one line per notice, the incident's facts repeated
    lines = _parse_csv(
        await client.get(
            "/v1/reports/breaches", headers={**auth, **CSV}, params={"from": FROM, "to": TO}
        )
    )
    assert len(lines) == 4
    assert [(x["incident_id"], x["notice_audience"]) for x in lines] == [
        (laptop["id"], "authority"),
        (laptop["id"], "subjects"),
        (silent["id"], "authority"),
        (silent["id"], "subjects"),
    ]
    assert lines[1]["notice_late"] == "true"
    assert lines[1]["notice_late_reason"] == "Addresses had to be reconstructed"
    assert float(lines[1]["notice_late_by_hours"]) == one_decimal(hours)
    assert lines[0]["data_categories"] == "contact; billing"
    assert "Backups were unencrypted" in lines[0]["risk_history"]
    # a spreadsheet formula is neutralised
    assert lines[0]["description"].startswith("'=HYPERLINK")


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"from": "2027-03-01", "to": "2027-01-01"}, "from"),
        ({"from": "2020-01-01", "to": "2025-01-02"}, "to"),  # five years and a day
        ({"from": "2027-01-01T00:00:00", "to": "2027-02-01"}, "from"),  # naive
        ({"from": "2027-01-01", "to": "2027-02-01T10:00"}, "to"),  # naive
        ({"from": "0.5", "to": "2027-02-01"}, "from"),
        ({"from": "2027-02-30", "to": "2027-03-01"}, "from"),
        ({"from": "2027-01-01", "to": "9999-12-31T23:00:00-05:00"}, "to"),  # beyond the range
        ({"from": "0001-01-01", "to": "2027-03-01"}, "from"),
    ],
)
async def test_bad_ranges_are_422_problems(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], loc: str
) -> None:
    for path in ("/v1/reports/dsar", "/v1/reports/consent", "/v1/reports/breaches"):
        r = await client.get(path, headers=auth, params=params)
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["code"] == "report_range_invalid"
        assert body["errors"][0]["loc"] == ["query", loc]


async def test_ranges_take_dates_and_instants_with_offsets(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.get(
        "/v1/reports/dsar",
        headers=auth,
        params={"from": "2027-01-01T00:00:00+01:00", "to": "2031-12-31T23:00:00Z"},  # 5 years
    )
    assert r.status_code == 200, r.text
    assert r.json()["from"] == "2026-12-31T23:00:00Z"
    # an unencoded '+' arrives as a space: read as the offset it was
    r = await client.get(
        "/v1/reports/dsar?from=2027-01-01T00:00:00+01:00&to=2027-02-01Z", headers=auth
    )
    assert r.status_code == 422  # '2027-02-01Z' is neither a date nor an instant
    r = await client.get(
        "/v1/reports/dsar?from=2027-01-01T00:00:00+01:00&to=2027-02-01", headers=auth
    )
    assert r.status_code == 200, r.text
    assert r.json()["from"] == "2026-12-31T23:00:00Z"


async def test_other_parameters_and_policies_are_checked(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    r = await client.get("/v1/reports/dsar", headers=auth, params={"group_by": "regime,month"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "group_by"]
    r = await client.get("/v1/reports/consent", headers=auth, params={"interval": "year"})
    assert r.status_code == 422
    r = await client.get("/v1/reports/ccpa-metrics", headers=auth, params={"year": "2027.5"})
    assert r.status_code == 422
    for path in ("/v1/reports/dsar", "/v1/reports/ccpa-metrics", "/v1/reports/consent"):
        r = await client.get(path, headers=auth, params={"policy_key": "nope"})
        assert r.status_code == 404, path
        assert r.json()["code"] == "policy_not_found"


async def test_reports_need_the_reports_scope_and_stay_in_the_tenant(
    client: httpx.AsyncClient, auth: dict[str, str], clock: MutableClock, tenant: str
) -> None:
    desk = Desk(client, auth, clock)
    await desk.policy(spotrak_body())
    await desk.open("spotrak", "access", "2027-01-04T09:00:00Z", "gdpr")
    clock.pinned = REPORT_NOW
    others = auth_headers(tenant + "-other")
    for path in (
        "/v1/reports/dsar",
        "/v1/reports/ccpa-metrics",
        "/v1/reports/consent",
        "/v1/reports/breaches",
    ):
        r = await client.get(path, headers=auth_headers(tenant, ["dsar:read", "consent:read"]))
        assert r.status_code == 403, path
        r = await client.get(path)
        assert r.status_code == 401, path
    for group_by in ("regime,type", ""):
        r = await client.get(
            "/v1/reports/dsar",
            headers=others,
            params={"from": FROM, "to": TO, "group_by": group_by},
        )
        assert r.json()["rows"] == []
    r = await client.get("/v1/reports/dsar", headers=auth, params={"from": FROM, "to": TO})
    assert r.json()["rows"][0]["received"] == 1


async def test_json_is_the_default_and_csv_is_negotiated(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for accept, kind in [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("text/csv", "text/csv; charset=utf-8"),
        ("text/csv;q=0.9, application/json;q=0.5", "text/csv; charset=utf-8"),
        ("application/json, text/csv;q=0.5", "application/json"),
    ]:
        headers = dict(auth)
        if accept is not None:
            headers["Accept"] = accept
        r = await client.get("/v1/reports/breaches", headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"] == kind, accept
        assert r.headers["vary"] == "Accept"


def test_openapi_documents_json_and_csv_for_every_report() -> None:
    from app.main import create_app
    from tests.conftest import make_settings

    spec = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    for path, op_id in [
        ("/v1/reports/dsar", "getDsarReport"),
        ("/v1/reports/ccpa-metrics", "getCcpaMetrics"),
        ("/v1/reports/consent", "getConsentReport"),
        ("/v1/reports/breaches", "getBreachRegister"),
    ]:
        op = spec["paths"][path]["get"]
        assert op["operationId"] == op_id
        content = op["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv"}
        assert op["security"] == [{"HTTPBearer": []}]
