"""Charges on catalog metrics of a tenant with its own billing calendar (Asia/Kolkata calendar
months: each period runs from 18:30 UTC on the last day of the month before to 18:30 UTC on its own
last day), through ``billing simulate``: each event is measured in the period holding its instant, a
UTC day split by the local midnight included. Totals worked out by hand; the plan has no base fee
and no query price, so each total is its charges alone."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import yaml

from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import Calendar
from billing.metering.events import StoredEvent
from billing.runtime import container
from billing.tenants.calendar_settings import CalendarSetting
from billing_cli import _load
from tests.conftest import CHDB_PATH
from tests.pricing.conftest import parse_instant
from tests.support import create_tenant, run_simulate

NOVEMBER = "2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"
DECEMBER = "2025-11-30T18:30:00Z/2025-12-31T18:30:00Z"
NOV_DEC = {"n1", "n2", "n3", "d1"}

PLANS = {
    "currency": "usd",
    "metrics": [
        {"id": "gpu_seconds", "name": "GPU seconds", "unit": "seconds", "event_types": ["query"],
         "aggregation": "sum", "property": "seconds"},
        {"id": "active_users", "name": "Active users", "unit": "users", "event_types": ["query"],
         "aggregation": "unique_count", "property": "user"},
    ],
    "plans": [
        {"id": "gpu_users", "name": "GPU and users", "query_quota": None, "trial_days": 0,
         "charges": [
             {"id": "gpu", "name": "GPU seconds", "metric": "gpu_seconds", "group_by": ["gpu"],
              "charge_model": "graduated",
              "tiers": [{"up_to": 100, "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.02"}]},
             {"id": "users", "name": "Active users", "metric": "active_users", "charge_model": "per_unit",
              "unit_price": "1.50"},
         ]},
    ],
}  # fmt: skip
TENANTS = [
    {"id": "india", "plans": [{"plan": "gpu_users", "effective_at": "2025-10-31T18:30:00Z"}],
     "calendars": [{"time_zone": "Asia/Kolkata", "anchor": "calendar", "interval": "month"}]},
]  # fmt: skip


def use(event_id: str, ts: str, gpu: str, seconds: int, user: str) -> dict:
    return {
        "event_id": event_id,
        "tenant_id": "india",
        "timestamp": ts,
        "type": "query",
        "properties": {"gpu": gpu, "seconds": seconds, "user": user},
    }


EVENTS = [
    use("n1", "2025-11-10T12:00:00Z", "h100", 80, "u1"),
    use("n2", "2025-11-30T18:00:00Z", "h100", 50, "u2"),  # 23:30 on 30 November in Kolkata
    use("n3", "2025-11-30T18:29:59.999Z", "a100", 30, "u1"),  # November's last millisecond
    use("d1", "2025-11-30T18:30:00Z", "h100", 40, "u3"),  # 00:00 on 1 December in Kolkata, same UTC day
    use("d2", "2025-11-30T20:00:00Z", "a100", 200, "u1"),
    use("d3", "2025-12-31T18:29:59Z", "h100", 10, "u4"),  # 23:59:59 on 31 December in Kolkata
    use("j1", "2025-12-31T18:30:00Z", "h100", 1000, "u5"),  # 00:00 on 1 January: the next period
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[dict, dict[str, tuple[Decimal, str]]]]:
    """month -> (period key -> invoice row, charge line id -> (amount, description)), one simulate run
    each."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    root = tmp_path_factory.mktemp("period_metrics")
    (root / "plans.yaml").write_text(yaml.safe_dump(PLANS))
    (root / "tenants.yaml").write_text(yaml.safe_dump(TENANTS))
    out = {}
    for month in ("2025-11", "2025-12"):
        (root / month).mkdir()
        run = run_simulate(
            root / month, EVENTS, tenants=root / "tenants.yaml", plans=root / "plans.yaml", month=month
        )
        invoices = {r["month"]: r for r in csv.DictReader(run.invoices.read_text().splitlines())}
        lines = {
            l["line_id"]: (Decimal(l["amount"]), l["description"])
            for l in csv.DictReader(run.lines.read_text().splitlines())
            if l["kind"] == "charge"
        }
        out[month] = (invoices, lines)
    mp.undo()
    return out


def test_a_kolkata_november_measures_its_events_up_to_its_local_midnight(runs):
    """November in Kolkata (31 Oct 18:30 to 30 Nov 18:30 UTC) holds n1, n2 and n3 (its last
    millisecond). GPU seconds per gpu, graduated 0.01 up to 100 then 0.02: h100 80 + 50 = 130 ->
    100 x 0.01 + 30 x 0.02 = 1.60; a100 30 -> 0.30. Active users u1, u2: 2 x 1.50 = 3.00. 4.90."""
    # Given the tenant's events, when November is simulated (runs)
    invoices, lines = runs["2025-11"]
    # Then its one statement is its Kolkata November, each gpu's seconds and its users priced
    assert list(invoices) == ["2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"]
    assert Decimal(invoices["2025-10-31T18:30:00Z/2025-11-30T18:30:00Z"]["total_cost_usd"]) == Decimal("4.90")
    assert lines == {
        "charge:gpu:gpu=h100:gpu_users:t1": (
            Decimal("1.00"),
            "GPU seconds (gpu: h100) 1-100 at $0.01 (100 seconds)",
        ),
        "charge:gpu:gpu=h100:gpu_users:t2": (
            Decimal("0.60"),
            "GPU seconds (gpu: h100) over 100 at $0.02 (30 seconds)",
        ),
        "charge:gpu:gpu=a100:gpu_users:t1": (
            Decimal("0.30"),
            "GPU seconds (gpu: a100) 1-100 at $0.01 (30 seconds)",
        ),
        "charge:users:gpu_users": (Decimal("3.00"), "Active users: 2 users at $1.50"),
    }


def test_a_kolkata_december_takes_the_same_utc_day_s_events_after_its_local_midnight(runs):
    """December in Kolkata (30 Nov 18:30 to 31 Dec 18:30 UTC) holds d1 (at the local midnight, the
    UTC day of n2 and n3), d2 and d3; j1 (00:00 on 1 January local) is not in it. h100 40 + 10 = 50
    -> 0.50; a100 200 -> 100 x 0.01 + 100 x 0.02 = 3.00. Users u3, u1, u4 (u1 again in a new
    period): 3 x 1.50 = 4.50. 8.00."""
    # Given the tenant's events, when December is simulated (runs)
    invoices, lines = runs["2025-12"]
    # Then its one statement is its Kolkata December, from the local midnight that split the UTC day
    assert list(invoices) == ["2025-11-30T18:30:00Z/2025-12-31T18:30:00Z"]
    assert Decimal(invoices["2025-11-30T18:30:00Z/2025-12-31T18:30:00Z"]["total_cost_usd"]) == Decimal("8.00")
    assert lines == {
        "charge:gpu:gpu=h100:gpu_users:t1": (
            Decimal("0.50"),
            "GPU seconds (gpu: h100) 1-100 at $0.01 (50 seconds)",
        ),
        "charge:gpu:gpu=a100:gpu_users:t1": (
            Decimal("1.00"),
            "GPU seconds (gpu: a100) 1-100 at $0.01 (100 seconds)",
        ),
        "charge:gpu:gpu=a100:gpu_users:t2": (
            Decimal("2.00"),
            "GPU seconds (gpu: a100) over 100 at $0.02 (100 seconds)",
        ),
        "charge:users:gpu_users": (Decimal("4.50"), "Active users: 3 users at $1.50"),
    }


def _stored(event_id: str, ts: str, gpu: str, seconds: int, user: str) -> StoredEvent:
    at = parse_instant(ts)
    properties = {"gpu": gpu, "seconds": Decimal(seconds), "user": user}
    return StoredEvent("india", event_id, at, "query", "", 1, 0, 0, 0, Decimal(0), "v1", at, properties)


def test_a_late_event_of_a_closed_kolkata_period_rerates_its_charges_as_adjustments(env):
    # Given the Kolkata tenant on the catalog-metric plan, with November's three events and one of
    # December's stored, and November (31 Oct 18:30 to 30 Nov 18:30 UTC) closed by the hourly run
    container.override(plan_catalog=PlanCatalog.model_validate(PLANS))
    create_tenant(
        "india",
        [("gpu_users", "2025-10-31T18:30:00Z")],
        calendars=[CalendarSetting.of(Calendar("Asia/Kolkata"), None)],
    )
    env.store.insert_events(
        [
            _stored(e["event_id"], e["timestamp"], **e["properties"])
            for e in EVENTS
            if e["event_id"] in NOV_DEC
        ]
    )
    closer = container.tenant_period_close()
    first = closer.close_due(datetime(2025, 12, 1, 0, 15, tzinfo=UTC))
    assert [(r.period, r.statement.total) for r in first.closed] == [(NOVEMBER, Decimal("4.90"))]
    # When two November events are stored after its close (as a fallback replay would): 20 more
    # h100 seconds from a new user u5, and u1 again with 5 a100 seconds; then December closes
    env.store.insert_events(
        [
            _stored("late-1", "2025-11-20T00:00:00Z", "h100", 20, "u5"),
            _stored("late-2", "2025-11-30T18:29:00Z", "a100", 5, "u1"),
        ]
    )
    second = closer.close_due(datetime(2025, 12, 31, 19, 15, tzinfo=UTC))
    # Then December bills its own event d1 (h100 40 seconds: 0.40; user u3: 1.50) and re-rates
    # November with the late events minus what was billed, as lines of November: h100 130 -> 150
    # seconds is 20 more over 100 at 0.02 (0.40); a100 30 -> 35 is 5 more at 0.01 (0.05); users 2 ->
    # 3 (u5 new, u1 billed already) is 1.50. 1.90 + 1.95 = 3.85
    [december] = [r.statement for r in second.closed]
    assert december.month == DECEMBER
    adjustments = {
        l.line_id: (l.amount, l.adjustment_month) for l in december.lines if l.kind == "adjustment"
    }
    assert {i: a for i, (a, _) in adjustments.items() if ":charge:" in i} == {
        f"adj:{NOVEMBER}:charge:gpu:gpu=h100:gpu_users:t2": Decimal("0.40"),
        f"adj:{NOVEMBER}:charge:gpu:gpu=a100:gpu_users:t1": Decimal("0.05"),
        f"adj:{NOVEMBER}:charge:users:gpu_users": Decimal("1.50"),
    }
    assert {m for _, m in adjustments.values()} == {NOVEMBER}
    assert [(l.line_id, l.amount) for l in december.lines if l.kind == "charge"] == [
        ("charge:gpu:gpu=h100:gpu_users:t1", Decimal("0.40")),
        ("charge:users:gpu_users", Decimal("1.50")),
    ]
    # And each line names November in the tenant's own words
    [users] = [l for l in december.lines if l.line_id == f"adj:{NOVEMBER}:charge:users:gpu_users"]
    assert users.description == (
        "Late usage from 2025-11 (Asia/Kolkata): Active users: 3 users at $1.50; billed before: 2 for $3.00"
    )
    assert december.total == Decimal("3.85")
    assert december.inputs["late_months"] == [NOVEMBER]
