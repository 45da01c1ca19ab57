"""the close takes its watermark from ClickHouse's clock and repairs drifted
quota counters before rating (``billing quota reconcile``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from billing.kernel.periods import Month
from billing.runtime import container
from billing_cli import _load, app
from tests.rating.helpers import make_tenant, queries

NOV, DEC = Month(2025, 11), Month(2025, 12)


def test_a_lambda_clock_ahead_of_clickhouse_never_loses_in_flight_events(env):
    # Given November's usage stored, and the close running on a Lambda whose clock is 10 minutes ahead
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 3, "2025-11-02T00:00:00Z", prefix="n"))
    cycle = container.billing_cycle()
    cycle.clock = lambda: datetime.now(UTC) + timedelta(minutes=10)
    november = cycle.close(NOV).statements[0]
    time.sleep(0.01)
    # When a batch that passed ingest's closed-month check just before the close is stored after it
    env.store.insert_events(queries("acme", 2, "2025-11-29T00:00:00Z", prefix="late"))
    december = cycle.close(DEC).statements[0]
    # Then every November query is billed exactly once: 3 in November, 2 as December adjustments
    assert november.total_queries == 3
    late = [l for l in december.lines if l.kind == "adjustment" and ":queries:" in l.line_id]
    assert sum(l.quantity for l in late) == 2


def test_the_close_repairs_a_drifted_quota_counter_before_rating(env):
    # Given 3 stored November queries but a counter that says 7 (a crash left it drifted)
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 3, "2025-11-02T00:00:00Z", prefix="n"))
    ledger = container.ledger()
    assert ledger.quota_set("acme", "2025-11", 7, None, 2_000_000_000)
    # When November is closed
    container.billing_cycle().close(NOV)
    # Then the counter equals the stored queries
    assert ledger.quota_used("acme", "2025-11")[0] == 3


def test_billing_quota_reconcile_repairs_and_reports_each_counter(env):
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    make_tenant("beta", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 4, "2025-11-02T00:00:00Z", prefix="a"))
    ledger = container.ledger()
    assert ledger.quota_set("acme", "2025-11", 1, None, 2_000_000_000)
    assert ledger.quota_set("beta", "2025-11", 5, None, 2_000_000_000)
    _load()
    result = CliRunner().invoke(app, ["quota", "reconcile", "--month", "2025-11"])
    assert result.exit_code == 0, result.output
    assert "2 counter(s) repaired" in result.output
    assert ledger.quota_used("acme", "2025-11")[0] == 4 and ledger.quota_used("beta", "2025-11")[0] == 0
    # And a second run repairs nothing
    assert (
        "0 counter(s) repaired"
        in CliRunner().invoke(app, ["quota", "reconcile", "--month", "2025-11"]).output
    )
