"""Every rating rule through ``billing simulate`` (ingest -> close -> CSV), totals worked out by hand.

Plans (tests/rating/data/plans.yaml), November 2025 = 30 days = 2,592,000 s:
  basic  30.00/month, quota 40, tiers 1-10 @0.10, 11-20 @0.05, 21+ @0.01
  plus   60.00/month, quota 100, tiers 1-15 @0.20, 16+ @0.02
  free    0.00/month, quota 5, every query @0.50
A gpt-4o query with 100,000 input tokens costs 100,000 x 2.50 / 1e6 x 1.25 = 0.3125 at event time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from billing.kernel.periods import iso, parse_instant
from billing_cli import _load
from tests.conftest import CHDB_PATH
from tests.support import run_simulate

DATA = Path(__file__).resolve().parent / "data"


def q(tenant: str, eid: str, ts: datetime, tokens: int = 0) -> dict:
    event = {"event_id": eid, "tenant_id": tenant, "timestamp": iso(ts), "type": "query"}
    if tokens:
        event.update(model="gpt-4o", input_tokens=tokens)
    return event


def series(
    tenant: str, prefix: str, start: str, n: int, step: timedelta, tokens_first: int = 0
) -> list[dict]:
    t0 = parse_instant(start)
    return [q(tenant, f"{prefix}{i}", t0 + i * step, 100_000 if i < tokens_first else 0) for i in range(n)]


HOUR, DAY, MINUTE = timedelta(hours=1), timedelta(days=1), timedelta(minutes=1)


def november_events() -> list[dict]:
    events = []
    events += series("steady", "s", "2025-11-02T00:00:00Z", 25, HOUR, tokens_first=4)
    events += series("upgrader", "u", "2025-11-02T00:00:00Z", 12, DAY)
    events += series("upgrader", "v", "2025-11-16T00:00:00Z", 10, HOUR)  # first one exactly at the change
    events += series("trialist", "t", "2025-11-02T00:00:00Z", 8, DAY, tokens_first=1)  # in trial
    events += series("trialist", "p", "2025-11-12T00:00:00Z", 12, HOUR)
    events += series("capped", "c", "2025-11-03T00:00:00Z", 8, MINUTE)  # quota 5: 3 refused
    events += series("leaver", "l", "2025-11-01T12:00:00Z", 3, DAY)
    events += series("leaver", "x", "2025-11-08T00:00:00Z", 2, DAY)  # after cancellation: 403
    events += [
        q("latejoiner", "j0", parse_instant("2025-11-20T12:00:00Z")),  # before its first plan: 403
        q("latejoiner", "j1", parse_instant("2025-11-25T00:00:00Z")),
    ]
    events += series("resubscribed", "r", "2025-11-05T00:00:00Z", 15, DAY)
    return events


@pytest.fixture
def simulate(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()

    def run(
        events: list[dict], *extra: str, tenants: Path = DATA / "tenants.yaml", raw_lines: list[str] = ()
    ):
        done = run_simulate(
            tmp_path, events, *extra, tenants=tenants, plans=DATA / "plans.yaml", raw_lines=raw_lines
        )
        lines = done.lines
        amounts = {}
        for row in lines.read_text().splitlines()[1:]:
            cells = row.split(",")
            amounts[(cells[0], cells[2])] = Decimal(cells[8])
        return done.invoices_csv, amounts, done.output

    return run


def test_every_rule_through_billing_simulate(simulate):
    # Given ten tenants, one per rule, and a duplicate
    events = november_events()
    duplicate = dict(events[0])
    # When the month is simulated
    csv, lines, output = simulate(events + [duplicate])

    # Then the CSV has exactly the contract header, one row per tenant sorted by id, hand-worked totals
    assert (
        csv
        == (
            "tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date\n"
            "capped,2025-11,5,0,2.50,2025-11-30\n"  # quota 5 of free: 5 x 0.50
            "halfcent,2025-11,0,0,1.01,2025-11-30\n"  # 30.00 x 86,832 s / 2,592,000 s = 1.005 -> half-up 1.01
            "idle,2025-11,0,0,60.00,2025-11-30\n"  # no usage: base fee only
            "idle-free,2025-11,0,0,0.00,2025-11-30\n"  # no usage, no base fee: 0.00
            "latejoiner,2025-11,1,0,10.10,2025-11-30\n"  # 30.00 x 10/30 days + 1 x 0.10
            "leaver,2025-11,3,0,6.80,2025-11-07\n"  # 30.00 x 6.5/30 days + 3 x 0.10, dated at cancellation
            "resubscribed,2025-11,15,0,31.25,2025-11-30\n"  # a repeated plan entry changes nothing: 30 + 1.00 + 0.25
            "steady,2025-11,25,400000,32.80,2025-11-30\n"  # 30 + 1.00 + 0.50 + 0.05 + 4 x 0.3125 = 1.25
            "trialist,2025-11,20,100000,21.10,2025-11-30\n"  # 30 x 20/30 + 10 x 0.10 + 2 x 0.05; trial free
            "upgrader,2025-11,22,0,46.84,2025-11-30\n"
        )
    )  # 15 + 30 + basic 1.00 + 0.10 + plus 0.60 + 0.14
    # And refused events are counted and reported, not fatal
    assert "rejected (quota): 3" in output
    assert "rejected (forbidden): 3" in output
    assert "1 duplicates" in output

    # Mid-month upgrade: tiers carry over (plus starts at position 13), the query at the change is plus
    assert {k[1]: v for k, v in lines.items() if k[0] == "upgrader"} == {
        "base:basic:1": Decimal("15.00"),
        "base:plus:1": Decimal("30.00"),
        "queries:basic:t1": Decimal("1.00"),
        "queries:basic:t2": Decimal("0.10"),  # positions 1-10, 11-12
        "queries:plus:t1": Decimal("0.60"),
        "queries:plus:t2": Decimal("0.14"),  # 13-15 @0.20, 16-22 @0.02
        "usage": Decimal("0.00"),
    }
    # Trial: no base fee for the trial days, trial queries and usage shown at 0 and not advancing tiers
    assert {k[1]: v for k, v in lines.items() if k[0] == "trialist"} == {
        "base:basic:1": Decimal("20.00"),
        "queries:basic:t1": Decimal("1.00"),
        "queries:basic:t2": Decimal("0.10"),
        "queries:trial": Decimal("0.00"),
        "usage": Decimal("0.00"),
        "usage:trial": Decimal("0.00"),
    }
    # Graduated tiers within one plan, usage cost from stored event-time costs
    assert {k[1]: v for k, v in lines.items() if k[0] == "steady"} == {
        "base:basic:1": Decimal("30.00"),
        "queries:basic:t1": Decimal("1.00"),
        "queries:basic:t2": Decimal("0.50"),
        "queries:basic:t3": Decimal("0.05"),
        "usage": Decimal("1.25"),
    }
    # An unchanged plan split by a redundant entry is one base line, like an unsplit month
    assert {k[1] for k in lines if k[0] == "resubscribed"} == {
        "base:basic:1",
        "queries:basic:t1",
        "queries:basic:t2",
        "usage",
    }


def test_a_pricebook_passed_to_simulate_prices_usage(simulate, tmp_path):
    # Given a price book where gpt-4o input costs twice as much, markup 0
    book = tmp_path / "book.yaml"
    book.write_text(
        'versions:\n  - effective_from: "2025-01-01T00:00:00Z"\n    markup: "0"\n'
        '    storage_per_gb: "0"\n    models:\n      gpt-4o: {input_per_1m: "5.00", output_per_1m: "0"}\n'
    )
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        'tenants:\n  - {id: steady, plans: [{plan: basic, effective_at: "2025-10-01T00:00:00Z"}]}\n'
    )
    # When steady's month is simulated with it: 4 x 100,000 x 5.00 / 1e6 = 2.00
    csv, lines, _ = simulate(
        series("steady", "s", "2025-11-02T00:00:00Z", 25, HOUR, tokens_first=4),
        "--pricebook",
        str(book),
        tenants=tenants,
    )
    # Then
    assert lines[("steady", "usage")] == Decimal("2.00")
    assert csv.splitlines()[1] == "steady,2025-11,25,400000,33.55,2025-11-30"
