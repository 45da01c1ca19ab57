"""Charges on catalog metrics, grouped or not, through ``billing simulate``; totals worked out by hand
(plans and metrics in tests/pricing/metric_plans.yaml, a zero price book, so each total is its
charges alone). November 2025 has 30 days."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from decimal import Decimal

import pytest

from billing_cli import _load
from tests.conftest import CHDB_PATH
from tests.pricing.conftest import DATA, ev, parse_instant
from tests.support import run_simulate

T = parse_instant


@pytest.fixture
def simulate(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()

    def run(
        events: list[dict], raw: Sequence[str] = ()
    ) -> tuple[str, dict[str, dict[str, Decimal]], dict[tuple[str, str], dict]]:
        done = run_simulate(
            tmp_path,
            events,
            raw_lines=raw,
            tenants=DATA / "metric_tenants.yaml",
            plans=DATA / "metric_plans.yaml",
            pricebook=DATA / "pricebook.yaml",
        )
        amounts: dict[str, dict[str, Decimal]] = {}
        rows = {}
        for row in csv.DictReader(done.lines.read_text().splitlines()):
            amounts.setdefault(row["tenant_id"], {})[row["line_id"]] = Decimal(row["amount"])
            rows[(row["tenant_id"], row["line_id"])] = row
        return done.invoices_csv, amounts, rows

    return run


def at(day: int, hour: int = 0) -> str:
    return f"2025-11-{day:02d}T{hour:02d}:00:00Z"


def gpu_events(tenant: str) -> list[dict]:
    return [
        ev(tenant, "g1", T(at(2)), properties={"gpu": "h100", "seconds": 1000}),
        ev(tenant, "g2", T(at(3)), properties={"gpu": "h100", "seconds": 234}),
        ev(tenant, "g3", T(at(4)), properties={"gpu": "a100", "seconds": 500}),
        ev(tenant, "g4", T(at(5)), properties={"seconds": 10}),  # no gpu: the "none" group
        ev(tenant, "g5", T(at(6)), properties={"gpu": "a100"}),  # no seconds: nothing to sum
    ]


def november() -> list[dict]:
    events = gpu_events("gpu-t") + gpu_events("gpu-flat-t") + gpu_events("gpu-priced-t")
    # a user seen under both plans counts once, under the first (users a, b before the change; c, d after)
    for i, (day, user) in enumerate([(2, "a"), (3, "b"), (20, "a"), (20, "c"), (21, "d")]):
        events.append(ev("users-switch", f"u{i}", T(at(day)), properties={"user": user}))
    # trial until the 11th: a, b, c in the trial (free); a, d, e after it (paid, a again)
    for i, (day, user) in enumerate([(2, "a"), (3, "b"), (4, "c"), (12, "a"), (13, "d"), (14, "e")]):
        events.append(ev("users-trial", f"t{i}", T(at(day)), properties={"user": user}))
    # seats 3, 7, 4 over the month: the peak is 7, the last value 4
    for i, (day, seats) in enumerate([(2, 3), (10, 7), (20, 4)]):
        events.append(ev("seats-t", f"s{i}", T(at(day)), properties={"seats": seats}))
    return events


def fractional() -> list[str]:
    """150.5 + 49.6 = 200.1 seconds, written as JSON numbers (read exactly, never through a float):
    3 blocks of 100, the partial block rounded up once."""
    lines = []
    for eid, day, seconds in [("p0", 3, "150.5"), ("p1", 4, "49.6")]:
        text = json.dumps(ev("pkg-t", eid, T(at(day)), properties={"seconds": "X"}))
        lines.append(text.replace('"X"', seconds))
    return lines


def test_charges_on_catalog_metrics_through_billing_simulate(simulate):
    # Given one tenant per aggregation and charge model, when November is simulated
    invoices, lines, rows = simulate(november(), fractional())
    # Then each total is worked out by hand
    assert invoices.splitlines()[1:] == [
        "gpu-flat-t,2025-11,5,0,6.98,2025-11-30",  # 1,744 s x 0.004 = 6.976
        "gpu-priced-t,2025-11,5,0,5.95,2025-11-30",  # 1,234 x 0.004 + 500 x 0.002 + 10 x 0.001
        "gpu-t,2025-11,5,0,6.98,2025-11-30",  # 0.04 + 2.00 + 4.94 (each group rounded once)
        "pkg-t,2025-11,2,0,3.00,2025-11-30",  # ceil(200.1 / 100) = 3 blocks x 1.00
        "seats-t,2025-11,3,0,47.00,2025-11-30",  # peak 7 x 5.00 + last 4 x 3.00
        "users-switch,2025-11,5,0,4.00,2025-11-30",  # a, b free; c, d at Users Plus' 2.00
        "users-trial,2025-11,6,0,1.00,2025-11-30",  # paid a, d free, e at 1.00
    ]
    # one line per group value, sorted, each priced on its own units
    assert {k: v for k, v in lines["gpu-t"].items() if k.startswith("charge:")} == {
        "charge:gpu:gpu=:gpu": Decimal("0.04"),
        "charge:gpu:gpu=a100:gpu": Decimal("2.00"),
        "charge:gpu:gpu=h100:gpu": Decimal("4.94"),
    }
    assert rows[("gpu-t", "charge:gpu:gpu=h100:gpu")]["description"] == (
        "GPU seconds (gpu: h100): 1,234 seconds at $0.004"
    )
    assert (
        rows[("gpu-t", "charge:gpu:gpu=:gpu")]["description"]
        == "GPU seconds (gpu: none): 10 seconds at $0.004"
    )
    assert lines["gpu-flat-t"]["charge:gpu_all:gpu_flat"] == Decimal("6.98")
    # prices per gpu: one line per price, anything else at the charge's own price
    assert {k: v for k, v in lines["gpu-priced-t"].items() if k.startswith("charge:")} == {
        "charge:gpu_priced:gpu=h100:gpu_priced": Decimal("4.94"),  # 4.936
        "charge:gpu_priced:gpu=a100|l4:gpu_priced": Decimal("1.00"),
        "charge:gpu_priced:gpu=*:gpu_priced": Decimal("0.01"),
    }
    assert rows[("gpu-priced-t", "charge:gpu_priced:gpu=a100|l4:gpu_priced")]["description"] == (
        "GPU seconds (gpu: a100 or l4): 500 seconds at $0.002"
    )
    assert rows[("gpu-priced-t", "charge:gpu_priced:gpu=*:gpu_priced")]["description"] == (
        "GPU seconds (gpu: other): 10 seconds at $0.001"
    )
    # the user seen under both plans counts once, in the segment of its first event
    switch = rows[("users-switch", "charge:users:users:t1")], rows[("users-switch", "charge:users:users2:t2")]
    assert [(r["quantity"], r["amount"]) for r in switch] == [("2", "0.00"), ("2", "4.00")]
    # the trial part and the paid part are measured apart: a counts in both, free in the trial
    assert rows[("users-trial", "charge:users:trial")]["description"] == (
        "Active users during the free trial: 3 users (free)"
    )
    assert rows[("users-trial", "charge:users:users:t2")]["quantity"] == "1"
    assert rows[("seats-t", "charge:peak:seats")]["description"] == "Peak seats: 7 seats at $5.00"
    assert rows[("seats-t", "charge:last:seats")]["amount"] == "12.00"
    assert rows[("pkg-t", "charge:gpu_blocks:gpu_pkg")]["description"] == (
        "GPU time: 3 packages of 100 seconds at $1.00 (200.1 seconds)"
    )


def test_a_what_if_moves_a_grouped_charge_to_prices_per_value(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    # Given gpu-t on the grouped GPU charge (every gpu at 0.004), and a proposal pricing a100 at 0.002
    proposed = tmp_path / "proposed.yaml"
    grouped = "{id: gpu, name: GPU seconds, metric: gpu_seconds, group_by: [gpu], charge_model: per_unit"
    by_value = (
        "{id: gpu, name: GPU seconds, metric: gpu_seconds, price_by: {property: gpu, prices: "
        '[{values: [a100], unit_price: "0.002"}]}, charge_model: per_unit'
    )
    proposed.write_text((DATA / "metric_plans.yaml").read_text().replace(grouped, by_value))
    (tmp_path / "tenants.yaml").write_text(
        'tenants:\n  - {id: gpu-t, plans: [{plan: gpu, effective_at: "2025-10-01T00:00:00Z"}]}\n'
    )
    # When November is simulated under both
    run_simulate(
        tmp_path,
        gpu_events("gpu-t"),
        "--compare-plans",
        str(proposed),
        "--out-diff",
        str(tmp_path / "diff.csv"),
        tenants=tmp_path / "tenants.yaml",
        plans=DATA / "metric_plans.yaml",
        pricebook=DATA / "pricebook.yaml",
    )
    # Then a100's 500 seconds move from 2.00 to 1.00; h100 and the gpu-less seconds (0.004) join one
    # default line: 1,244 x 0.004 = 4.976 -> 4.98 for 4.94 + 0.04
    assert (tmp_path / "diff.csv").read_text() == (
        "tenant_id,item,current,proposed,difference,admission\n"
        "gpu-t,total,6.98,5.98,-1.00,\n"
        "gpu-t,charge:gpu:gpu=*:gpu,0.00,4.98,4.98,\n"
        "gpu-t,charge:gpu:gpu=h100:gpu,4.94,0.00,-4.94,\n"
        "gpu-t,charge:gpu:gpu=a100:gpu,2.00,1.00,-1.00,\n"
        "gpu-t,charge:gpu:gpu=:gpu,0.04,0.00,-0.04,\n"
        "*,total,6.98,5.98,-1.00,\n"
    )
