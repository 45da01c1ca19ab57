"""Time-weighted sums (gauges: storage held, seats held): the integral of the step function the
events draw over the period, the value held when the period opens counted from its first
millisecond, time exact to the millisecond, one rounding to 18 places when expressed in the unit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.catalog.metrics import MILLISECONDS_PER
from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import Month
from billing.metering.events import StoredEvent
from tests.metering.test_catalog_metrics import NOV, event, metric, value

MS = timedelta(milliseconds=1)
_WIDE = Context(prec=100)  # Python's default 28 digits would round the oracle


def gauge(per: str = "hour", **fields: Any):
    return metric(aggregation="time_weighted_sum", property="gb", per=per, **fields)


def at(day: int, hour: int = 0, month: int = 11) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


# -- the catalog --------------------------------------------------------------------------------
def test_a_time_weighted_sum_loads_with_its_time_unit():
    document = {
        "plans": [{"id": "p", "name": "P"}],
        "metrics": [
            {
                "id": "storage_held",
                "name": "Storage held",
                "unit": "GB-hours",
                "event_types": ["storage"],
                "aggregation": "time_weighted_sum",
                "property": "gb",
                "per": "hour",
            }
        ],
    }
    held = PlanCatalog.model_validate(document).metric("storage_held")
    assert (held.aggregation, held.property, held.per) == ("time_weighted_sum", "gb", "hour")


@pytest.mark.parametrize(
    "fields, location, message",
    [
        ({"aggregation": "time_weighted_sum", "property": "gb"}, "metrics.0", "needs `per`"),
        ({"aggregation": "time_weighted_sum", "per": "hour"}, "metrics.0", "reads a numeric `property`"),
        (
            {"aggregation": "time_weighted_sum", "field": "bytes", "per": "hour"},
            "metrics.0",
            "reads a numeric `property`",
        ),
        (
            {"aggregation": "time_weighted_sum", "property": "gb", "per": "week"},
            "metrics.0.per",
            "'second', 'minute', 'hour' or 'day'",
        ),
        (
            {"aggregation": "sum", "property": "gb", "per": "hour"},
            "metrics.0",
            "`per` is the time unit of a time_weighted_sum only",
        ),
    ],
)
def test_a_bad_time_weighted_sum_is_refused_at_load(fields, location, message):
    document = {
        "plans": [{"id": "p", "name": "P"}],
        "metrics": [{"id": "m", "name": "M", "unit": "GB-hours", "event_types": ["query"], **fields}],
    }
    with pytest.raises(ValidationError) as refused:
        PlanCatalog.model_validate(document)
    [error] = refused.value.errors()
    assert ".".join(map(str, error["loc"])) == location and message in error["msg"], error


# -- values -------------------------------------------------------------------------------------
def test_gb_hours_over_a_hand_worked_month(env):
    # Given acme's storage gauge: 2 GB held since October, 5 GB from 11 November, 1 GB from
    # 21 November (two events at that instant: the greater event id, 1 GB, holds), and events that
    # do not count: another tenant's, a filtered region's, one without the property, one in December
    env.store.insert_events(
        [
            event("a", {"gb": Decimal(7), "region": "eu"}, at=at(1, month=10)),
            event("b", {"gb": Decimal(2), "region": "eu"}, at=at(20, month=10)),
            event("c", {"gb": Decimal(5), "region": "eu"}, at=at(11)),
            event("e1", {"gb": Decimal(9), "region": "eu"}, at=at(21)),
            event("e2", {"gb": Decimal(1), "region": "eu"}, at=at(21)),
            event("x", {"gb": Decimal(1000), "region": "eu"}, at=at(15), tenant="other"),
            event("y", {"gb": Decimal(1000), "region": "us"}, at=at(15)),
            event("z", {"region": "eu"}, at=at(16)),
            event("w", {"gb": Decimal(1000), "region": "eu"}, at=at(1, month=12)),
        ]
    )
    eu = [{"property": "region", "in": ["eu"]}]
    # Then the GB-hours are 2 x 240 + 5 x 240 + 1 x 240 = 1920
    assert value(env, gauge(filters=eu)) == 1920
    # And in GB-days, 80; and without the filter the us event (1000 GB from the 15th to the 21st)
    # replaces the 5 GB for 144 hours
    assert value(env, gauge("day", filters=eu)) == 80
    assert value(env, gauge()) == 2 * 240 + 5 * 96 + 1000 * 144 + 1 * 240
    # And a month with nothing held before or in it is 0
    assert value(env, gauge(), tenant="nobody") == 0
    assert value(env, gauge(filters=eu), month=Month(2025, 9)) == 0
    # And December opens with the last value of November (1 GB) until the 1000 GB arrive at once
    assert value(env, gauge(filters=eu), month=Month(2025, 12)) == 1000 * 31 * 24


def test_an_event_at_the_start_replaces_the_carried_value_and_the_last_millisecond_counts(env):
    # Given 3 GB held from October, 4 GB set exactly at November's start, 6 GB at its last ms
    last = NOV.end - MS
    env.store.insert_events(
        [
            event("a", {"gb": Decimal(3)}, at=at(30, month=10)),
            event("b", {"gb": Decimal(4)}, at=NOV.start),
            event("c", {"gb": Decimal(6)}, at=last),
        ]
    )
    # Then the 3 GB hold for no time, the 4 GB until the last ms, and the 6 GB for 1 ms
    month_ms = (NOV.end - NOV.start) // MS
    assert value(env, gauge("second")) == Decimal(4 * (month_ms - 1) + 6) / 1000


def test_time_is_exact_to_the_millisecond_and_rounded_once_to_18_places(env):
    # Given 1 GB held for one millisecond, then 0.000000000000000001 GB for the rest of November
    env.store.insert_events(
        [
            event("a", {"gb": Decimal(1)}, at=NOV.start),
            event("b", {"gb": Decimal("1E-18")}, at=NOV.start + MS),
        ]
    )
    # Then in GB-hours: 1/3,600,000 + (30 x 24 x 3,600,000 - 1) x 10^-18 / 3,600,000, rounded once
    # half-even to 18 places (each term alone would round differently)
    exact = Fraction(1, 3_600_000) + Fraction(30 * 24 * 3_600_000 - 1, 3_600_000 * 10**18)
    assert value(env, gauge()) == Decimal("0.000000277777778498")
    assert value(env, gauge()) == Decimal(round(exact * 10**18)).scaleb(-18, context=_WIDE)


def test_an_event_stored_twice_holds_once(env):
    row = event("a", {"gb": Decimal(2)}, at=at(1))
    env.store.insert_events([row])
    env.store.insert_events([row, event("b", {"gb": Decimal(1)}, at=at(11))])
    assert value(env, gauge()) == 2 * 240 + 1 * 480


# -- property tests -----------------------------------------------------------------------------
_SPAN = (NOV.end - NOV.start) // MS
_DAY = 86_400_000
# instants that matter: long before, just before, at the start, the last millisecond, the end
# (outside), after; and a few shared instants so that ties happen
_EDGES = [-40 * _DAY, -1, 0, 1, _SPAN // 2, _SPAN - 1, _SPAN, _SPAN + 5]
_instants = st.one_of(st.sampled_from(_EDGES), st.integers(-3 * _DAY, _SPAN + _DAY))
_gb = st.decimals(
    min_value=Decimal("-99999999999999999999.999999999999999999"),
    max_value=Decimal("99999999999999999999.999999999999999999"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
)
_series = st.lists(
    st.tuples(
        st.integers(0, 999),  # the event id's number: ids are unique, their order is not the list's
        _instants,
        st.one_of(st.none(), _gb),  # the gauge's value, or an event without it
        st.booleans(),  # in the metric's region (else filtered out)
    ),
    unique_by=lambda row: row[0],
    max_size=20,
)


def integral(events: list[StoredEvent], start: datetime, end: datetime, per: str) -> Decimal:
    """The step function's integral over [start, end), worked out in Python with exact fractions:
    the value steps at each qualifying event, in (timestamp, event_id) order."""
    steps = sorted(
        (e for e in events if "gb" in e.properties and e.properties["region"] == "eu" and e.timestamp < end),
        key=lambda e: (e.timestamp, e.event_id),
    )
    before = [e for e in steps if e.timestamp < start]
    steps = before[-1:] + [e for e in steps if e.timestamp >= start]
    total = Fraction(0)
    for i, held in enumerate(steps):
        until = steps[i + 1].timestamp if i + 1 < len(steps) else end
        total += Fraction(held.properties["gb"]) * ((until - max(held.timestamp, start)) // MS)
    return Decimal(round(total * 10**18 / MILLISECONDS_PER[per])).scaleb(-18, context=_WIDE)


# each example is fresh tenants of real ClickHouse rows, so the shared database is safe to reuse
@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=_series,
    per=st.sampled_from(sorted(MILLISECONDS_PER)),
    orders=st.tuples(st.randoms(use_true_random=False), st.randoms(use_true_random=False)),
    block=st.integers(1, 7),
    cut=st.one_of(st.sampled_from(_EDGES[2:6]), st.integers(0, _SPAN)),
)
def test_a_time_weighted_sum_is_the_integral_of_its_step_function_in_any_insert_order(
    env, rows, per, orders, block, cut
):
    # Given any gauge series around November (carried in from before it, ties, the edges), stored
    # for two tenants in two different orders and in blocks
    tenants = [f"t-{uuid.uuid4().hex[:10]}" for _ in orders]
    series = {
        tenant: [
            event(
                f"e{number:03d}",
                {"region": "eu" if kept else "us", **({} if gb is None else {"gb": gb})},
                at=NOV.start + instant * MS,
                tenant=tenant,
            )
            for number, instant, gb, kept in rows
        ]
        for tenant in tenants
    }
    for tenant, order in zip(tenants, orders, strict=True):
        shuffled = series[tenant][:]
        order.shuffle(shuffled)
        for i in range(0, len(shuffled), block):
            env.store.insert_events(shuffled[i : i + block])
    eu = [{"property": "region", "in": ["eu"]}]

    def of(tenant: str, aggregation: str, **fields: Any) -> Decimal | None:
        return value(env, metric(aggregation=aggregation, filters=eu, **fields), tenant=tenant)

    # Then for each order the time-weighted sum is the integral worked out in Python
    expected = integral(series[tenants[0]], NOV.start, NOV.end, per)
    for tenant in tenants:
        assert of(tenant, "time_weighted_sum", property="gb", per=per) == expected
    # And the period split at any instant (a plan change) sums to the whole, each part rounded once
    first = tenants[0]
    split = NOV.start + cut * MS
    held = metric(aggregation="time_weighted_sum", property="gb", per=per, filters=eu)
    metrics = ClickHouseMetrics(env.store)
    before, after = metrics.value(held, first, NOV.start, split), metrics.value(held, first, split, NOV.end)
    assert before is not None and after is not None
    parts = _WIDE.add(before, after)
    assert _WIDE.abs(_WIDE.subtract(parts, expected)) <= Decimal("1E-18")
    oracle = (integral(series[first], NOV.start, split, per), integral(series[first], split, NOV.end, per))
    assert (before, after) == oracle
    # And max and latest do not depend on the order, and a unique count never exceeds the count
    first, second = tenants
    assert of(first, "max", property="gb") == of(second, "max", property="gb")
    assert of(first, "latest", property="gb") == of(second, "latest", property="gb")
    unique, count = of(first, "unique_count", property="gb"), of(first, "count")
    assert unique is not None and count is not None and unique <= count
