"""A tenant period's usage read from the real ClickHouse engine (chdb), rated: a Kolkata period
boundary splits a UTC day's usage; an anniversary period spans two monthly partitions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.adapters.clickhouse.period_queries import period_usage
from billing.kernel.calendar import Calendar
from billing.rating import Rater
from billing.runtime import container
from tests.rating.helpers import event, make_tenant


def test_a_kolkata_boundary_splits_a_utc_day_between_two_periods(env):
    # Given a Kolkata calendar-monthly tenant with queries on 30 November UTC: 23:00 and 23:59:59.999
    # local on the 30th (17:30Z, 18:29:59.999Z), 00:00 and 01:00 local on 1 December (18:30Z, 19:30Z)
    tenant = make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(
        [
            event("acme", "e1", "2025-11-30T17:30:00Z", cost="0.10"),
            event("acme", "e2", "2025-11-30T18:29:59.999Z", cost="0.20"),
            event("acme", "e3", "2025-11-30T18:30:00Z", cost="0.40"),
            event("acme", "e4", "2025-11-30T19:30:00Z", cost="0.80"),
        ]
    )
    cal = Calendar("Asia/Kolkata")
    rater = Rater(container.plan_catalog())
    november = cal.period_of(datetime(2025, 11, 15, tzinfo=UTC))
    december = cal.period_of(datetime(2025, 12, 15, tzinfo=UTC))
    # When each period's usage is read and rated
    got = {}
    for period in (november, december):
        segments = rater.segments(tenant, period)
        use = period_usage(env.store, "acme", segments, period)
        got[period.label()] = (use.total.events, use.total.cost_usd, rater.rate(tenant, period, use))
    # Then the local day's last millisecond is November's, its midnight December's
    assert got["2025-11 (Asia/Kolkata)"][:2] == (2, Decimal("0.30"))
    assert got["2025-12 (Asia/Kolkata)"][:2] == (2, Decimal("1.20"))
    # And each statement carries that usage and one whole base fee
    for _, _, statement in got.values():
        assert [l.amount for l in statement.lines if l.kind == "base_fee"] == [Decimal("29.00")]
    assert got["2025-12 (Asia/Kolkata)"][2].total == Decimal("29.00") + sum(
        (l.amount for l in got["2025-12 (Asia/Kolkata)"][2].lines if l.kind != "base_fee"), Decimal(0)
    )


def test_an_anniversary_period_reads_both_monthly_partitions_and_splits_at_a_plan_change(env):
    # Given a tenant anchored on 31 January 10:00 UTC, upgraded on 20 February, with usage on both
    # sides of 1 February and of the upgrade, and one event just past the period's end
    tenant = make_tenant("acme", [("starter", "2025-01-31T10:00:00Z"), ("pro", "2025-02-20T00:00:00Z")])
    env.store.insert_events(
        [
            event("acme", "jan", "2025-01-31T23:00:00Z", cost="1"),
            event("acme", "feb", "2025-02-10T00:00:00Z", cost="2"),
            event("acme", "pro", "2025-02-25T00:00:00Z", cost="4"),
            event("acme", "last", "2025-02-28T09:59:59.999Z", cost="8"),
            event("acme", "next", "2025-02-28T10:00:00Z", cost="16"),
        ]
    )
    period = Calendar("UTC", datetime(2025, 1, 31, 10, tzinfo=UTC)).period_of(
        datetime(2025, 2, 1, tzinfo=UTC)
    )
    rater = Rater(container.plan_catalog())
    segments = rater.segments(tenant, period)
    # When its usage is read
    use = period_usage(env.store, "acme", segments, period)
    # Then January's and February's events are in it, split at the upgrade; the 28th's 10:00 is not
    assert [s.cost_usd for s in use.segments] == [Decimal(3), Decimal(12)]
    assert use.total.events == 4
