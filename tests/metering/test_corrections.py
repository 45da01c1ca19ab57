"""Corrections: void or amend accepted usage at its original price, each correction applied once,
before the close (the statement sees the corrected usage) and after it (adjustment lines on the next
statement), inside graduated tiers, for maxima and unique counts, with the quota given back."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.adapters.clickhouse.metric_queries import ClickHouseMetrics
from billing.catalog.metrics import MetricDefinition
from billing.kernel.periods import Month
from billing.metering.price_book import PriceBook
from billing.runtime import container
from billing_local.runner import load_module
from tests.conftest import api_event
from tests.metering.conftest import make_tenant, usage
from tests.rating.helpers import make_tenant as billed_tenant
from tests.rating.helpers import queries

NOV, DEC = Month(2025, 11), Month(2025, 12)
IN_NOVEMBER = datetime(2025, 11, 20, tzinfo=UTC)
IN_DECEMBER = datetime(2025, 12, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def corrections_app() -> Any:
    return load_module("corrections")


@pytest.fixture
def correct(corrections_app, lambda_context):
    """POST corrections through the real handler; returns (status, body)."""

    def _post(*items: dict[str, Any], **kw: Any) -> tuple[int, dict]:
        event = api_event({"corrections": list(items)}, path="/v1/corrections", **kw)
        response = corrections_app.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return _post


@pytest.fixture
def trail(corrections_app, lambda_context):
    def _get(event_id: str, tenant_id: str = "acme-corp", **kw: Any) -> tuple[int, dict]:
        event = api_event(
            "",
            path="/v1/corrections",
            method="GET",
            query={"tenant_id": tenant_id, "event_id": event_id},
            **kw,
        )
        response = corrections_app.handler(event, lambda_context)
        return response["statusCode"], json.loads(response["body"])

    return _get


def at(instant: datetime) -> None:
    container.override(clock=lambda: instant)


def void(correction_id: str, event_id: str, tenant_id: str = "acme-corp", reason: str = "sent twice") -> dict:
    return {
        "correction_id": correction_id,
        "tenant_id": tenant_id,
        "event_id": event_id,
        "action": "void",
        "reason": reason,
    }


def amend(correction_id: str, event_id: str, values: dict, tenant_id: str = "acme-corp") -> dict:
    return {
        "correction_id": correction_id,
        "tenant_id": tenant_id,
        "event_id": event_id,
        "action": "amend",
        "reason": "wrong token count",
        "values": values,
    }


def quota_used(tenant_id: str = "acme-corp", month: Month = NOV) -> int:
    return container.ledger().quota_used(tenant_id, str(month))[0]


# ----------------------------------------------------------------------------------- before the close
def test_a_void_before_the_close_takes_the_event_off_the_statement_and_gives_its_quota_back(
    env, post, correct
):
    # Given a starter tenant with three November queries accepted by ingest (the counter says 3)
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    assert post({"events": [usage(f"e{i}") for i in range(3)]})[0] == 202
    before = env.store.month_usage("acme-corp", NOV)
    # When e1 is voided before November closes
    status, body = correct(void("c-1", "e1"))
    # Then it is applied, and the stored month no longer holds it: one query and its exact cost fewer
    assert status == 200 and body["results"][0]["status"] == "applied"
    after = env.store.month_usage("acme-corp", NOV)
    assert (after["events"], after["queries"]) == (2, 2)
    assert after["cost_usd"] == before["cost_usd"] * 2 / 3
    assert after["input_tokens"] == 200 and after["output_tokens"] == 40
    # And the quota counter gave the query back: it still equals the stored queries
    assert quota_used() == env.store.stored_queries(NOV)["acme-corp"] == 2
    # And November's statement bills two queries
    at(datetime(2025, 12, 1, 1, tzinfo=UTC))
    statement = container.billing_cycle().close(NOV).statements[0]
    lines = {line.line_id: line.quantity for line in statement.lines}
    assert lines["queries:starter:t1"] == Decimal(2)
    assert statement.total_queries == 2


def test_a_correction_sent_twice_is_applied_once(env, post, correct, trail):
    # Given an accepted query
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1"), usage("e2")]})
    # When the same void is sent twice (a retry after a lost answer)
    first = correct(void("c-1", "e1"))
    second = correct(void("c-1", "e1"))
    # Then the second says it was applied already, and everything moved once
    assert first[1]["results"][0]["status"] == "applied"
    assert second[0] == 200 and second[1]["results"][0]["status"] == "already_applied"
    assert second[1]["results"][0]["correction"] == first[1]["results"][0]["correction"]
    assert env.store.month_usage("acme-corp", NOV)["queries"] == 1 == quota_used()
    assert len(trail("e1")[1]["corrections"]) == 1
    # And the same id reused for another correction is a 409 naming it
    status, body = correct(void("c-1", "e2"))
    assert status == 409 and "already used for another correction" in body["results"][0]["error"]["message"]


def test_a_void_of_a_voided_event_and_a_correction_of_an_unknown_event_are_refused_per_item(
    env, post, correct
):
    # Given a voided query and a live one
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1"), usage("e2")]})
    correct(void("c-1", "e1"))
    # When one request voids e1 again, an id never stored, and e2
    status, body = correct(void("c-2", "e1"), void("c-3", "nope"), void("c-4", "e2"))
    # Then each item says what became of it: 409, 404, applied (the request is a 207)
    results = body["results"]
    assert status == 207
    assert [r["status"] for r in results] == ["refused", "refused", "applied"]
    assert results[0]["error"]["status"] == 409 and "already voided" in results[0]["error"]["message"]
    assert results[1]["error"]["status"] == 404 and "no stored event 'nope'" in results[1]["error"]["message"]
    # And only e2's void moved anything
    assert env.store.month_usage("acme-corp", NOV)["queries"] == 0 == quota_used()


def test_a_correction_outside_the_window_and_a_malformed_request_are_4xx(env, post, correct):
    # Given a query of November 3
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1")]})
    # When it is voided 61 days later (the window is 60 days)
    at(datetime(2026, 1, 3, 12, 1, tzinfo=UTC))
    status, body = correct(void("c-1", "e1"))
    # Then it is a 422 naming the window, and nothing moved
    assert status == 422 and "correction window of 60 days" in body["results"][0]["error"]["message"]
    assert env.store.month_usage("acme-corp", NOV)["queries"] == 1
    # And a malformed item refuses the whole request, naming the item and field
    status, body = correct({**void("c-2", "e1"), "action": "delete"}, amend("c-3", "e1", {"type": "storage"}))
    assert status == 400
    assert {(d["index"], d["field"]) for d in body["details"]} == {(0, "action"), (1, "correction")}


def test_an_amend_is_priced_at_the_price_version_of_the_event_time(env, post, correct, trail, tmp_path: Path):
    # Given prices that doubled on December 1, and a November query of 100 + 20 gpt-4o-mini tokens
    book = tmp_path / "pricebook.yaml"
    book.write_text(
        """versions:
  - effective_from: "2025-01-01T00:00:00Z"
    markup: "0"
    storage_per_gb: "0.10"
    models: {gpt-4o-mini: {input_per_1m: "1", output_per_1m: "2"}}
  - effective_from: "2025-12-01T00:00:00Z"
    markup: "0"
    storage_per_gb: "0.10"
    models: {gpt-4o-mini: {input_per_1m: "2", output_per_1m: "4"}}
"""
    )
    container.override(price_book=PriceBook.load(book))
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1")]})
    # When it is amended in December to 1,000,000 input tokens and 0 output tokens
    at(IN_DECEMBER)
    status, body = correct(amend("c-1", "e1", {"input_tokens": 1_000_000, "output_tokens": 0}))
    # Then the new version costs November's price (1 USD), not December's (2 USD)
    assert status == 200
    entry = body["results"][0]["correction"]
    assert entry["before"]["cost_usd"] == "0.000140000"
    assert Decimal(entry["after"]["cost_usd"]) == Decimal(1)
    assert entry["after"]["price_version"] == "2025-01-01T00:00:00Z"
    # And the month is the amended event, once: one event, one query, the new tokens and cost
    month = env.store.month_usage("acme-corp", NOV)
    assert (month["events"], month["queries"], month["input_tokens"], month["output_tokens"]) == (
        1,
        1,
        1_000_000,
        0,
    )
    assert month["cost_usd"] == Decimal(1)
    # And the quota counter did not move (an amend keeps the query)
    assert quota_used() == 1
    # And the audit trail says who, when, why, before and after
    status, shown = trail("e1")
    assert status == 200 and shown["status"] == "amended"
    [line] = shown["corrections"]
    assert line["requested_by"] == "platform-key" and line["reason"] == "wrong token count"
    assert line["at"] == "2025-12-05T00:00:00Z" and line["after"]["input_tokens"] == 1_000_000
    assert shown["current"]["input_tokens"] == 1_000_000 and shown["original"]["input_tokens"] == 100


def test_an_event_state_stored_in_the_earlier_row_format_is_still_corrected(env, post, correct, trail):
    import boto3

    # Given an amended query whose current version DynamoDB holds in the format corrections wrote
    # before their rows shared the fallback queue's (no tenant nor acceptance time, numbers as
    # {"number": text})
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1"), usage("e2")]})
    assert correct(amend("c-1", "e1", {"input_tokens": 500}))[0] == 200
    table = boto3.client("dynamodb", region_name="us-east-1")
    key = {"pk": {"S": "EVTCORR#acme-corp#e1"}}
    ledger = container.settings().ledger_table
    current = json.loads(table.get_item(TableName=ledger, Key=key)["Item"]["current"]["S"])
    text, numbers = current.pop("string_properties", {}), current.pop("number_properties", {})
    old = {k: v for k, v in current.items() if k not in ("tenant_id", "accepted_at")}
    old["properties"] = {**text, **{k: {"number": v} for k, v in numbers.items()}}
    table.update_item(
        TableName=ledger,
        Key=key,
        UpdateExpression="SET #c = :c",
        ExpressionAttributeNames={"#c": "current"},
        ExpressionAttributeValues={":c": {"S": json.dumps(old)}},
    )
    shown_before = trail("e1")[1]["current"]
    # When it is voided
    status, body = correct(void("c-2", "e1"))
    # Then the void negates that version: the month keeps e2 alone, and the trail showed it alike
    assert status == 200 and body["results"][0]["status"] == "applied"
    assert body["results"][0]["correction"]["before"] == shown_before
    assert shown_before["input_tokens"] == 500
    month = env.store.month_usage("acme-corp", NOV)
    assert (month["events"], month["queries"], month["input_tokens"]) == (1, 1, 100)


# ------------------------------------------------------------------------------------ after the close
def test_a_void_after_the_close_takes_units_off_the_end_of_the_tier_walk(env, correct):
    # Given a starter tenant billed 1,002 November queries: 1,000 at 0.01 (tier 1), 2 at 0.008 (tier 2)
    billed_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 1002, "2025-11-02T00:00:00Z", prefix="n"))
    at(datetime(2025, 12, 1, 1, tzinfo=UTC))
    cycle = container.billing_cycle()
    november = cycle.close(NOV).statements[0]
    time.sleep(0.01)
    # When three of its first queries are voided in December, after the close
    at(IN_DECEMBER)
    status, _ = correct(*(void(f"c-{i}", f"n{i:07d}", tenant_id="acme") for i in range(3)))
    assert status == 200
    # Then November's statement is unchanged (reproducible), and December's carries the difference:
    # the units come off the end of the walk, positions 1,002 down to 1,000: 2 at 0.008 and 1 at 0.01,
    # and the voided events' exact stored cost (0) comes off the usage
    at(datetime(2026, 1, 1, 1, tzinfo=UTC))
    december = cycle.close(DEC).statements[0]
    assert container.statements().get("acme", NOV) == november
    adjustments = {
        line.line_id: (line.quantity, line.amount) for line in december.lines if line.kind == "adjustment"
    }
    assert adjustments["adj:2025-11:queries:starter:t2"] == (Decimal(-2), Decimal("-0.02"))
    assert adjustments["adj:2025-11:queries:starter:t1"] == (Decimal(-1), Decimal("-0.01"))
    # And November re-rated from scratch with 999 queries is what was billed plus these adjustments
    assert november.total + Decimal("-0.03") == Decimal("29.00") + Decimal("9.99")


def test_a_correction_of_a_late_event_is_billed_like_late_data(env, correct):
    # Given November closed, then a late November query stored (billed as an adjustment in December)
    billed_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 10, "2025-11-02T00:00:00Z", prefix="n", cost="0.5"))
    at(datetime(2025, 12, 1, 1, tzinfo=UTC))
    cycle = container.billing_cycle()
    cycle.close(NOV)
    time.sleep(0.01)
    env.store.insert_events(queries("acme", 2, "2025-11-29T00:00:00Z", prefix="late", cost="0.5"))
    # When one late query is voided before December closes
    at(IN_DECEMBER)
    assert correct(void("c-1", "late0000000", tenant_id="acme"))[0] == 200
    at(datetime(2026, 1, 1, 1, tzinfo=UTC))
    december = cycle.close(DEC).statements[0]
    # Then December's adjustment bills the one late query left, and its cost, once
    adjustments = {
        line.line_id: (line.quantity, line.amount) for line in december.lines if line.kind == "adjustment"
    }
    assert adjustments == {
        "adj:2025-11:queries:starter:t1": (Decimal(1), Decimal("0.01")),
        "adj:2025-11:usage": (Decimal(1), Decimal("0.50")),
    }


# --------------------------------------------------------------------------- maxima and unique counts
def _metric(aggregation: str) -> MetricDefinition:
    return MetricDefinition.model_validate(
        {
            "id": "m",
            "name": "M",
            "unit": "units",
            "event_types": ["query"],
            "aggregation": aggregation,
            **({} if aggregation == "count" else {"property": "size"}),
        }
    )


def test_maxima_and_unique_counts_see_the_corrected_events(env, post, correct):
    # Given three queries with sizes 5, 9 and 9 (max 9, two unique sizes)
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    sizes = {"e1": 5, "e2": 9, "e3": 9}
    post({"events": [usage(e, properties={"size": s}) for e, s in sizes.items()]})
    metrics = ClickHouseMetrics(env.store)

    def value(aggregation: str) -> Decimal | None:
        return metrics.value(_metric(aggregation), "acme-corp", NOV.start, NOV.end)

    assert (value("max"), value("unique_count"), value("sum"), value("count")) == (9, 2, 23, 3)
    # When e2 is voided and e3 amended to size 7
    correct(void("c-1", "e2"), amend("c-2", "e3", {"properties": {"size": 7}}))
    # Then the maximum is the amended 7, the unique sizes are 5 and 7, the sum and count follow
    assert (value("max"), value("unique_count"), value("sum"), value("count")) == (7, 2, 12, 2)
    # And when e3 is voided too, the maximum is 5 and the latest is e1's
    correct(void("c-3", "e3"))
    assert (value("max"), value("latest"), value("unique_count"), value("count")) == (5, 5, 1, 1)


# ------------------------------------------------------------------------- the tier rule, as a rule
def test_a_negative_walk_takes_units_off_the_end_and_gives_an_emptied_tiers_flat_fee_back():
    from billing.catalog.plans import Charge, ChargeTier, Plan
    from billing.rating.graduated import graduated
    from billing.rating.pricing_types import Use
    from billing.rating.tiers import walk_tiers

    tiers = [
        ChargeTier(up_to=10, unit_price=Decimal("1")),
        ChargeTier(up_to=None, unit_price=Decimal("0.5"), flat_amount=Decimal("3")),
    ]
    # Given 12 units billed (10 at 1, 2 at 0.5 plus tier 2's flat 3), When 4 are taken off
    walk = walk_tiers(tiers, 12, -4)
    # Then positions 12 down to 9 come off: 2 at 0.5 and 2 at 1
    assert [(s.tier_index, s.quantity, s.unit_price) for s in walk] == [
        (0, -2, Decimal("1")),
        (1, -2, Decimal("0.5")),
    ]
    # And priced as a graduated charge, the billed amount plus the taken-off amount is what 8 units
    # cost from scratch: tier 2 emptied gives its flat fee back
    charge = Charge(id="gpu", metric="events", charge_model="graduated", tiers=tiers)
    plan = Plan(id="p", name="P", charges=[charge])
    use = Use(plan, charge, -4, IN_NOVEMBER, IN_DECEMBER)
    taken = sum((p.exact for p in graduated([use], position=12)), Decimal(0))
    billed = sum((p.exact for p in graduated([Use(plan, charge, 12, IN_NOVEMBER, IN_DECEMBER)])), Decimal(0))
    fresh = sum((p.exact for p in graduated([Use(plan, charge, 8, IN_NOVEMBER, IN_DECEMBER)])), Decimal(0))
    assert billed == Decimal(14) and billed + taken == fresh == Decimal(8)


# ------------------------------------------------------------------------------- failures part-way
def test_a_correction_cut_off_by_a_clickhouse_outage_is_finished_once_by_the_retry(
    env, post, correct, monkeypatch
):
    from billing.adapters.clickhouse.corrections import ClickHouseCorrectionRows
    from billing.kernel.errors import StoreUnavailable

    # Given an accepted query, and ClickHouse refusing the next insert
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1"), usage("e2")]})
    insert = ClickHouseCorrectionRows.insert
    failures = iter([StoreUnavailable("connection refused")])

    def failing_once(self, rows, token):
        error = next(failures, None)
        if error is not None:
            raise error
        return insert(self, rows, token)

    monkeypatch.setattr(ClickHouseCorrectionRows, "insert", failing_once)
    # When a void is sent, it is a 503 and nothing is stored or given back yet
    status, body = correct(void("c-1", "e1"))
    assert status == 503 and "applied once by a retry" in body["message"]
    assert env.store.month_usage("acme-corp", NOV)["queries"] == 2 == quota_used()
    # And another correction of the same event cannot overtake it: it finishes the first, then is refused
    status, body = correct(void("c-2", "e1"))
    assert status == 409 and "already voided (correction 'c-1')" in body["results"][0]["error"]["message"]
    # Then the retry of the first answers it was applied, and everything moved exactly once
    status, body = correct(void("c-1", "e1"))
    assert status == 200 and body["results"][0]["status"] == "already_applied"
    assert env.store.month_usage("acme-corp", NOV)["queries"] == 1 == quota_used()


def test_an_amend_after_the_close_adjusts_the_usage_cost_on_the_next_statement(env, post, correct):
    # Given a November query of 100 + 20 gpt-4o-mini tokens, billed by November's close
    make_tenant(plan="starter", plan_from="2025-10-01T00:00:00Z")
    at(IN_NOVEMBER)
    post({"events": [usage("e1")]})
    at(datetime(2025, 12, 1, 1, tzinfo=UTC))
    cycle = container.billing_cycle()
    november = cycle.close(NOV).statements[0]
    time.sleep(0.01)
    before = env.store.month_usage("acme-corp", NOV)["cost_usd"]
    # When it is amended in December to 1,000,000 input tokens
    at(IN_DECEMBER)
    assert correct(amend("c-1", "e1", {"input_tokens": 1_000_000}))[0] == 200
    after = env.store.month_usage("acme-corp", NOV)["cost_usd"]
    at(datetime(2026, 1, 1, 1, tzinfo=UTC))
    december = cycle.close(DEC).statements[0]
    # Then November is unchanged and December carries the cost difference as a November adjustment;
    # the query count did not change, so no query tier moves
    assert container.statements().get("acme-corp", NOV) == november
    adjustments = {line.line_id: line for line in december.lines if line.kind == "adjustment"}
    assert set(adjustments) == {"adj:2025-11:usage"}
    assert adjustments["adj:2025-11:usage"].amount_exact == after - before > 0


def test_adjustment_lines_of_voids_say_the_usage_was_corrected(env, correct):
    # Given 1,002 November queries billed, then three voided after the close
    billed_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 1002, "2025-11-02T00:00:00Z", prefix="n", cost="0.5"))
    at(datetime(2025, 12, 1, 1, tzinfo=UTC))
    cycle = container.billing_cycle()
    cycle.close(NOV)
    time.sleep(0.01)
    at(IN_DECEMBER)
    correct(*(void(f"c-{i}", f"n{i:07d}", tenant_id="acme") for i in range(3)))
    at(datetime(2026, 1, 1, 1, tzinfo=UTC))
    # When December is closed, Then its adjustment lines read as corrections, not as late usage
    december = cycle.close(DEC).statements[0]
    words = {line.line_id: line.description for line in december.lines if line.kind == "adjustment"}
    assert words == {
        "adj:2025-11:queries:starter:t1": "Usage from November 2025 corrected after its statement: "
        "Queries 1-1,000 at $0.01 (-1 query)",
        "adj:2025-11:queries:starter:t2": "Usage from November 2025 corrected after its statement: "
        "Queries 1,001-6,000 at $0.008 (-2 queries)",
        "adj:2025-11:usage": "Usage from November 2025 corrected after its statement: "
        "3 requests taken off at list prices",
    }
