"""Hand-worked statements of tenants with billing calendars through ``billing simulate``: each
``--month`` bills, for such a tenant, every period that starts in that month in its own time zone
(a UTC calendar month stays the month close's). Plans: starter 29.00 per interval, queries 1-1,000
at 0.01; pro 99.00; yearly A 1,200.00 and yearly B 2,400.00, both billed in advance. Queries carry
no tokens, so they cost nothing at list prices and the usage lines are 0.00."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest
import yaml

from billing_cli import _load
from tests.conftest import CHDB_PATH
from tests.support import run_simulate

PLANS = {
    "currency": "usd",
    "plans": [
        {"id": "starter", "name": "Starter", "base_fee": "29.00", "trial_days": 0,
         "query_tiers": [{"up_to": 1000, "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.008"}]},
        {"id": "pro", "name": "Pro", "base_fee": "99.00", "trial_days": 0,
         "query_tiers": [{"up_to": None, "unit_price": "0.008"}]},
        {"id": "year_a", "name": "Yearly A", "base_fee": "1200.00", "trial_days": 0, "in_advance": True,
         "query_tiers": [{"up_to": None, "unit_price": "0"}]},
        {"id": "year_b", "name": "Yearly B", "base_fee": "2400.00", "trial_days": 0, "in_advance": True,
         "query_tiers": [{"up_to": None, "unit_price": "0"}]},
    ],
}  # fmt: skip


def cal(time_zone: str, anchor: str = "calendar", interval: str = "month") -> list[dict]:
    return [{"time_zone": time_zone, "anchor": anchor, "interval": interval}]


def plans(*pairs: tuple[str, str]) -> list[dict]:
    return [{"plan": p, "effective_at": at} for p, at in pairs]


TENANTS = [
    {"id": "anna24", "plans": plans(("starter", "2024-01-31T00:00:00Z")), "calendars": cal("UTC", "2024-01-31T00:00:00Z")},
    {"id": "anna25", "plans": plans(("starter", "2025-01-31T00:00:00Z")), "calendars": cal("UTC", "2025-01-31T00:00:00Z")},
    {"id": "india", "plans": plans(("starter", "2025-01-31T18:30:00Z")), "calendars": cal("Asia/Kolkata")},
    {"id": "la", "plans": plans(("starter", "2025-03-01T08:00:00Z"), ("pro", "2025-03-16T07:00:00Z")),
     "calendars": cal("America/Los_Angeles")},
    {"id": "yearly", "plans": plans(("year_a", "2024-01-01T00:00:00Z"), ("year_b", "2025-05-01T00:00:00Z")),
     "calendars": cal("UTC", interval="year")},
    {"id": "weekly", "plans": plans(("starter", "2025-03-03T00:00:00Z")), "calendars": cal("UTC", interval="week")},
    {"id": "leaver", "plans": plans(("starter", "2025-01-31T18:30:00Z")), "calendars": cal("Asia/Kolkata"),
     "canceled_at": "2025-03-15T18:30:00Z"},
]  # fmt: skip


def q(tenant: str, event_id: str, ts: str) -> dict:
    return {"event_id": event_id, "tenant_id": tenant, "timestamp": ts, "type": "query"}


EVENTS = [
    q("anna25", "a25-1", "2025-02-27T23:59:59.999Z"),
    q("anna25", "a25-2", "2025-02-28T00:00:00Z"),
    q("india", "in-1", "2025-02-28T18:00:00Z"),  # 23:30 on 28 February in Kolkata
    q("india", "in-2", "2025-02-28T19:00:00Z"),  # 00:30 on 1 March in Kolkata, the same UTC day
    q("leaver", "lv-1", "2025-03-15T18:29:59.999Z"),  # 23:59:59.999 on 15 March in Kolkata
    q("leaver", "lv-2", "2025-03-15T18:30:00Z"),  # at the cancellation: refused
    q("weekly", "wk-1", "2025-03-09T23:59:59.999Z"),  # Sunday night: the first week
    q("weekly", "wk-2", "2025-03-10T00:00:00Z"),  # Monday: the second
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[dict, list[dict]]]:
    """month -> (tenant, period key) -> invoice row, and the line rows, of one simulate run each."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    root = tmp_path_factory.mktemp("calendars")
    (root / "plans.yaml").write_text(yaml.safe_dump(PLANS))
    (root / "tenants.yaml").write_text(yaml.safe_dump(TENANTS))
    out = {}
    for month in ("2024-01", "2024-02", "2025-01", "2025-02", "2025-03"):
        (root / month).mkdir()
        run = run_simulate(
            root / month, EVENTS, tenants=root / "tenants.yaml", plans=root / "plans.yaml", month=month
        )
        invoices = {
            (r["tenant_id"], r["month"]): r for r in csv.DictReader(run.invoices.read_text().splitlines())
        }
        out[month] = (invoices, list(csv.DictReader(run.lines.read_text().splitlines())))
    mp.undo()
    return out


def bill(runs, month: str, tenant: str) -> list[tuple[str, str, Decimal, Decimal]]:
    """(period key, invoice date, total, queries) of each statement of ``tenant`` in the run."""
    return [
        (key, r["invoice_date"], Decimal(r["total_cost_usd"]), Decimal(r["total_queries"]))
        for (t, key), r in sorted(runs[month][0].items())
        if t == tenant
    ]


def lines(runs, month: str, tenant: str, kind: str = "base_fee") -> list[tuple[str, Decimal, str]]:
    return [
        (l["line_id"], Decimal(l["amount"]), l["description"])
        for l in runs[month][1]
        if l["tenant_id"] == tenant and l["kind"] == kind
    ]


def test_an_anniversary_on_31_january_through_february_and_march_leap_and_not(runs):
    """Anchored at 31 January 00:00 UTC, each period starts on the 31st or the month's last day:
    2024 (leap, no usage: the price book starts in 2025): 31 Jan-29 Feb (29.00; last day 28 Feb),
    then 29 Feb-31 Mar (29.00; last day 30 Mar). 2025: 31 Jan-28 Feb (a25-1, its last millisecond:
    29.01, last day 27 Feb), then 28 Feb-31 Mar (a25-2, its first: 29.01). One whole fee each,
    never prorated."""
    assert bill(runs, "2024-01", "anna24") == [
        ("2024-01-31T00:00:00Z/2024-02-29T00:00:00Z", "2024-02-28", Decimal("29.00"), 0)
    ]
    assert bill(runs, "2024-02", "anna24") == [
        ("2024-02-29T00:00:00Z/2024-03-31T00:00:00Z", "2024-03-30", Decimal("29.00"), 0)
    ]
    assert bill(runs, "2025-01", "anna25") == [
        ("2025-01-31T00:00:00Z/2025-02-28T00:00:00Z", "2025-02-27", Decimal("29.01"), 1)
    ]
    assert bill(runs, "2025-02", "anna25") == [
        ("2025-02-28T00:00:00Z/2025-03-31T00:00:00Z", "2025-03-30", Decimal("29.01"), 1)
    ]
    assert lines(runs, "2025-01", "anna25") == [
        ("base:starter:1", Decimal("29.00"), "Starter plan, 31 Jan - 27 Feb 2025")
    ]


def test_a_kolkata_boundary_splits_a_utc_day_s_usage(runs):
    """28 February 2025 UTC holds in-1 at 18:00 (23:30 local, February) and in-2 at 19:00 (00:30
    on 1 March local): the February period (31 Jan 18:30 to 28 Feb 18:30 UTC) bills in-1, March
    (28 Feb 18:30 to 31 Mar 18:30 UTC) bills in-2: 29.00 + 0.01 = 29.01 each, dated on the local
    last day."""
    assert bill(runs, "2025-02", "india") == [
        ("2025-01-31T18:30:00Z/2025-02-28T18:30:00Z", "2025-02-28", Decimal("29.01"), 1)
    ]
    assert bill(runs, "2025-03", "india") == [
        ("2025-02-28T18:30:00Z/2025-03-31T18:30:00Z", "2025-03-31", Decimal("29.01"), 1)
    ]


def test_a_los_angeles_march_across_the_dst_change(runs):
    """March 2025 in Los Angeles is 1 Mar 08:00 UTC (PST) to 1 Apr 07:00 UTC (PDT): 743 hours, as
    clocks spring forward on 9 March. Starter to the upgrade at local midnight on 16 March (07:00 UTC):
    359 h, 29.00 x 359/743 = 14.0121 -> 14.01; pro for the 384 h left: 99.00 x 384/743 = 51.1655 ->
    51.17. Total 65.18."""
    assert bill(runs, "2025-03", "la") == [
        ("2025-03-01T08:00:00Z/2025-04-01T07:00:00Z", "2025-03-31", Decimal("65.18"), 0)
    ]
    assert [(i, a) for i, a, _ in lines(runs, "2025-03", "la")] == [
        ("base:starter:1", Decimal("14.01")),
        ("base:pro:1", Decimal("51.17")),
    ]


def test_a_yearly_plan_upgraded_in_month_5_with_its_fee_in_advance(runs):
    """Yearly A (1,200.00 a year, in advance) since 2024, so 2025's fee was billed on 2024's
    statement; upgraded to Yearly B (2,400.00) on 1 May 2025. 2025 by the second: A for 120 days
    (1,200 x 120/365 = 394.5205), B for 245 days (2,400 x 245/365 = 1,610.9589), 2,005.4795 in all,
    of which 1,200.00 was billed: the difference for the rest of the period is 805.4795 -> 805.48.
    And 2026 in advance on B: 2,400.00. Total 3,205.48."""
    assert bill(runs, "2025-01", "yearly") == [
        ("2025-01-01T00:00:00Z/2026-01-01T00:00:00Z", "2025-12-31", Decimal("3205.48"), 0)
    ]
    assert [(i, a) for i, a, _ in lines(runs, "2025-01", "yearly")] == [
        ("base:advance-settlement", Decimal("805.48")),
        ("base:year_b:advance", Decimal("2400.00")),
    ]


def test_a_weekly_plan(runs):
    """Weeks start on Monday 00:00 UTC: from 3 March 2025, the weeks starting 3, 10, 17, 24 and
    31 March are March's, 29.00 each; wk-1 (Sunday 23:59:59.999) is the first week's query, wk-2
    (Monday 00:00) the second's: 29.01, 29.01, 29.00, 29.00, 29.00."""
    got = bill(runs, "2025-03", "weekly")
    assert [(key[:10], total) for key, _, total, _ in got] == [
        ("2025-03-03", Decimal("29.01")),
        ("2025-03-10", Decimal("29.01")),
        ("2025-03-17", Decimal("29.00")),
        ("2025-03-24", Decimal("29.00")),
        ("2025-03-31", Decimal("29.00")),
    ]


def test_a_cancellation_at_a_local_midnight_that_is_not_a_utc_midnight(runs):
    """Cancelled at 00:00 on 16 March in Kolkata (15 March 18:30 UTC): its March period (28 Feb
    18:30 to 31 Mar 18:30 UTC, 31 days) is billed 15 of its 31 days, 29.00 x 15/31 = 14.0323 ->
    14.03, plus lv-1 (its last millisecond) 0.01: 14.04, dated the day of the cancellation in
    Kolkata (16 March); lv-2, at the cancellation, is refused."""
    assert bill(runs, "2025-03", "leaver") == [
        ("2025-02-28T18:30:00Z/2025-03-31T18:30:00Z", "2025-03-16", Decimal("14.04"), 1)
    ]
