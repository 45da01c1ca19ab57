"""The what-if comparison (``billing simulate --compare-plans``) with the new pricing models: the same
usage under a graduated charge and under a volume charge with the same tiers, worked out by hand.

Tiers of the ``calls`` charge (tests/pricing/plans.yaml, plan vol): 1-10 @0.10; 11-20 @0.05 + flat
1.00; 21+ @0.02. The price book is zero, so only the charge lines differ.
"""

from __future__ import annotations

from billing_cli import _load
from tests.conftest import CHDB_PATH
from tests.pricing.conftest import DATA, HOUR, series
from tests.support import run_simulate

TENANTS = """tenants:
  - {id: small, plans: [{plan: vol, effective_at: "2025-10-01T00:00:00Z"}]}
  - {id: big, plans: [{plan: vol, effective_at: "2025-10-01T00:00:00Z"}]}
"""


def test_a_graduated_plan_against_a_volume_plan_shows_the_lines_that_moved(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_URL", f"chdb://{CHDB_PATH}")
    _load()
    # Given the current plans price calls graduated, the proposal by volume (same tiers)
    current = tmp_path / "graduated.yaml"
    current.write_text(
        (DATA / "plans.yaml").read_text().replace("charge_model: volume", "charge_model: graduated")
    )
    (tmp_path / "tenants.yaml").write_text(TENANTS)
    events = series("small", "s", "2025-11-02T00:00:00Z", 15, HOUR) + series(
        "big", "b", "2025-11-02T00:00:00Z", 25, HOUR
    )
    # When November is simulated under both
    run_simulate(
        tmp_path,
        events,
        "--compare-plans",
        str(DATA / "plans.yaml"),
        "--out-diff",
        str(tmp_path / "diff.csv"),
        tenants=tmp_path / "tenants.yaml",
        plans=current,
        pricebook=DATA / "pricebook.yaml",
    )
    # Then the diff has both totals per tenant and every line that moved, largest change first:
    # big, 25 calls: graduated 10 x 0.10 + (10 x 0.05 + 1.00) + 5 x 0.02 = 2.60; volume 25 x 0.02 = 0.50
    # small, 15 calls: graduated 10 x 0.10 + (5 x 0.05 + 1.00) = 2.25; volume 15 x 0.05 + 1.00 = 1.75
    assert (tmp_path / "diff.csv").read_text() == (
        "tenant_id,item,current,proposed,difference,admission\n"
        "big,total,2.60,0.50,-2.10,\n"
        "big,charge:calls:vol:t2,1.50,0.00,-1.50,\n"
        "big,charge:calls:vol:t1,1.00,0.00,-1.00,\n"
        "big,charge:calls:vol:t3,0.10,0.50,0.40,\n"
        "small,total,2.25,1.75,-0.50,\n"
        "small,charge:calls:vol:t1,1.00,0.00,-1.00,\n"
        "small,charge:calls:vol:t2,1.25,1.75,0.50,\n"
        "*,total,4.85,2.25,-2.60,\n"
    )
    # And the CSV written is the current (graduated) catalog's
    assert "big,2025-11,25,0,2.60,2025-11-30" in (tmp_path / "invoices.csv").read_text()
