from decimal import Decimal

from billing import rating_services
from billing.periods import Month

from tests.rating.helpers import make_tenant, queries


def test_close_rates_a_tenant_from_clickhouse(env):
    # Given a starter tenant upgraded to pro mid-month, with queries on both sides of the change
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z"), ("pro", "2025-11-16T08:00:00Z")])
    env.store.insert_events(queries("acme", 800, "2025-11-02T00:00:00Z", prefix="a", cost="0.001"))
    env.store.insert_events(queries("acme", 10000, "2025-11-20T00:00:00Z", prefix="b"))
    # When the month is closed
    result = rating_services.billing_cycle().close(Month.parse("2025-11"))
    # Then
    (statement,) = result.statements
    amounts = {l.line_id: l.amount for l in statement.lines}
    assert amounts == {"base:starter:1": Decimal("14.82"), "base:pro:1": Decimal("48.40"),
                       "queries:starter:t1": Decimal("8.00"), "queries:pro:t1": Decimal("73.60"),
                       "queries:pro:t2": Decimal("4.80"), "usage": Decimal("0.80")}
    assert statement.total == Decimal("150.42")
    assert result.csv.decode().splitlines()[1] == "acme,2025-11,10800,0,150.42,2025-11-30"
