"""Catalog metrics: defined next to the plans and validated at load with errors that name the metric;
each aggregation computed by ClickHouse for a tenant and period, exactly, each event once."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.catalog.metrics import BUILT_IN, BUILT_IN_METRICS, MetricDefinition
from billing.catalog.plans import Charge, PlanCatalog
from billing.kernel.periods import Month
from billing.metering.events import StoredEvent
from billing.rating.metrics import METRIC_UNITS, quantity
from billing.rating.usage import Meter

NOV = Month(2025, 11)
T0 = datetime(2025, 11, 3, 12, tzinfo=UTC)
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "plans.yaml"


def metric(**fields: Any) -> MetricDefinition:
    return MetricDefinition.model_validate(
        {"id": "m", "name": "M", "unit": "units", "event_types": ["query"], **fields}
    )


def event(
    event_id: str, properties: dict[str, Any], *, at: datetime = T0, tenant: str = "acme", type: str = "query"
) -> StoredEvent:
    return StoredEvent(
        tenant, event_id, at, type, "", int(type == "query"), 0, 0, 0, Decimal(0), "v1", at, properties
    )


def value(env, definition: MetricDefinition, tenant: str = "acme", month: Month = NOV) -> Decimal | None:
    return ClickHouseMetrics(env.store).value(definition, tenant, month.start, month.end)


# -- the catalog --------------------------------------------------------------------------------
CATALOG_METRICS = """
metrics:
  - id: gpu_seconds
    name: GPU seconds
    unit: GPU-seconds
    event_types: [query]
    filters:
      - {property: region, in: [eu, us]}
    aggregation: sum
    property: seconds
  - id: active_users
    name: Active users
    unit: users
    event_types: [query, embedding]
    aggregation: unique_count
    property: user_id
"""


def test_metrics_load_from_the_plans_file_next_to_the_plans(tmp_path):
    # Given the shipped plans file with a metrics section added
    path = tmp_path / "plans.yaml"
    path.write_text(SHIPPED.read_text() + CATALOG_METRICS)
    # When it is loaded, Then the metrics are there, and the plans are the shipped ones, unchanged
    catalog = PlanCatalog.load(path)
    shipped = PlanCatalog.load(SHIPPED)
    assert [m.id for m in catalog.metrics] == ["gpu_seconds", "active_users"]
    gpu = catalog.metric("gpu_seconds")
    assert (gpu.aggregation, gpu.property, gpu.filters[0].in_) == ("sum", "seconds", ["eu", "us"])
    assert catalog.plans == shipped.plans and shipped.metrics == []
    assert [p.digest_document() for p in catalog.plans] == [p.digest_document() for p in shipped.plans]


@pytest.mark.parametrize(
    "fields, location, message",
    [
        ({"id": "queries", "aggregation": "count"}, "metrics.0", "built-in metric"),
        ({"id": "GPU", "aggregation": "count"}, "metrics.0.id", "pattern"),
        (
            {"aggregation": "avg"},
            "metrics.0.aggregation",
            "'count', 'sum', 'max', 'latest', 'unique_count' or 'time_weighted_sum'",
        ),
        ({"aggregation": "sum"}, "metrics.0", "a sum reads exactly one of `property`"),
        ({"aggregation": "unique_count"}, "metrics.0", "a unique_count reads exactly one of `property`"),
        ({"aggregation": "max", "property": "s", "field": "bytes"}, "metrics.0", "exactly one of"),
        ({"aggregation": "sum", "field": "seconds"}, "metrics.0.field", "'input_tokens'"),
        ({"aggregation": "count", "models": []}, "metrics.0.models", "at least 1"),
        ({"aggregation": "count", "property": "seconds"}, "metrics.0", "reads no property"),
        ({"aggregation": "count", "field": "bytes"}, "metrics.0", "reads no property or field"),
        ({"aggregation": "max", "property": "Seconds"}, "metrics.0", "'Seconds' is not a property name"),
        ({"aggregation": "count", "event_types": []}, "metrics.0.event_types", "at least 1"),
        # a type the catalog does not declare (billing.catalog.usage_types)
        ({"aggregation": "count", "event_types": ["image"]}, "", "metric m: unknown usage type 'image'"),
        ({"aggregation": "count", "event_types": ["Image"]}, "metrics.0", "event type 'Image'"),
        ({"aggregation": "count", "event_types": ["query", "query"]}, "metrics.0", "repeats a type"),
        (
            {"aggregation": "count", "filters": [{"property": "region"}]},
            "metrics.0.filters.0",
            "exactly one of",
        ),
        (
            {"aggregation": "count", "filters": [{"property": "region", "in": ["eu"], "not_in": ["us"]}]},
            "metrics.0.filters.0",
            "exactly one of",
        ),
        (
            {"aggregation": "count", "filters": [{"property": "region", "in": []}]},
            "metrics.0.filters.0.in",
            "at least 1",
        ),
        (
            {"aggregation": "count", "filters": [{"property": "region", "in": [1]}]},
            "metrics.0.filters.0.in.0",
            "string",
        ),
        (
            {"aggregation": "count", "filters": [{"property": "re gion", "in": ["x"]}]},
            "metrics.0.filters.0",
            "property name",
        ),
        ({"aggregation": "count", "colour": "red"}, "metrics.0.colour", "Extra inputs"),
        ({"aggregation": "count", "unit": ""}, "metrics.0.unit", "at least 1"),
    ],
)
def test_a_bad_metric_is_refused_at_load_naming_it_and_why(fields, location, message):
    # Given a catalog with one metric wrong in one way
    document = {
        "plans": [{"id": "p", "name": "P"}],
        "metrics": [{"id": "m", "name": "M", "unit": "units", "event_types": ["query"], **fields}],
    }
    # When it is loaded, Then it is refused, the error locating the metric and saying what is wrong
    with pytest.raises(ValidationError) as refused:
        PlanCatalog.model_validate(document)
    [error] = refused.value.errors()
    assert ".".join(map(str, error["loc"])) == location and message in error["msg"], error


def test_a_metric_defined_twice_is_refused():
    document = {
        "plans": [{"id": "p", "name": "P"}],
        "metrics": [
            {"id": "m", "name": "M", "unit": "u", "event_types": ["query"], "aggregation": "count"},
            {"id": "m", "name": "M2", "unit": "u", "event_types": ["query"], "aggregation": "count"},
        ],
    }
    with pytest.raises(ValidationError, match="metric m: defined twice"):
        PlanCatalog.model_validate(document)


# -- values -------------------------------------------------------------------------------------
def test_each_aggregation_over_a_hand_worked_month(env):
    # Given acme's month: GPU jobs in eu, us and ap, users, a text and a number seat id, and events
    # of another tenant, another type, and outside the month
    env.store.insert_events(
        [
            event("a", {"region": "eu", "seconds": Decimal("0.1"), "user_id": "u1"}, at=T0),
            event(
                "b",
                {"region": "us", "seconds": Decimal("12.25"), "user_id": "u2"},
                at=T0 + timedelta(hours=1),
            ),
            event(
                "c", {"region": "ap", "seconds": Decimal("100"), "user_id": "u1"}, at=T0 + timedelta(hours=2)
            ),
            event("d", {"region": "eu", "user_id": "u3"}, at=T0 + timedelta(hours=3)),  # no seconds
            event(
                "e", {"region": "eu", "seconds": "7", "user_id": Decimal(3)}, at=T0 + timedelta(hours=4)
            ),  # text seconds
            event(
                "f", {"region": "eu", "seconds": Decimal("0.2"), "user_id": "3"}, at=T0 + timedelta(hours=5)
            ),
            event("x", {"region": "eu", "seconds": Decimal(1000)}, tenant="other"),
            event("y", {"region": "eu", "seconds": Decimal(1000)}, type="storage"),
            event("z", {"region": "eu", "seconds": Decimal(1000)}, at=datetime(2025, 12, 1, tzinfo=UTC)),
            event(
                "w",
                {"region": "eu", "seconds": Decimal(1000)},
                at=datetime(2025, 10, 31, 23, 59, 59, tzinfo=UTC),
            ),
        ]
    )
    eu_us = [{"property": "region", "in": ["eu", "us"]}]
    # Then each aggregation is the hand-worked value
    assert value(env, metric(aggregation="count")) == 6
    assert value(env, metric(aggregation="count", filters=eu_us)) == 5  # a b d e f
    assert value(env, metric(aggregation="count", filters=[{"property": "region", "not_in": ["eu"]}])) == 2
    assert value(env, metric(aggregation="sum", property="seconds")) == Decimal("112.55")  # 0.1+12.25+100+0.2
    assert value(env, metric(aggregation="sum", property="seconds", filters=eu_us)) == Decimal("12.55")
    assert value(env, metric(aggregation="max", property="seconds")) == Decimal(100)
    assert value(env, metric(aggregation="max", property="seconds", filters=eu_us)) == Decimal("12.25")
    assert value(env, metric(aggregation="latest", property="seconds")) == Decimal("0.2")  # f, the last
    # u1 u2 u3, the number 3 and the text "3": five values
    assert value(env, metric(aggregation="unique_count", property="user_id")) == 5
    assert value(env, metric(aggregation="unique_count", property="region")) == 3
    # And over several types, the storage event counts too
    assert value(env, metric(aggregation="count", event_types=["query", "storage"])) == 7
    # And with nothing to read: counts and sums are 0, max and latest have no value
    assert value(env, metric(aggregation="sum", property="nothing")) == 0
    assert value(env, metric(aggregation="unique_count", property="nothing")) == 0
    assert value(env, metric(aggregation="max", property="nothing")) is None
    assert value(env, metric(aggregation="latest", property="nothing")) is None
    assert value(env, metric(aggregation="count"), tenant="nobody") == 0


def test_sums_are_exact_beyond_what_one_property_holds(env):
    # Given ten events of 0.1 and ten of the largest number a property holds
    largest = Decimal("99999999999999999999.999999999999999999")
    env.store.insert_events(
        [event(f"t{i}", {"n": Decimal("0.1")}, at=T0 + timedelta(seconds=i)) for i in range(10)]
        + [event(f"b{i}", {"big": largest}, at=T0 + timedelta(seconds=i)) for i in range(10)]
    )
    # Then ten tenths are exactly 1, and ten of the largest are exactly ten times it (past 10^20)
    assert value(env, metric(aggregation="sum", property="n")) == Decimal(1)
    total = value(env, metric(aggregation="sum", property="big"))
    assert total == Decimal("999999999999999999999.99999999999999999")
    assert value(env, metric(aggregation="max", property="big")) == largest


def test_an_event_stored_twice_counts_once(env):
    # Given an event stored in two blocks (a replay that slipped past the dedup token)
    row = event("a", {"seconds": Decimal(5), "user_id": "u1"})
    env.store.insert_events([row])
    env.store.insert_events([row, event("b", {"seconds": Decimal(1), "user_id": "u2"})])
    # Then every aggregation sees it once
    assert value(env, metric(aggregation="count")) == 2
    assert value(env, metric(aggregation="sum", property="seconds")) == 6
    assert value(env, metric(aggregation="unique_count", property="user_id")) == 2


def test_latest_breaks_a_tie_by_event_id_and_ignores_arrival_order(env):
    # Given three events at one instant, stored in an order that is not their ids'
    env.store.insert_events([event("b", {"seats": Decimal(2)}), event("c", {"seats": Decimal(3)})])
    env.store.insert_events([event("a", {"seats": Decimal(9)})])
    # Then latest is the greatest event id's value
    assert value(env, metric(aggregation="latest", property="seats")) == 3


def test_max_latest_and_unique_count_do_not_depend_on_insert_order(env):
    # Given the same 60 events stored in a shuffled order, in several blocks
    rng = random.Random(3)
    rows = [
        event(
            f"e{i:02d}",
            {"v": Decimal(rng.randint(-500, 500)) / 7 if i % 5 else Decimal(i), "u": f"u{i % 9}"},
            at=T0 + timedelta(minutes=rng.randint(0, 40)),
        )  # fmt: skip
        for i in range(60)
    ]
    rows = [
        r._replace(properties={**r.properties, "v": r.properties["v"].quantize(Decimal("1E-18"))})
        for r in rows
    ]
    shuffled = rows[:]
    rng.shuffle(shuffled)
    for start in range(0, 60, 13):
        env.store.insert_events(shuffled[start : start + 13])
    # Then each value is the one worked out in Python over the events
    numbers = [r.properties["v"] for r in rows]
    last = max(rows, key=lambda r: (r.timestamp, r.event_id))
    assert value(env, metric(aggregation="max", property="v")) == max(numbers)
    assert value(env, metric(aggregation="latest", property="v")) == last.properties["v"]
    assert value(env, metric(aggregation="sum", property="v")) == sum(numbers, Decimal(0))
    unique = value(env, metric(aggregation="unique_count", property="u"))
    assert unique == 9 <= value(env, metric(aggregation="count"))


def test_the_shipped_catalog_parses_with_a_metrics_section_from_yaml():
    # Given the documented example (docs/metering.md) as YAML, Then it loads as written
    document = yaml.safe_load(CATALOG_METRICS)
    catalog = PlanCatalog.model_validate({"plans": [{"id": "p", "name": "P"}], **document})
    assert catalog.metric("active_users").event_types == ["query", "embedding"]


_numbers = st.decimals(
    min_value=Decimal("-99999999999999999999.999999999999999999"),
    max_value=Decimal("99999999999999999999.999999999999999999"),
    places=18,
    allow_nan=False,
    allow_infinity=False,
)
_events = st.lists(
    st.tuples(
        st.integers(0, 3600),  # seconds into the month's first hours: ties happen
        st.one_of(st.none(), _numbers),  # the number property, or none
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.sampled_from(["eu", "us"]),
    ),
    min_size=0,
    max_size=25,
)


# each example is a fresh tenant of real ClickHouse rows, so the shared database is safe to reuse
@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=_events, order=st.randoms(use_true_random=False), block=st.integers(1, 10))
def test_each_aggregation_equals_its_definition_over_any_events_in_any_order(env, rows, order, block):
    # Given any events of a fresh tenant, stored in any order and in blocks of any size
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    start = datetime(2025, 11, 1, tzinfo=UTC)
    events = [
        event(
            f"e{i:03d}",
            {"u": user, "region": region, **({} if number is None else {"v": number})},
            at=start + timedelta(seconds=second),
            tenant=tenant,
        )
        for i, (second, number, user, region) in enumerate(rows)
    ]
    shuffled = events[:]
    order.shuffle(shuffled)
    for i in range(0, len(shuffled), block):
        env.store.insert_events(shuffled[i : i + block])
    # Then each aggregation is its definition worked out in Python
    eu = [{"property": "region", "in": ["eu"]}]
    for filters in ([], eu):
        kept = [e for e in events if not filters or e.properties["region"] == "eu"]
        carried = [e for e in kept if "v" in e.properties]
        numbers = [e.properties["v"] for e in carried]

        def of(aggregation: str, prop: str | None = None, filters: list = filters) -> Decimal | None:
            definition = metric(aggregation=aggregation, property=prop, filters=filters)
            return value(env, definition, tenant=tenant)

        assert of("count") == len(kept)
        with localcontext(Context(prec=100)):  # Python's default 28 digits would round the oracle
            total = sum(numbers, Decimal(0))
        assert of("sum", "v") == total
        assert of("max", "v") == (max(numbers) if numbers else None)
        last = max(carried, key=lambda e: (e.timestamp, e.event_id), default=None)
        assert of("latest", "v") == (None if last is None else last.properties["v"])
        unique = of("unique_count", "u")
        assert unique == len({e.properties["u"] for e in kept})
        assert unique is not None and unique <= len(kept)  # a unique count never exceeds the count


# -- today's metrics in this model --------------------------------------------------------------
def test_the_six_built_in_metrics_are_catalog_metrics_with_the_same_results(env):
    # Given a month of queries, embeddings and storage events of several models (and one duplicate)
    rng = random.Random(11)
    rows = []
    for i in range(80):
        kind = rng.choice(["query", "query", "embedding", "storage"])
        model = "" if kind == "storage" else rng.choice(["gpt-4o", "gpt-4o-mini"])
        tokens = (
            (0, 0) if kind == "storage" else (rng.randint(0, 5000), rng.randint(0, 900) * (kind == "query"))
        )
        size = rng.randint(0, 10**9) if kind != "embedding" else 0
        at = T0 + timedelta(minutes=i)
        rows.append(
            StoredEvent(
                "acme", f"e{i}", at, kind, model, int(kind == "query"), *tokens, size, Decimal(0), "v1", at
            )
        )
    env.store.insert_events(rows)
    env.store.insert_events(rows[:5])  # stored twice: counts once
    # When each built-in metric is computed as a catalog metric
    metrics = ClickHouseMetrics(env.store)

    def of(definition: MetricDefinition) -> Decimal | None:
        return metrics.value(definition, "acme", NOV.start, NOV.end)

    # Then it is the month's total that the stored usage reports
    month = env.store.month_usage("acme", NOV)
    assert set(BUILT_IN) == BUILT_IN_METRICS == set(METRIC_UNITS)
    for name in ("events", "queries", "input_tokens", "output_tokens", "bytes"):
        assert of(BUILT_IN[name]) == month[name], name
    assert of(BUILT_IN["tokens"]) == month["input_tokens"] + month["output_tokens"]
    # And narrowed by a charge's type and model filters, the quantity the rating counts for that charge
    meters: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        m = meters.setdefault((row.type, row.model), [0, 0, 0, 0, 0])
        for k, v in enumerate((1, row.queries, row.input_tokens, row.output_tokens, row.bytes)):
            m[k] += v
    rated = [Meter(t, model, *counts) for (t, model), counts in meters.items()]
    for name in BUILT_IN:
        for kind in (None, "query", "embedding", "storage"):
            for model in (None, "gpt-4o", "gpt-4o-mini"):
                charge = Charge(
                    id="c",
                    metric=name,
                    event_type=kind,
                    model=model,
                    charge_model="per_unit",
                    unit_price=Decimal(1),
                )
                narrowed = BUILT_IN[name].model_copy(
                    update={
                        "event_types": [kind] if kind else BUILT_IN[name].event_types,
                        "models": [model] if model else None,
                    }
                )
                assert of(narrowed) == quantity(charge, rated), (name, kind, model)


def test_a_metric_may_read_an_event_counter_and_filter_by_model(env):
    # Given queries of two models with tokens and a region property
    env.store.insert_events(
        [
            StoredEvent(
                "acme", "a", T0, "query", "gpt-4o", 1, 100, 10, 0, Decimal(0), "v1", T0, {"region": "eu"}
            ),
            StoredEvent(
                "acme",
                "b",
                T0 + timedelta(1),
                "query",
                "gpt-4o",
                1,
                300,
                30,
                0,
                Decimal(0),
                "v1",
                T0,
                {"region": "us"},
            ),
            StoredEvent(
                "acme",
                "c",
                T0 + timedelta(2),
                "query",
                "mini",
                1,
                900,
                90,
                0,
                Decimal(0),
                "v1",
                T0,
                {"region": "eu"},
            ),
        ]
    )
    # Then sums, max and latest of a counter honour the model and property filters
    eu = [{"property": "region", "in": ["eu"]}]
    assert value(env, metric(aggregation="sum", field="tokens")) == 1430
    assert value(env, metric(aggregation="sum", field="input_tokens", models=["gpt-4o"])) == 400
    assert value(env, metric(aggregation="sum", field="output_tokens", filters=eu)) == 100
    assert value(env, metric(aggregation="max", field="input_tokens", models=["gpt-4o"])) == 300
    assert value(env, metric(aggregation="latest", field="tokens")) == 990
    assert value(env, metric(aggregation="unique_count", field="queries")) == 1
    assert value(env, metric(aggregation="count", models=["nothing"])) == 0
