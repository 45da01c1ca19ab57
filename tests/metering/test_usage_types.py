"""Usage types the catalog declares: ingest accepts exactly the built-in and declared types (a 400
naming the event and the unknown type otherwise), prices a declared type at event time per unit of
a numeric property (optionally per property value), stores that cost with its price version, and
carries such events through the fallback queue unchanged. Built-in events cost and rate as before."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.catalog.metrics import MetricDefinition
from billing.catalog.plans import PlanCatalog
from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import Month
from billing.metering.events import UsageEvent, parse_body
from billing.metering.price_book import PriceBook
from billing.runtime import container
from billing_local.faults import OutageStore
from billing_local.runner import drain_queue
from tests.metering.conftest import make_tenant, usage

CONFIG = Path(__file__).resolve().parents[2] / "config"
V1 = "2025-01-01T00:00:00Z"
V2 = "2025-11-15T00:00:00Z"


def _catalog(**extra: Any) -> dict[str, Any]:
    document = yaml.safe_load((CONFIG / "plans.yaml").read_text())
    document["usage_types"] = [
        {"id": "gpu_job", "name": "GPU jobs", "unit": "job"},
        {"id": "image", "name": "Images"},
    ]
    document.update(extra)
    return document


def _price_book() -> dict[str, Any]:
    document = yaml.safe_load((CONFIG / "pricebook.yaml").read_text())
    first = document["versions"][0]
    first["usage_types"] = {
        "gpu_job": {"property": "gpu_seconds", "per_unit": "0.0004", "by": {"gpu": {"h100": "0.0009"}}}
    }
    second = {**first, "effective_from": V2, "id": "nov-gpu"}
    second["usage_types"] = {"gpu_job": {"property": "gpu_seconds", "per_unit": "0.0005"}}
    document["versions"].append(second)
    return document


def write_typed_config(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """A catalog declaring gpu_job and image, and a price book pricing gpu_job per GPU-second (H100s
    dearer) in one version and at one price from 15 November on, in force from now on."""
    (directory / "plans.yaml").write_text(yaml.safe_dump(_catalog()))
    (directory / "pricebook.yaml").write_text(yaml.safe_dump(_price_book()))
    monkeypatch.setenv("PLANS_PATH", str(directory / "plans.yaml"))
    monkeypatch.setenv("PRICEBOOK_PATH", str(directory / "pricebook.yaml"))
    container.reset()


@pytest.fixture
def typed(env, monkeypatch, tmp_path):
    """Given the catalog and price book of ``write_typed_config``."""
    write_typed_config(monkeypatch, tmp_path)
    return env


def gpu(event_id: str, ts: str = "2025-11-03T12:00:00Z", **properties: Any) -> dict[str, Any]:
    return {"event_id": event_id, "tenant_id": "acme-corp", "timestamp": ts, "type": "gpu_job",
            "properties": properties}  # fmt: skip


def body(*events: dict[str, Any]) -> str:
    """A request body with each Decimal written as its exact JSON number (never through a float)."""
    text = json.dumps({"events": list(events)}, default=lambda d: f"@@{d}@@")
    return re.sub(r'"@@([^@]*)@@"', r"\1", text)


def rows(env) -> list[tuple[Any, ...]]:
    return env.store.query(
        "SELECT event_id, type, model, queries, input_tokens, output_tokens, bytes, cost_usd, price_version "
        "FROM usage_events FINAL ORDER BY event_id"
    )


def test_declared_types_are_stored_with_their_exact_event_time_cost(typed, post):
    # Given a tenant
    make_tenant(plan="starter")
    # When GPU jobs (an H100, another GPU, no GPU named, a later price version) and an image are posted
    status, answer, _ = post(
        body(
            gpu("g-h100", gpu_seconds=Decimal("12.5"), gpu="h100"),
            gpu("g-a100", gpu_seconds=7, gpu="a100"),
            gpu("g-plain", gpu_seconds=Decimal("0.000000000000000001")),
            gpu("g-nov", ts="2025-11-20T00:00:00Z", gpu_seconds=1000, gpu="h100"),
            {**gpu("i-1", size="1024x1024"), "type": "image"},
        )
    )
    assert status == 202 and answer["accepted"] == 5
    # Then each cost is quantity x price x 1.25 (markup), rounded half up to nanodollars once,
    # with the version in force at the event's time; an unpriced type costs 0
    assert rows(typed) == [
        ("g-a100", "gpu_job", "", 0, 0, 0, 0, Decimal("0.0035"), V1),  # 7 x 0.0004 x 1.25
        ("g-h100", "gpu_job", "", 0, 0, 0, 0, Decimal("0.0140625"), V1),  # 12.5 x 0.0009 x 1.25
        ("g-nov", "gpu_job", "", 0, 0, 0, 0, Decimal("0.625"), "nov-gpu"),  # 1000 x 0.0005 x 1.25
        ("g-plain", "gpu_job", "", 0, 0, 0, 0, Decimal(0), V1),  # 5E-22: rounds to 0
        ("i-1", "image", "", 0, 0, 0, 0, Decimal(0), V1),
    ]
    # And the properties are stored as sent
    assert typed.store.query(
        "SELECT string_properties, number_properties FROM usage_events WHERE event_id = 'g-h100'"
    ) == [({"gpu": "h100"}, {"gpu_seconds": Decimal("12.5")})]
    # And a catalog metric on the declared type reads them: H100-seconds of November
    h100 = MetricDefinition.model_validate(
        {"id": "h100_seconds", "name": "H100 seconds", "unit": "s", "event_types": ["gpu_job"],
         "filters": [{"property": "gpu", "in": ["h100"]}], "aggregation": "sum", "property": "gpu_seconds"}
    )  # fmt: skip
    november = Month(2025, 11)
    assert ClickHouseMetrics(typed.store).value(h100, "acme-corp", november.start, november.end) == Decimal(
        "1012.5"
    )


def test_an_unknown_type_is_a_400_naming_the_event_and_the_known_types(typed, post):
    make_tenant(plan="starter")
    # When a batch holds a valid event, an undeclared type and an event with another bad field
    status, answer, _ = post(
        {
            "events": [
                usage("ok"),
                {**gpu("g-1", gpu_seconds=1), "type": "video"},
                usage("bad", timestamp="yesterday"),
            ]
        }
    )
    # Then the whole batch is refused, every problem listed, and nothing is stored
    assert status == 400
    assert answer["details"] == [
        {
            "index": 1,
            "field": "type",
            "reason": "unknown usage type 'video'; the catalog defines embedding, gpu_job, image, query, storage",
        },
        {"index": 2, "field": "timestamp", "reason": answer["details"][1]["reason"]},
    ]
    assert typed.store.query("SELECT count() FROM usage_events")[0][0] == 0


def test_a_priced_type_without_its_measure_is_a_400_naming_the_property(typed, post):
    make_tenant(plan="starter")
    # When GPU jobs lack gpu_seconds, send it as text, or send a negative number
    status, answer, _ = post(
        {
            "events": [
                usage("ok"),
                gpu("g-2", gpu="h100"),
                gpu("g-3", gpu_seconds="12"),
                gpu("g-4", gpu_seconds=-1),
            ]
        }
    )
    # Then the batch is refused, each event named with the property, and nothing is stored
    assert status == 400
    details = answer["details"]
    assert [(d["index"], d["field"]) for d in details] == [
        (1, "properties.gpu_seconds"),
        (2, "properties.gpu_seconds"),
        (3, "properties.gpu_seconds"),
    ]
    assert details[0]["reason"] == (
        "gpu_job events are priced per gpu_seconds (price book version 2025-01-01T00:00:00Z): "
        "it must be a number >= 0"
    )
    assert typed.store.query("SELECT count() FROM usage_events")[0][0] == 0


def test_without_a_declaration_only_the_built_in_types_are_known(env, post):
    # Given the shipped catalog (no usage types declared)
    make_tenant(plan="starter")
    status, answer, _ = post({"events": [gpu("g-1", gpu_seconds=1)]})
    assert status == 400
    assert answer["details"] == [
        {
            "index": 0,
            "field": "type",
            "reason": "unknown usage type 'gpu_job'; the catalog defines embedding, query, storage",
        }
    ]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"type": "GPU"}, "type"),
        ({"type": "gpu-job"}, "type"),
        ({"type": ""}, "type"),
        ({"type": 3}, "type"),
        ({"type": "g" * 65}, "type"),
        ({"model": "gpt-4o"}, "event"),
        ({"bytes": 10}, "event"),
        ({"input_tokens": 5, "model": "gpt-4o"}, "event"),
    ],
)
def test_a_bad_type_name_or_ai_fields_on_a_declared_type_are_a_400(typed, post, fields, field):
    make_tenant(plan="starter")
    status, answer, _ = post({"events": [{**gpu("g-1", gpu_seconds=1), **fields}]})
    assert status == 400
    assert [(d["index"], d["field"]) for d in answer["details"]] == [(0, field)]


def test_built_in_events_cost_exactly_as_before(typed, post):
    # Given the same built-in events posted under the shipped catalog and under one declaring types
    make_tenant(plan="starter")
    events = [
        usage("q", input_tokens=1234, output_tokens=567),
        {**usage("e", ts="2025-11-03T12:00:01Z", type="embedding", model="text-embedding-3-small")},
        {
            "event_id": "s",
            "tenant_id": "acme-corp",
            "timestamp": "2025-11-03T12:00:02Z",
            "type": "storage",
            "bytes": 123456789,
        },  # fmt: skip
    ]
    assert post({"events": events})[0] == 202
    shipped = PriceBook.load(CONFIG / "pricebook.yaml")
    priced = PriceBook.from_document(_price_book())
    # Then every built-in event costs what the shipped price book says, with the same version
    for event in events:
        parsed = UsageEvent.model_validate(event)
        assert priced.cost(parsed) == shipped.cost(parsed)
    stored = {r[0]: (r[7], r[8]) for r in rows(typed)}
    assert stored == {e["event_id"]: tuple(shipped.cost(UsageEvent.model_validate(e))) for e in events}


def test_declared_type_events_survive_the_fallback_queue(typed, post):
    # Given ClickHouse refuses inserts
    make_tenant(plan="starter")
    service = container.ingest_service()
    service.store = OutageStore(typed.store, lambda n: "fail")
    status, answer, _ = post(body(gpu("g-1", gpu_seconds=Decimal("2.5"), gpu="h100"), usage("q-1")))
    assert status == 202 and answer["queued"] is True
    # When the replay stores the queued block, Then the type, cost and version arrive unchanged
    assert drain_queue(typed.settings.fallback_queue_url, "fallback_replay") == (1, 0)
    assert [r[:2] + r[7:] for r in rows(typed)] == [
        ("g-1", "gpu_job", Decimal("0.0028125"), V1),
        ("q-1", "query", Decimal("0.00003375"), V1),
    ]


def test_declared_types_never_count_against_the_query_quota(typed, post):
    # Given a tenant with a quota of one query
    make_tenant(quota=1)
    # When many GPU jobs and then a query are posted, Then all are accepted
    status, answer, _ = post({"events": [gpu(f"g-{i}", gpu_seconds=1) for i in range(5)] + [usage("q")]})
    assert status == 202 and answer["accepted"] == 6 and answer.get("rejected_for_quota", []) == []


# -- the catalog and price book formats --------------------------------------------------------
@pytest.mark.parametrize(
    "usage_types, message",
    [
        ([{"id": "query"}], "usage type query: built in already"),
        ([{"id": "gpu_job"}, {"id": "gpu_job"}], "usage type gpu_job: declared twice"),
        ([{"id": "GPU"}], "usage_types.0.id"),
        ([{"id": "gpu_job", "price": "1"}], "usage_types.0.price"),
    ],
)
def test_bad_usage_type_declarations_are_refused_naming_the_entry(usage_types, message):
    with pytest.raises(ValidationError, match=message):
        PlanCatalog.model_validate(_catalog(usage_types=usage_types))


def test_metrics_and_charges_may_read_declared_types_only():
    document = _catalog(
        metrics=[
            {
                "id": "gpu_seconds",
                "name": "GPU seconds",
                "unit": "s",
                "event_types": ["gpu_jobs"],
                "aggregation": "sum",
                "property": "gpu_seconds",
            }
        ]  # fmt: skip
    )
    with pytest.raises(ValidationError, match="metric gpu_seconds: unknown usage type 'gpu_jobs'"):
        PlanCatalog.model_validate(document)
    document = _catalog()
    document["plans"][0]["charges"] = [
        {
            "id": "jobs",
            "metric": "events",
            "event_type": "gpujob",
            "charge_model": "per_unit",
            "unit_price": "1",
        }
    ]
    with pytest.raises(ValidationError, match="plan starter, charge jobs: unknown usage type 'gpujob'"):
        PlanCatalog.model_validate(document)
    document["plans"][0]["charges"][0]["event_type"] = "gpu_job"
    assert "gpu_job" in PlanCatalog.model_validate(document).event_types


@pytest.mark.parametrize(
    "price, message",
    [
        ({"property": "s", "per_unit": 0.1}, "quoted strings"),
        ({"property": "s", "per_unit": "-1"}, "per_unit"),
        ({"property": "S", "per_unit": "1"}, "property"),
        ({"property": "s", "per_unit": "1", "by": {"gpu": {"h100": "-1"}}}, "a price is at least 0"),
        ({"property": "s", "per_unit": "1", "by": {"gpu": {}}}, "give at least one value"),
        ({"property": "s", "per_unit": "1", "by": {"a": {"x": "1"}, "b": {"y": "1"}}}, "at most 1"),
    ],
)
def test_bad_usage_type_prices_are_refused_at_load(price, message):
    document = _price_book()
    document["versions"][0]["usage_types"] = {"gpu_job": price}
    with pytest.raises(ValidationError, match=message):
        PriceBook.from_document(document)
    document["versions"][0]["usage_types"] = {"storage": {"property": "s", "per_unit": "1"}}
    with pytest.raises(ValidationError, match="usage type storage"):
        PriceBook.from_document(document)


# -- fuzz: any JSON value as the type -----------------------------------------------------------
KNOWN = {"query", "embedding", "storage", "gpu_job", "image"}


@settings(deadline=None, max_examples=150)  # a shared machine: timings vary, the property does not
@given(
    st.one_of(
        st.text(max_size=70),
        st.from_regex(r"[a-z][a-z0-9_]{0,70}", fullmatch=True),
        st.sampled_from(sorted(KNOWN)),
        st.integers(),
        st.none(),
        st.lists(st.text(max_size=3), max_size=2),
    )
)
def test_any_type_is_stored_when_declared_else_a_400_naming_it(type_value):
    # Given the declared types, when an event with this type is parsed against the catalog's types
    catalog = PlanCatalog.model_validate(_catalog())
    event = {**gpu("g-1", gpu_seconds=1), "type": type_value}
    try:
        [parsed] = parse_body(
            json.dumps({"events": [event]}),
            "application/json",
            max_bytes=10**6,
            max_events=10,
            event_types=catalog.event_types,
        )
    except InvalidRequest as refused:
        # Then a refusal is of a type neither built in nor declared, naming event 0 and its type
        assert [(d["index"], d["field"]) for d in refused.details] == [(0, "type")]
        assert not (isinstance(type_value, str) and type_value in KNOWN)
    else:
        assert parsed.type == type_value and type_value in KNOWN


def test_a_declared_types_cost_is_exact_whatever_the_digits():
    # Given a price and a markup of many digits, and the largest exact property value
    document = _price_book()
    document["versions"][0]["markup"] = "0.3333333333333333333333333333333"
    document["versions"][0]["usage_types"] = {
        "gpu_job": {"property": "gpu_seconds", "per_unit": "0.000123456789012345678901234567890123"}
    }
    seconds = Decimal("12345678901234567890.123456789012345678")
    event = UsageEvent.model_validate({**gpu("g", gpu_seconds=seconds), "timestamp": "2025-11-03T12:00:00Z"})
    # When it is priced, Then the cost is the exact product rounded half up to nanodollars once
    exact = Context(prec=200).multiply(
        Context(prec=200).multiply(seconds, Decimal("0.000123456789012345678901234567890123")),
        Decimal("1.3333333333333333333333333333333"),
    )
    assert PriceBook.from_document(document).cost(event).cost_usd == exact.quantize(
        Decimal("1E-9"), rounding=ROUND_HALF_UP
    )
