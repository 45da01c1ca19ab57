"""Charges on catalog metrics through the rater, from real ClickHouse rows: a plan change to an
identical plan rates as the whole month, grouped lines add up to the ungrouped line when the groups
share one price, the bound on groups, and late events re-rating a max and a unique count."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries
from billing.catalog.plans import PlanCatalog
from billing.kernel.money import ZERO
from billing.kernel.periods import Month
from billing.metering.events import StoredEvent
from billing.rating import Rater
from billing.rating.measures import MAX_GROUPS, TooManyGroups
from billing.runtime import container
from billing.statements.statement import Statement
from billing.tenants.tenant import PlanAssignment, Tenant

NOV, DEC = Month(2025, 11), Month(2025, 12)

CHARGES = [
    {"id": "users", "metric": "active_users", "charge_model": "graduated",
     "tiers": [{"up_to": 3, "unit_price": "0.5"}, {"up_to": None, "unit_price": "0.25", "flat_amount": "1"}]},
    {"id": "secs", "metric": "gpu_seconds", "charge_model": "volume",
     "tiers": [{"up_to": 100, "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.005", "flat_amount": "1"}]},
    {"id": "peak", "metric": "peak_seats", "charge_model": "package", "package_size": 3, "package_price": "2"},
    {"id": "last", "metric": "seats_now", "charge_model": "per_unit", "unit_price": "0.7"},
    {"id": "held", "metric": "seat_hours", "charge_model": "graduated",
     "tiers": [{"up_to": "100.5", "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.003", "flat_amount": "1"}]},
]  # fmt: skip
HELD = {
    "id": "seat_hours",
    "name": "Seat hours",
    "metric": "seat_hours",
    "charge_model": "per_unit",
    "unit_price": "0.01",
}
HELD_TIERS = {
    "id": "held_tiers",
    "name": "Seat hours",
    "metric": "seat_hours",
    "charge_model": "graduated",
    "tiers": [{"up_to": "1000.5", "unit_price": "0.013"}, {"up_to": None, "unit_price": "0.0071"}],
}
# fmt: skip
CATALOG = PlanCatalog.model_validate(
    {
        "metrics": [
            {
                "id": "gpu_seconds",
                "name": "GPU seconds",
                "unit": "seconds",
                "event_types": ["query"],
                "aggregation": "sum",
                "property": "seconds",
            },
            {
                "id": "active_users",
                "name": "Active users",
                "unit": "users",
                "event_types": ["query"],
                "aggregation": "unique_count",
                "property": "user",
            },
            {
                "id": "peak_seats",
                "name": "Peak seats",
                "unit": "seats",
                "event_types": ["query"],
                "aggregation": "max",
                "property": "seats",
            },
            {
                "id": "seat_hours",
                "name": "Seat hours",
                "unit": "seat-hours",
                "event_types": ["query"],
                "aggregation": "time_weighted_sum",
                "property": "seats",
                "per": "hour",
            },
            {
                "id": "seats_now",
                "name": "Seats",
                "unit": "seats",
                "event_types": ["query"],
                "aggregation": "latest",
                "property": "seats",
            },
        ],  # fmt: skip
        "plans": [
            {"id": "one", "name": "One", "query_quota": None, "charges": CHARGES},
            {"id": "same", "name": "Same", "query_quota": None, "charges": CHARGES},
            {
                "id": "grouped",
                "name": "Grouped",
                "query_quota": None,
                "charges": [
                    {
                        "id": "gpu",
                        "name": "GPU seconds",
                        "metric": "gpu_seconds",
                        "group_by": ["gpu", "region"],
                        "charge_model": "per_unit",
                        "unit_price": "0.004",
                    }
                ],
            },
            {
                "id": "held",
                "name": "Held",
                "query_quota": None,
                "charges": [
                    {
                        "id": "seat_hours",
                        "name": "Seat hours",
                        "metric": "seat_hours",
                        "charge_model": "per_unit",
                        "unit_price": "0.01",
                    },
                    HELD_TIERS,
                ],
            },
            {"id": "held_same", "name": "Held too", "query_quota": None, "charges": [HELD, HELD_TIERS]},
            {
                "id": "flat",
                "name": "Flat",
                "query_quota": None,
                "charges": [
                    {
                        "id": "gpu_all",
                        "name": "GPU seconds",
                        "metric": "gpu_seconds",
                        "charge_model": "per_unit",
                        "unit_price": "0.004",
                    }
                ],
            },
        ],  # fmt: skip
    }
)


def event(tenant: str, event_id: str, at: datetime, properties: dict[str, Any]) -> StoredEvent:
    return StoredEvent(tenant, event_id, at, "query", "", 1, 0, 0, 0, Decimal(0), "v1", at, properties)


def tenant_on(plans: Sequence[tuple[str, datetime]], **extra: Any) -> Tenant:
    history = [PlanAssignment(plan=p, effective_at=at) for p, at in plans]
    return Tenant(id=f"t-{uuid.uuid4().hex[:10]}", plans=history, **extra)


def rate(env, rater: Rater, tenant: Tenant, month: Month = NOV, late: Sequence[Any] = ()) -> Statement:
    queries = ClickHouseRatingQueries(container.usage_store())
    segments = rater.segments(tenant, month)
    usage = queries.month_usage(
        {tenant.id: segments},
        month,
        None,
        metered=[tenant.id],
        measures={tenant.id: rater.measures(segments)},
    )
    return rater.rate(tenant, month, usage[tenant.id], late, segments=segments)


def charged(statement: Statement) -> Decimal:
    return sum((l.amount_exact for l in statement.lines if l.kind == "charge"), ZERO)


_rows = st.lists(
    st.tuples(
        st.integers(0, NOV.seconds - 1),
        st.decimals(min_value=0, max_value=500, places=3),  # seconds
        st.sampled_from(["u1", "u2", "u3", "u4", "u5", "u6"]),
        st.integers(0, 12),  # seats
        st.sampled_from(["h100", "a100", None]),
        st.sampled_from(["eu", "us"]),
    ),
    max_size=30,
)


def _events(tenant: str, rows: list) -> list[StoredEvent]:
    out = []
    for i, (second, seconds, user, seats, gpu, region) in enumerate(rows):
        properties = {"seconds": seconds, "user": user, "seats": Decimal(seats), "region": region}
        if gpu is not None:
            properties["gpu"] = gpu
        out.append(event(tenant, f"e{i:03d}", NOV.start + timedelta(seconds=second), properties))
    return out


# each example rates fresh tenants of real ClickHouse rows, so the shared database is safe to reuse
@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows, cut=st.integers(1, NOV.seconds - 1))
def test_a_month_split_by_a_change_to_an_identical_plan_rates_the_same(env, rows, cut):
    # Given one tenant on a plan all month, another changing to an identical plan at any instant
    rater = Rater(CATALOG)
    before = NOV.start - timedelta(days=1)
    whole = tenant_on([("one", before)])
    split = tenant_on([("one", before), ("same", NOV.start + timedelta(seconds=cut))])
    # When both have the same events (a unique count, a sum, a max, a latest, seats held) and are rated
    env.store.insert_events(_events(whole.id, rows) + _events(split.id, rows))
    a, b = rate(env, rater, whole), rate(env, rater, split)
    # Then every charge bills the same units and the same exact amount (each line stores its exact
    # amount to 15 places, billing.rating.lines: seat-hours have 18, so the stored sums agree to that)
    assert units_per_charge(a) == units_per_charge(b)
    lines = len(a.lines) + len(b.lines)
    assert abs(charged(a) - charged(b)) <= Decimal("1e-15") * lines


def units_per_charge(statement: Statement) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for l in statement.lines:
        if l.kind == "charge":
            charge_id = l.line_id.split(":")[1]
            out[charge_id] = out.get(charge_id, ZERO) + l.quantity
    return out


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_rows)
def test_grouped_lines_add_up_to_the_ungrouped_line_when_the_groups_share_one_price(env, rows):
    # Given a tenant grouping GPU seconds by gpu and region, another on the same price ungrouped
    rater = Rater(CATALOG)
    before = NOV.start - timedelta(days=1)
    grouped, flat = tenant_on([("grouped", before)]), tenant_on([("flat", before)])
    env.store.insert_events(_events(grouped.id, rows) + _events(flat.id, rows))
    # When both are rated
    g, f = rate(env, rater, grouped), rate(env, rater, flat)
    # Then the groups' units and exact amounts add up to the ungrouped line's
    lines = [l for l in g.lines if l.kind == "charge"]
    assert sum(l.quantity for l in lines) == sum(l.quantity for l in f.lines if l.kind == "charge")
    assert charged(g) == charged(f)
    # And each group with seconds is one line, named by its values
    totals: dict[str, Decimal] = {}
    for _, seconds, _, _, gpu, region in rows:
        key = f"charge:gpu:gpu={gpu or ''},region={region}:grouped"
        totals[key] = totals.get(key, ZERO) + seconds
    assert {l.line_id: l.quantity for l in lines} == {k: v for k, v in totals.items() if v}


def test_more_groups_than_a_statement_holds_is_a_rating_error_naming_the_charge(env):
    # Given a tenant with one more region than a statement's groups
    rater = Rater(CATALOG)
    tenant = tenant_on([("grouped", NOV.start - timedelta(days=1))])
    at = NOV.start + timedelta(days=2)
    env.store.insert_events(
        [
            event(tenant.id, f"e{i}", at, {"gpu": "h100", "region": f"r{i}", "seconds": 1})
            for i in range(MAX_GROUPS + 1)
        ]
    )
    # When it is rated, then it is refused, naming the charge and the bound
    with pytest.raises(TooManyGroups, match=f"charge gpu: {MAX_GROUPS + 1} groups .* {MAX_GROUPS} allowed"):
        rate(env, rater, tenant)


def test_late_events_rerate_a_max_and_a_unique_count_as_adjustments(env):
    # Given a tenant whose November had users u1, u2 and seats 4 then 2, billed at a close
    rater = Rater(CATALOG)
    tenant = tenant_on([("one", NOV.start - timedelta(days=1))])
    day = NOV.start + timedelta(days=3)
    env.store.insert_events(
        [
            event(tenant.id, "a", day, {"user": "u1", "seats": 4, "seconds": 10}),
            event(tenant.id, "b", day + timedelta(hours=1), {"user": "u2", "seats": 2, "seconds": 10}),
        ]
    )
    closed_at = datetime.now(UTC)
    time.sleep(0.01)
    # When late November events arrive: u1 again and u3, a new peak of 7 (between the two), and a
    # stray copy of a billed event
    env.store.insert_events(
        [
            event(tenant.id, "c", day + timedelta(minutes=30), {"user": "u1", "seats": 7, "seconds": 5}),
            event(tenant.id, "d", day + timedelta(minutes=40), {"user": "u3", "seconds": 5}),
            event(tenant.id, "a", day, {"user": "u1", "seats": 4, "seconds": 10}),
        ]
    )
    queries = ClickHouseRatingQueries(container.usage_store())
    late = queries.late_usage(
        DEC,
        lower=closed_at,
        upper=None,
        closed={NOV: closed_at},
        segments_of=lambda _, m: rater.segments(tenant, m),
        tenant_ids=[tenant.id],
        needs_meters=rater.needs_meters,
        measures=rater.measures,
    )[tenant.id]
    december = rate(env, rater, tenant, DEC, late)
    # Then December re-rates November with the late events minus what was billed, line by line:
    # users 2 -> 3 (tier 1 at 0.5), seconds 20 -> 30 (tier 1 at 0.01), peak 4 -> 7 (2 -> 3 blocks of
    # 3 at 2), the latest stays 2 (b is still the last event): no line; seat-hours held from the 4th
    # 1,250 -> 1,251.5 (c holds 7 instead of a's 4 for half an hour), all in tier 2 at 0.003:
    # 1,149.5 x 0.003 = 3.4485 and 1,151 x 0.003 = 3.453 both bill 3.45, so a unit line at 0.00
    adjustments = {l.line_id: (l.quantity, l.amount) for l in december.lines if l.kind == "adjustment"}
    assert adjustments == {
        "adj:2025-11:charge:held:one:t2": (Decimal("1.5"), Decimal("0.00")),
        "adj:2025-11:charge:users:one:t1": (Decimal(1), Decimal("0.50")),
        "adj:2025-11:charge:secs:one:t1": (Decimal(10), Decimal("0.10")),
        "adj:2025-11:charge:peak:one": (Decimal(1), Decimal("2.00")),
        "adj:2025-11:queries:one:t1": (Decimal(2), Decimal("0.00")),
        "adj:2025-11:usage": (Decimal(2), Decimal("0.00")),
    }


_GPU = {"id": "g", "name": "GPU", "metric": "gpu_seconds", "charge_model": "per_unit", "unit_price": "1"}


@pytest.mark.parametrize(
    ("charges", "message"),
    [
        ([{**_GPU, "metric": "nope"}], "metric 'nope' is neither built in"),
        ([{**_GPU, "event_type": "query"}], "filters through the metric"),
        ([{**_GPU, "metric": "queries", "group_by": ["gpu"]}], "group_by needs a catalog metric"),
        ([{**_GPU, "group_by": ["gpu", "gpu"]}], "group_by repeats a property"),
        ([{**_GPU, "group_by": ["a", "b", "c", "d", "e"]}], "at most 4 items"),
        (
            [{**_GPU, "group_by": ["gpu"], "price_by": {"property": "gpu", "prices": [{"values": ["x"]}]}}],
            "group_by or price_by, not both",
        ),
        (
            [{**_GPU, "price_by": {"property": "gpu", "prices": [{"values": ["x"]}, {"values": ["x"]}]}}],
            "a value has two prices",
        ),
        (
            [{**_GPU, "price_by": {"property": "gpu", "prices": [{"values": ["x"], "package_price": "1"}]}}],
            "the price of x: .*priced by unit_price only",
        ),
    ],
)
def test_a_charge_on_a_catalog_metric_is_checked_at_load_naming_it(charges, message):
    # Given a plans file with a bad charge on a metric, when it is loaded, then it is refused, saying why
    document = {
        "metrics": [
            {"id": "gpu_seconds", "name": "G", "unit": "s", "event_types": ["query"], "aggregation": "count"}
        ],
        "plans": [{"id": "p", "name": "P", "charges": charges}],
    }
    with pytest.raises(ValueError, match=message):
        PlanCatalog.model_validate(document)


def test_a_grouped_charge_id_groups_alike_in_every_plan():
    metric = {"id": "gpu_seconds", "name": "G", "unit": "s", "event_types": ["query"], "aggregation": "count"}
    plans = [
        {"id": "a", "name": "A", "charges": [{**_GPU, "group_by": ["gpu"]}]},
        {"id": "b", "name": "B", "charges": [{**_GPU, "group_by": ["region"]}]},
    ]
    with pytest.raises(ValueError, match="charge g: plans a and b give it different"):
        PlanCatalog.model_validate({"metrics": [metric], "plans": plans})


def test_prices_per_value_across_a_trial_and_a_plan_change_by_hand(env):
    # Given a charge priced per gpu in two plans (h100 at 0.004 then 0.008, any other gpu at 0.001
    # then 0.002), a tenant in trial to the 5th, on A, then on B from the 16th
    metric = {"id": "gpu_seconds", "name": "G", "unit": "seconds", "event_types": ["query"],
              "aggregation": "sum", "property": "seconds"}  # fmt: skip

    def plan(plan_id: str, h100: str, other: str) -> dict:
        by = {"property": "gpu", "prices": [{"values": ["h100"], "unit_price": h100}]}
        charge = {**_GPU, "id": "c", "unit_price": other, "price_by": by}
        return {"id": plan_id, "name": plan_id.upper(), "query_quota": None, "charges": [charge]}

    rater = Rater(
        PlanCatalog.model_validate(
            {"metrics": [metric], "plans": [plan("a", "0.004", "0.001"), plan("b", "0.008", "0.002")]}
        )
    )
    tenant = tenant_on(
        [("a", NOV.start), ("b", NOV.start + timedelta(days=15))], trial_ends_at=NOV.start + timedelta(days=4)
    )
    day = [NOV.start + timedelta(days=d - 1) for d in range(32)]
    env.store.insert_events(
        [
            event(tenant.id, "t", day[2], {"gpu": "h100", "seconds": 100}),  # in the trial
            event(tenant.id, "a", day[10], {"gpu": "h100", "seconds": 100}),
            event(tenant.id, "b", day[20], {"gpu": "h100", "seconds": 50}),
            event(tenant.id, "x", day[21], {"gpu": "t4", "seconds": 10}),
        ]
    )
    # When November is rated
    statement = rate(env, rater, tenant)
    # Then each price is its own part: h100 under A and under B at their prices, free in the trial,
    # the t4 seconds at B's default
    lines = {l.line_id: (l.quantity, l.amount, l.description) for l in statement.lines if l.kind == "charge"}
    assert lines == {
        "charge:c:gpu=h100:a": (Decimal(100), Decimal("0.40"), "GPU (gpu: h100): 100 seconds at $0.004 (A plan)"),
        "charge:c:gpu=h100:b": (Decimal(50), Decimal("0.40"), "GPU (gpu: h100): 50 seconds at $0.008 (B plan)"),
        "charge:c:gpu=h100:trial": (Decimal(100), Decimal("0.00"), "GPU (gpu: h100) during the free trial: 100 seconds (free)"),
        "charge:c:gpu=*:b": (Decimal(10), Decimal("0.02"), "GPU (gpu: other): 10 seconds at $0.002"),
    }  # fmt: skip


def test_charges_without_groups_or_value_prices_digest_as_before():
    # Given the pricing tests' plans (charges on built-in metrics only), and a grouped plan here
    plans = PlanCatalog.load(Path(__file__).resolve().parents[1] / "pricing" / "plans.yaml")
    # Then their charges' digest documents hold none of the new keys, so statements keep their digest
    for plan in plans.plans:
        for charge in plan.digest_document().get("charges", []):
            assert "group_by" not in charge and "price_by" not in charge
    # And a grouped charge's grouping is part of its plan's digest
    assert CATALOG.get("grouped").digest_document()["charges"][0]["group_by"] == ["gpu", "region"]


def test_numeric_group_values_group_by_their_exact_decimals_canonical_text(env):
    # Given a tenant grouping GPU seconds by gpu and region, whose events carry gpu as numbers
    # written 1.50, 1.5, 3 and 3.000, and one carrying the text "1.5"
    rater = Rater(CATALOG)
    tenant = tenant_on([("grouped", NOV.start - timedelta(days=1))])
    at = NOV.start + timedelta(days=2)
    gpus = [Decimal("1.50"), Decimal("1.5"), Decimal("3"), Decimal("3.000"), "1.5", Decimal("0.25")]
    env.store.insert_events(
        [
            event(tenant.id, f"e{i}", at + timedelta(minutes=i), {"gpu": gpu, "region": "eu", "seconds": 10})
            for i, gpu in enumerate(gpus)
        ]
    )
    # When November is rated
    lines = {l.line_id: l.quantity for l in rate(env, rater, tenant).lines if l.kind == "charge"}
    # Then a number groups by its exact decimal's canonical text (no trailing zeros), so 1.50 and
    # 1.5 are one group, 3 and 3.000 another, and the text "1.5" joins the number's group
    assert lines == {
        "charge:gpu:gpu=0.25,region=eu:grouped": Decimal(10),
        "charge:gpu:gpu=1.5,region=eu:grouped": Decimal(30),
        "charge:gpu:gpu=3,region=eu:grouped": Decimal(20),
    }


def test_a_late_gauge_event_rerates_the_time_held_as_an_adjustment(env):
    # Given a tenant holding 4 seats from November 4th, billed at a close: 27 days = 648 h x 4 =
    # 2,592 seat-hours at 0.01 = 25.92
    rater = Rater(CATALOG)
    tenant = tenant_on([("held", NOV.start - timedelta(days=40))])
    day = NOV.start + timedelta(days=3)
    env.store.insert_events([event(tenant.id, "a", day, {"seats": 4})])
    closed_at = datetime.now(UTC)
    time.sleep(0.01)
    # When a late November event says 10 seats were held from the 4th at noon
    env.store.insert_events([event(tenant.id, "b", day + timedelta(hours=12), {"seats": 10})])
    queries = ClickHouseRatingQueries(container.usage_store())
    late = queries.late_usage(
        DEC,
        lower=closed_at,
        upper=None,
        closed={NOV: closed_at},
        segments_of=lambda _, m: rater.segments(tenant, m),
        tenant_ids=[tenant.id],
        needs_meters=rater.needs_meters,
        measures=rater.measures,
    )[tenant.id]
    december = rate(env, rater, tenant, DEC, late)
    # Then December bills November re-rated minus what was billed: 4 x 12 h + 10 x 636 h = 6,408
    # seat-hours (64.08) less 2,592 (25.92) = 3,816 seat-hours, 38.16; and December itself holds the
    # 10 seats carried in from November all month: 744 h x 10 = 7,440 seat-hours, 74.40
    lines = {l.line_id: (l.quantity, l.amount) for l in december.lines if "seat_hours" in l.line_id}
    assert lines == {
        "adj:2025-11:charge:seat_hours:held": (Decimal(3816), Decimal("38.16")),
        "charge:seat_hours:held": (Decimal(7440), Decimal("74.40")),
    }


_held = st.lists(
    st.tuples(
        st.integers(-5 * 86_400_000, NOV.seconds * 1000 - 1),  # ms from November 1st (before: carried in)
        st.decimals(min_value=0, max_value=50, places=3),
    ),
    min_size=1,
    max_size=12,
)


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=_held, cut=st.integers(1, NOV.seconds * 1000 - 1))
def test_a_gauge_split_at_any_millisecond_by_a_change_to_an_identical_plan_rates_the_same(env, held, cut):
    # Given one tenant holding seats all month, another changing to an identical plan at any
    # millisecond, both with the same gauge events (some before November: the value carried in)
    rater = Rater(CATALOG)
    before = NOV.start - timedelta(days=40)
    whole = tenant_on([("held", before)])
    split = tenant_on([("held", before), ("held_same", NOV.start + timedelta(milliseconds=cut))])
    for tenant in (whole, split):
        env.store.insert_events(
            [
                event(tenant.id, f"h{i:02d}", NOV.start + timedelta(milliseconds=ms), {"seats": seats})
                for i, (ms, seats) in enumerate(held)
            ]
        )
    # When both are rated
    a, b = rate(env, rater, whole), rate(env, rater, split)
    # Then both charges (per unit, fractional graduated tiers) bill the same units and the same
    # exact amounts: each segment's seat-hours are exact, so they add up to the whole month's
    assert units_per_charge(a) == units_per_charge(b)
    assert exact_amount(a) == exact_amount(b)


def exact_amount(statement: Statement) -> Decimal:
    """The charges' exact amount: units x unit price, line by line (these plans have no flat fee)."""
    lines = [l for l in statement.lines if l.kind == "charge"]
    assert all(l.unit_price is not None for l in lines)
    return sum((l.quantity * (l.unit_price or ZERO) for l in lines), ZERO)


def test_prices_per_value_match_a_numeric_property_by_its_canonical_text(env):
    # Given GPU seconds priced per gpu size: "1.5" at 0.01, anything else at 0.001
    metric = {"id": "gpu_seconds", "name": "G", "unit": "seconds", "event_types": ["query"],
              "aggregation": "sum", "property": "seconds"}  # fmt: skip
    by = {"property": "size", "prices": [{"values": ["1.5"], "unit_price": "0.01"}]}
    charge = {**_GPU, "id": "c", "unit_price": "0.001", "price_by": by}
    plan = {"id": "p", "name": "P", "query_quota": None, "charges": [charge]}
    rater = Rater(PlanCatalog.model_validate({"metrics": [metric], "plans": [plan]}))
    tenant = tenant_on([("p", NOV.start - timedelta(days=1))])
    at = NOV.start + timedelta(days=2)
    # When events carry size as the numbers 1.50 and 1.5, and 15
    sizes = [Decimal("1.50"), Decimal("1.5"), Decimal("15")]
    env.store.insert_events(
        [event(tenant.id, f"e{i}", at, {"size": size, "seconds": 100}) for i, size in enumerate(sizes)]
    )
    lines = {l.line_id: (l.quantity, l.amount) for l in rate(env, rater, tenant).lines if l.kind == "charge"}
    # Then 1.50 and 1.5 pay the price of "1.5": 200 x 0.01 = 2.00; 15 the default: 100 x 0.001 = 0.10
    assert lines == {
        "charge:c:size=1.5:p": (Decimal(200), Decimal("2.00")),
        "charge:c:size=*:p": (Decimal(100), Decimal("0.10")),
    }
