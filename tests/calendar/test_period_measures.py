"""Catalog-metric units and meters of a tenant calendar period, read from the real ClickHouse engine
(chdb): every aggregation over a Kolkata month that spans two monthly partitions, worked by hand
and equal to the metric's own value over the period; and a UTC calendar month read as a tenant
period (over its UTC range) measured exactly as the month close reads it (over its partition)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.adapters.clickhouse.period_queries import period_usage
from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries
from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import Calendar
from billing.kernel.periods import Month
from billing.metering.events import StoredEvent
from billing.rating import Rater
from billing.tenants.tenant import PlanAssignment, Tenant


def _metric(id: str, aggregation: str, property: str | None = None, **extra: Any) -> dict:
    found = {"id": id, "name": id, "unit": "units", "event_types": ["query"], "aggregation": aggregation}
    return found | ({"property": property} if property else {}) | extra


CHARGES = [
    {"id": "calls", "metric": "calls", "charge_model": "per_unit", "unit_price": "0.01"},
    {"id": "secs", "metric": "gpu_seconds", "charge_model": "per_unit", "unit_price": "0.01"},
    {"id": "users", "metric": "active_users", "charge_model": "per_unit", "unit_price": "1"},
    {"id": "peak", "metric": "peak_seats", "charge_model": "per_unit", "unit_price": "2"},
    {"id": "last", "metric": "seats_now", "charge_model": "per_unit", "unit_price": "3"},
    {"id": "held", "metric": "seat_hours", "charge_model": "per_unit", "unit_price": "0.01"},
    {"id": "gpu", "metric": "gpu_seconds", "group_by": ["gpu", "region"], "charge_model": "graduated",
     "tiers": [{"up_to": 100, "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.02"}]},
    {"id": "priced", "metric": "gpu_seconds", "charge_model": "per_unit", "unit_price": "0.001",
     "price_by": {"property": "gpu", "prices": [{"values": ["h100"], "unit_price": "0.004"}]}},
]  # fmt: skip
CATALOG = PlanCatalog.model_validate(
    {
        "metrics": [
            _metric("calls", "count"),
            _metric("gpu_seconds", "sum", "seconds"),
            _metric("active_users", "unique_count", "user"),
            _metric("peak_seats", "max", "seats"),
            _metric("seats_now", "latest", "seats"),
            _metric("seat_hours", "time_weighted_sum", "seats", per="hour"),
        ],
        "plans": [
            {"id": "all", "name": "All", "query_quota": None, "charges": CHARGES},
            {"id": "same", "name": "Same", "query_quota": None, "charges": CHARGES},
        ],
    }
)
KOLKATA = Calendar("Asia/Kolkata")


def event(tenant: str, event_id: str, at: datetime, properties: dict[str, Any]) -> StoredEvent:
    return StoredEvent(tenant, event_id, at, "query", "", 1, 0, 0, 0, Decimal(0), "v1", at, properties)


def tenant_on(*plans: tuple[str, datetime]) -> Tenant:
    history = [PlanAssignment(plan=p, effective_at=at) for p, at in plans]
    return Tenant(id=f"t-{uuid.uuid4().hex[:10]}", plans=history)


def z(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_every_aggregation_of_a_kolkata_month_spanning_two_partitions(env):
    # Given a Kolkata tenant since its local 1 November, and seat counts: 4 at noon UTC on 30
    # November (its November, held when December opens at 18:30 UTC), 10 one day into December, 2
    # half an hour before December ends (31 Dec 18:00 UTC), 99 at the next period's first instant
    tenant = tenant_on(("all", z(2025, 10, 31, 18, 30)))
    rows = [
        ("before", z(2025, 11, 30, 12), {"seats": Decimal(4), "user": "u0", "seconds": Decimal(7)}),
        ("first", z(2025, 12, 1, 18, 30), {"seats": Decimal(10), "user": "u1", "seconds": Decimal(30)}),
        ("last", z(2025, 12, 31, 18), {"seats": Decimal(2), "user": "u1", "seconds": Decimal("0.5")}),
        ("next", z(2025, 12, 31, 18, 30), {"seats": Decimal(99), "user": "u9", "seconds": Decimal(500)}),
    ]
    env.store.insert_events([event(tenant.id, i, at, p) for i, at, p in rows])
    december = KOLKATA.period_of(z(2025, 12, 15))
    assert (december.start, december.end) == (z(2025, 11, 30, 18, 30), z(2025, 12, 31, 18, 30))
    rater = Rater(CATALOG)
    segments = rater.segments(tenant, december)
    # When the period's units are read as its close reads them
    use = period_usage(
        env.store, tenant.id, segments, december, metered=True, measures=rater.measures(segments)
    )
    # Then each aggregation reads the period's two events only: 2 calls, 30.5 seconds, 1 user, a
    # peak of 10, 2 seats last; seat-hours 4 x 24 h carried in + 10 x 719.5 h + 2 x 0.5 h = 7,292
    [measured] = use.measured
    units = {charge: sum(groups.values()) for charge, groups in measured.items()}
    assert units == {
        "calls": 2,
        "secs": Decimal("30.5"),
        "users": 1,
        "peak": 10,
        "last": 2,
        "held": 7292,
        "gpu": Decimal("30.5"),
        "priced": Decimal("30.5"),
    }
    # And each equals the metric's own value over the period's UTC range
    metrics = ClickHouseMetrics(env.store)
    for charge in CHARGES[:6]:
        value = metrics.value(CATALOG.metric(charge["metric"]), tenant.id, december.start, december.end)
        assert units[charge["id"]] == value, charge["id"]
    # And the meters hold the period's two events
    [meters] = use.metered
    assert sum(m.events for m in meters) == 2
    # And the statement prices them: calls 0.02, seconds 0.305 -> 0.31, the user 1.00, the peak
    # 20.00, the last 6.00, seat-hours 72.92, grouped seconds 0.31, priced (no gpu: 0.001) 0.03
    statement = rater.rate(tenant, december, use, segments=segments)
    assert statement.total == Decimal("100.59")


MONTH = Month(2025, 11)
_rows = st.lists(
    st.tuples(
        st.integers(-3 * 86_400, MONTH.seconds + 3 * 86_400),  # a few days either side of the month
        st.decimals(min_value=0, max_value=500, places=3),
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(0, 12),
        st.sampled_from(["h100", "a100", None]),
        st.sampled_from(["eu", "us"]),
        st.booleans(),  # stored after the cutoff
    ),
    max_size=25,
)


# each example reads fresh tenants of real ClickHouse rows, so the shared database is safe to reuse
@settings(deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows, cut=st.integers(1, MONTH.seconds - 1))
def test_a_utc_month_read_as_a_tenant_period_measures_as_the_month_close_does(env, rows, cut):
    # Given a tenant changing to an identical plan at some instant of November, with events on
    # either side of the month, some stored after a cutoff
    tenant = tenant_on(
        ("all", MONTH.start - timedelta(days=40)), ("same", MONTH.start + timedelta(seconds=cut))
    )
    events, later = [], []
    for i, (second, seconds, user, seats, gpu, region, late) in enumerate(rows):
        properties: dict[str, Any] = {
            "seconds": seconds,
            "user": user,
            "seats": Decimal(seats),
            "region": region,
        }
        if gpu is not None:
            properties["gpu"] = gpu
        (later if late else events).append(
            event(tenant.id, f"e{i:03d}", MONTH.start + timedelta(seconds=second), properties)
        )
    env.store.insert_events(events)
    cutoff = env.store.now()
    env.store.insert_events(later)
    # When November is read as the month close reads it (its partition) and as the UTC calendar
    # period it also is (its UTC range), both by the cutoff
    rater = Rater(CATALOG)
    period = Calendar("UTC").period_of(MONTH.start)
    segments = rater.segments(tenant, MONTH)
    assert [(s.start, s.end) for s in rater.segments(tenant, period)] == [(s.start, s.end) for s in segments]
    month = ClickHouseRatingQueries(env.store).month_usage(
        {tenant.id: segments},
        MONTH,
        cutoff,
        metered=[tenant.id],
        measures={tenant.id: rater.measures(segments)},
    )[tenant.id]
    own = period_usage(
        env.store, tenant.id, segments, period, cutoff, metered=True, measures=rater.measures(segments)
    )
    # Then both read the same usage, meters and units per segment
    assert own.segments == month.segments
    assert own.metered == month.metered
    assert own.measured == month.measured
