"""Event properties: named text values and exact numbers, validated with the batch (a 400 naming the
event's index and the property, nothing written), stored digit for digit in ClickHouse and carried
unchanged through the fallback queue; events without properties are stored exactly as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore, _statements, migrations
from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import Month
from billing.metering.events import MAX_PROPERTIES, StoredEvent, parse_body
from billing.runtime import container
from billing_local.faults import OutageStore
from billing_local.runner import drain_queue
from tests.metering.conftest import make_tenant, stored, usage

NOV = Month(2025, 11)
EXACT = "12345678901234567890.123456789012345678"  # 38 digits: the most Decimal(38, 18) holds


def batch(*events: tuple[dict[str, Any], str | None]) -> str:
    """A request body whose events carry ``properties`` written as the given JSON text (so numbers
    reach the server spelled exactly as a client wrote them)."""
    texts = []
    for event, properties in events:
        text = json.dumps(event)
        texts.append(text if properties is None else f'{text[:-1]}, "properties": {properties}}}')
    return '{"events": [' + ", ".join(texts) + "]}"


def properties_of(env, event_id: str) -> tuple[dict[str, str], dict[str, Decimal]]:
    rows = env.store.query(
        "SELECT string_properties, number_properties FROM usage_events FINAL WHERE event_id = {e:String}",
        {"e": event_id},
    )
    assert len(rows) == 1
    return rows[0][0], rows[0][1]


def nothing_stored(env) -> bool:
    return env.store.query("SELECT count() FROM usage_events")[0][0] == 0


# -- validation ---------------------------------------------------------------------------------
def parse(properties: str) -> dict[str, Any]:
    event = {"event_id": "e", "tenant_id": "t", "timestamp": "2025-11-03T12:00:00Z", "type": "query"}
    return parse_body(batch((event, properties)), "application/json", max_bytes=10**6, max_events=10)[
        0
    ].properties


@pytest.mark.parametrize(
    "text, value",
    [
        ("0.1", Decimal("0.1")),
        (EXACT, Decimal(EXACT)),
        ("-" + EXACT, Decimal("-" + EXACT)),
        ("99999999999999999999", Decimal("99999999999999999999")),  # 20 integer digits
        ("0.000000000000000001", Decimal("1E-18")),  # 18 fractional digits
        ("1e3", Decimal(1000)),
        ("1E+19", Decimal(10) ** 19),
        ("15E-1", Decimal("1.5")),
        ("1.500000000000000000000000", Decimal("1.5")),  # zeros past the 18th place change nothing
        ("-0", Decimal(0)),
        ("0.0", Decimal(0)),
        ("42", Decimal(42)),
        ("1E-18", Decimal("1E-18")),
    ],
)
def test_numbers_are_read_exactly_in_any_json_spelling(text, value):
    # Given a number property spelled as a client may write it
    # When the body is parsed, Then the value is the exact decimal the text spells, never a float's
    parsed = parse('{"n": ' + text + "}")["n"]
    assert type(parsed) is Decimal and parsed == value


def test_text_and_names_at_their_bounds_are_accepted():
    # Given 32 properties, a 64-character name, a 256-character value and an empty one
    properties = {f"p{i}": i for i in range(MAX_PROPERTIES - 3)}
    properties |= {"a" + "b" * 63: "x" * 256, "empty": "", "unicode": "é€😀"}
    # When parsed, Then every one is kept, text as text and numbers as exact decimals
    parsed = parse(json.dumps(properties))
    assert len(parsed) == MAX_PROPERTIES
    assert parsed["a" + "b" * 63] == "x" * 256 and parsed["empty"] == "" and parsed["unicode"] == "é€😀"
    assert parsed["p7"] == Decimal(7) and type(parsed["p7"]) is Decimal


@pytest.mark.parametrize(
    "properties, field, reason",
    [
        ('{"Region": "eu"}', "properties.Region", "a-z, 0-9 and _"),
        ('{"1st": "eu"}', "properties.1st", "starting with a letter"),
        ('{"gpu-type": "h100"}', "properties.gpu-type", "a-z, 0-9 and _"),
        ('{"": "x"}', "properties.", "1-64 characters"),
        ('{"a' + "b" * 64 + '": 1}', "properties.a" + "b" * 64, "1-64 characters"),
        ('{"s": "' + "x" * 257 + '"}', "properties.s", "at most 256 characters, got 257"),
        ('{"s": "\\ud800"}', "properties.s", "lone surrogate"),
        ('{"b": true}', "properties.b", "a string or a number"),
        ('{"b": null}', "properties.b", "a string or a number"),
        ('{"b": [1, 2]}', "properties.b", "a string or a number"),
        ('{"b": {"deep": {"er": 1}}}', "properties.b", "a string or a number"),
        ('{"n": 100000000000000000000}', "properties.n", "below 10^20"),
        ('{"n": -1e20}', "properties.n", "below 10^20"),
        ('{"n": 0.0000000000000000001}', "properties.n", "at most 18 digits"),
        ('{"n": 1.0000000000000000001}', "properties.n", "at most 18 digits"),
        ('{"n": 1e-999999}', "properties.n", "at most 18 digits"),
        ('{"n": 1e99999999999999999999}', "properties.n", "exponent is out of range"),
        ('{"n": NaN}', "properties.n", "finite"),
        ('{"n": Infinity}', "properties.n", "finite"),
        ('{"n": -Infinity}', "properties.n", "finite"),
        ("[1]", "properties", "dictionary"),
        ('"region=eu"', "properties", "dictionary"),
        ("null", "properties", "dictionary"),
        (
            json.dumps({f"p{i}": i for i in range(MAX_PROPERTIES + 1)}),
            "properties",
            "at most 32 properties, got 33",
        ),
    ],
)
def test_each_bad_property_is_a_400_naming_the_event_and_the_property(env, post, properties, field, reason):
    # Given a tenant and a batch whose second event has a bad property
    make_tenant(plan="starter")
    body = batch((usage("ok"), '{"region": "eu"}'), (usage("bad", ts="2025-11-03T12:00:01Z"), properties))
    # When it is posted
    status, answer, _ = post(body)
    # Then the whole batch is a 400 naming index 1 and the property, and nothing is written
    assert status == 400, answer
    assert [(p["index"], p["field"]) for p in answer["details"]] == [(1, field)], answer
    assert reason in answer["details"][0]["reason"], answer
    assert nothing_stored(env)


def test_every_bad_property_of_every_event_is_listed(env, post):
    # Given a batch with several bad properties in two events, and a bad token count
    make_tenant(plan="starter")
    body = batch(
        (usage("a", input_tokens=-1), '{"Bad": 1, "ok": 2, "long": "' + "x" * 300 + '"}'),
        (usage("b", ts="2025-11-03T12:00:01Z"), '{"n": 1e25, "m": false}'),
    )
    # When it is posted, Then every problem is listed with its event's index, and nothing is written
    status, answer, _ = post(body)
    assert status == 400
    assert sorted((p["index"], p["field"]) for p in answer["details"]) == [
        (0, "input_tokens"),
        (0, "properties.Bad"),
        (0, "properties.long"),
        (1, "properties.m"),
        (1, "properties.n"),
    ]
    assert nothing_stored(env)


# -- ClickHouse ---------------------------------------------------------------------------------
def test_properties_are_stored_in_clickhouse_digit_for_digit(env, post):
    # Given a tenant
    make_tenant(plan="starter")
    # When an event with text and number properties and one without any are posted
    body = batch(
        (
            usage("with"),
            '{"region": "eu-west", "gpu": "h100", "seconds": 0.1, "big": '
            + EXACT
            + ', "neg": -'
            + EXACT
            + ', "count": 7, "kilo": 1e3, "unicode": "é€😀", "empty": ""}',
        ),
        (usage("without", ts="2025-11-03T12:00:01Z"), None),
    )
    status, answer, _ = post(body)
    assert status == 202 and answer["accepted"] == 2
    # Then ClickHouse holds the text as text and each number exactly
    text, numbers = properties_of(env, "with")
    assert text == {"region": "eu-west", "gpu": "h100", "unicode": "é€😀", "empty": ""}
    assert numbers == {
        "seconds": Decimal("0.1"),
        "big": Decimal(EXACT),
        "neg": Decimal("-" + EXACT),
        "count": Decimal(7),
        "kilo": Decimal(1000),
    }
    assert env.store.query(
        "SELECT toString(number_properties['big']), sum(number_properties['seconds']) FROM usage_events "
        "WHERE event_id = 'with' GROUP BY 1"
    ) == [(EXACT, Decimal("0.1"))]
    # And the event without properties has empty maps
    assert properties_of(env, "without") == ({}, {})


def test_properties_change_neither_cost_nor_totals(env, post):
    # Given two tenants sending the same usage, one with properties and one without
    make_tenant("plain", plan="starter")
    make_tenant("tagged", plan="starter")
    events = [usage(f"e-{i}", ts=f"2025-11-03T12:00:0{i}Z", input_tokens=100 * (i + 1)) for i in range(3)]
    assert post(batch(*[({**e, "tenant_id": "plain"}, None) for e in events]))[0] == 202
    assert (
        post(batch(*[({**e, "tenant_id": "tagged"}, '{"region": "eu", "n": 1.5}') for e in events]))[0] == 202
    )

    # Then each event costs the same, and the month's totals are equal
    def costs(tenant: str) -> list[tuple[str, Decimal]]:
        return env.store.query(
            "SELECT event_id, cost_usd FROM usage_events WHERE tenant_id = {t:String} ORDER BY event_id",
            {"t": tenant},
        )

    assert costs("plain") == costs("tagged") and len(costs("plain")) == 3
    plain, tagged = stored(env, "plain"), stored(env, "tagged")
    assert {k: v for k, v in plain.items() if k != "tenant_id"} == {
        k: v for k, v in tagged.items() if k != "tenant_id"
    }


def test_rows_stored_before_the_migration_read_as_without_properties(env, clickhouse_database):
    # Given a database migrated but for the properties, holding an event
    store = ClickHouseUsageStore.from_url(container.settings().clickhouse_url, clickhouse_database + "_old")
    store.client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version"
    )
    for version, name, sql in migrations():
        if version not in (5, 6, 8, 9, 11):  # all but the properties and what reads them
            for statement in _statements(sql):
                store.client.command(statement)
            store.client.insert("schema_migrations", [[version, name]], column_names=["version", "name"])
    columns = ["tenant_id", "event_id", "timestamp", "type", "model", "queries", "input_tokens",
               "output_tokens", "bytes", "cost_usd", "price_version", "accepted_at"]  # fmt: skip
    instant = datetime(2025, 11, 3, 12, tzinfo=UTC)
    row = ["acme", "old-1", instant, "query", "gpt-4o", 1, 10, 2, 0, Decimal("0.5"), "v1", instant]
    store.client.insert("usage_events", [row], column_names=columns)
    before = store.month_usage("acme", NOV)
    # When the properties migration is applied (and applying again does nothing)
    assert store.migrate() == [
        "0005_event_properties",
        "0006_metric_rollups",
        "0008_signed_metric_rollups",
        "0009_quarter_hour_rollups",
        "0011_metric_points",
    ]
    assert store.migrate() == []
    # Then the old row has empty maps, its totals and rollups are unchanged, and new rows carry some
    assert store.query("SELECT string_properties, number_properties FROM usage_events") == [({}, {})]
    assert store.month_usage("acme", NOV) == before
    store.insert_events(
        [
            StoredEvent(
                "acme",
                "new-1",
                instant,
                "query",
                "gpt-4o",
                1,
                10,
                2,
                0,
                Decimal("0.5"),
                "v1",
                instant,
                {"region": "eu", "n": Decimal("0.1")},
            )
        ]  # fmt: skip
    )
    assert store.query("SELECT sum(events), sum(cost_usd) FROM usage_daily") == [(2, Decimal(1))]
    assert store.query(
        "SELECT string_properties, number_properties FROM usage_events WHERE event_id = 'new-1'"
    ) == [({"region": "eu"}, {"n": Decimal("0.1")})]
    store.client.command(f"DROP DATABASE IF EXISTS {clickhouse_database}_old")


# -- the fallback queue -------------------------------------------------------------------------
def test_properties_survive_the_fallback_queue_and_its_replay(env, post):
    # Given ClickHouse refuses inserts
    make_tenant(plan="starter")
    service = container.ingest_service()
    service.store = OutageStore(env.store, lambda n: "fail")
    # When events with properties (and one without) are posted, Then they are queued
    body = batch(
        (usage("q-1"), '{"region": "eu", "seconds": ' + EXACT + ', "tiny": 0.000000000000000001}'),
        (usage("q-2", ts="2025-11-03T12:00:01Z"), '{"note": "line\\nbreak \\"quoted\\" é"}'),
        (usage("q-3", ts="2025-11-03T12:00:02Z"), None),
    )
    status, answer, _ = post(body)
    assert status == 202 and answer["queued"] is True and nothing_stored(env)
    # When the replay Lambda stores the queued block
    processed, failed = drain_queue(env.settings.fallback_queue_url, "fallback_replay")
    assert (processed, failed) == (1, 0)
    # Then every property arrives unchanged
    assert properties_of(env, "q-1") == (
        {"region": "eu"},
        {"seconds": Decimal(EXACT), "tiny": Decimal("1E-18")},
    )
    assert properties_of(env, "q-2") == ({"note": 'line\nbreak "quoted" é'}, {})
    assert properties_of(env, "q-3") == ({}, {})


# -- fuzz: numbers in every JSON spelling -------------------------------------------------------
@settings(deadline=None, max_examples=300)  # a shared machine: timings vary, the property does not
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,45})(\.[0-9]{1,45})?([eE][+-]?[0-9]{1,25})?", fullmatch=True))
def test_any_json_number_is_read_exactly_or_refused_by_name(text):
    # Given a number property spelled in any JSON way (long digits, exponents far out)
    event = {"event_id": "e", "tenant_id": "t", "timestamp": "2025-11-03T12:00:00Z", "type": "query"}
    body = batch((event, '{"n": ' + text + "}"))
    # When the body is parsed
    try:
        [parsed] = parse_body(body, "application/json", max_bytes=10**6, max_events=10)
    except InvalidRequest as refused:
        # Then a refusal names the event and the property (never anything but a 400)
        assert [(p["index"], p["field"]) for p in refused.details] == [(0, "properties.n")]
        return
    # Or the value is exactly the one spelled, within Decimal(38, 18)
    value = parsed.properties["n"]
    assert type(value) is Decimal and value == Decimal(text)
    assert value.copy_abs() < Decimal(10) ** 20
    assert value == value.quantize(Decimal("1E-18"), context=Context(prec=80))
