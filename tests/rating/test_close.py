"""The monthly close: idempotence, fallback-queue guard, late data, price-book changes, previews."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import boto3
import pytest

from billing.kernel.errors import InvalidRequest
from billing.kernel.periods import Month
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing.statements.close import FallbackNotDrained
from billing.tenants.service import CancelRequest
from tests.rating.helpers import make_tenant, queries

NOV, DEC = Month(2025, 11), Month(2025, 12)


def _messages(url: str) -> list[dict]:
    sqs = boto3.client("sqs")
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
            "Messages", []
        )
        if not batch:
            return found
        found += [json.loads(m["Body"]) for m in batch]


def _s3_versions(env) -> list[dict]:
    return (
        boto3.client("s3")
        .list_object_versions(Bucket=env.settings.invoices_bucket, Prefix="invoices/2025-11.csv")
        .get("Versions", [])
    )


def test_the_close_rates_stores_exports_and_enqueues_once(env):
    # Given an upgrading tenant with queries on both sides of the change, and an idle payg tenant
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z"), ("pro", "2025-11-16T08:00:00Z")])
    make_tenant("quiet", [("payg", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 800, "2025-11-02T00:00:00Z", prefix="a", cost="0.001"))
    env.store.insert_events(queries("acme", 10000, "2025-11-20T00:00:00Z", prefix="b"))
    cycle = container.billing_cycle()
    # When November is closed twice
    first = cycle.close(NOV)
    first_json = [s.model_dump_json() for s in first.statements]
    second = cycle.close(NOV)
    # Then acme is billed by hand-worked lines: starter 29 x 1,324,800/2,592,000 s, pro 99 x 1,267,200/2,592,000 s,
    # starter queries 1-800 @0.01, pro 801-10,000 @0.008 and 10,001-10,800 @0.006, usage 800 x 0.001
    acme = first.statements[0]
    assert {l.line_id: l.amount for l in acme.lines} == {
        "base:starter:1": Decimal("14.82"),
        "base:pro:1": Decimal("48.40"),
        "queries:starter:t1": Decimal("8.00"),
        "queries:pro:t1": Decimal("73.60"),
        "queries:pro:t2": Decimal("4.80"),
        "usage": Decimal("0.80"),
    }
    assert acme.total == Decimal("150.42")
    # And the re-run created nothing, enqueued nothing, and left statements and CSV byte-identical
    assert first.created == ["acme", "quiet"] and second.created == []
    assert [s.model_dump_json() for s in second.statements] == first_json
    assert second.csv == first.csv and not second.csv_written
    assert first.csv == (
        b"tenant_id,month,total_queries,total_tokens,total_cost_usd,invoice_date\n"
        b"acme,2025-11,10800,0,150.42,2025-11-30\nquiet,2025-11,0,0,0.00,2025-11-30\n"
    )
    s3 = boto3.client("s3").get_object(Bucket=env.settings.invoices_bucket, Key="invoices/2025-11.csv")
    assert s3["Body"].read() == first.csv and len(_s3_versions(env)) == 1
    # And exactly one invoicing job, for the non-zero statement only
    assert _messages(env.settings.invoicing_queue_url) == [{"month": "2025-11", "tenant_id": "acme"}]
    assert container.periods().closed_at(NOV) == first.closed_at == second.closed_at


def test_the_close_waits_for_the_fallback_queue_to_drain(env):
    # Given a usage batch still waiting in the fallback queue
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=env.settings.fallback_queue_url, MessageBody="{}")
    cycle = container.billing_cycle()
    # When the close runs, it refuses (the scheduler retries) and records nothing
    with pytest.raises(FallbackNotDrained) as refused:
        cycle.close(NOV)
    assert refused.value.status == 503 and container.periods().closed_at(NOV) is None
    # Also while the message is in flight (received, not yet deleted)
    message = sqs.receive_message(QueueUrl=env.settings.fallback_queue_url, VisibilityTimeout=60)["Messages"][
        0
    ]
    with pytest.raises(FallbackNotDrained):
        cycle.close(NOV)
    # Once replayed (deleted), the month closes
    sqs.delete_message(QueueUrl=env.settings.fallback_queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert cycle.close(NOV).created == ["acme"]


def test_a_month_that_is_not_over_cannot_be_closed(env):
    cycle = container.billing_cycle()
    cycle.clock = lambda: NOV.end.replace(microsecond=0) - __import__("datetime").timedelta(seconds=1)
    with pytest.raises(InvalidRequest):
        cycle.close(NOV)


def test_late_events_become_a_prior_period_adjustment_billed_once(env):
    # Given a starter tenant with 1,000 November queries (tier 1 full), November closed
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 1000, "2025-11-02T00:00:00Z", prefix="n"))
    cycle = container.billing_cycle()
    november = cycle.close(NOV).statements[0]
    time.sleep(0.01)
    # When a fallback replay stores 3 November events after the close (2 queries, 1 embedding with cost),
    # and a stray copy of an already billed event is written again
    late = queries("acme", 2, "2025-11-29T00:00:00Z", prefix="late", cost="0.5")
    embedding = queries("acme", 1, "2025-11-29T01:00:00Z", prefix="emb", cost="0.25")[0]
    embedding = embedding._replace(type="embedding", queries=0)
    env.store.insert_events(late + [embedding])
    env.store.insert_events(queries("acme", 1, "2025-11-02T00:00:00Z", prefix="n"))
    env.store.insert_events(queries("acme", 5, "2025-12-03T00:00:00Z", prefix="d"))
    december = cycle.close(DEC).statements[0]
    # Then November's statement is unchanged
    assert container.statements().get("acme", NOV) == november
    assert november.total == Decimal("39.00")  # 29.00 + 1,000 x 0.01
    # And December carries adjustment lines naming November: the late queries continue November's tiers
    # at positions 1,001-1,002 (@0.008), their usage cost is 2 x 0.5 + 0.25; the stray copy is not late
    adjustments = {
        l.line_id: (l.quantity, l.amount, l.adjustment_month)
        for l in december.lines
        if l.kind == "adjustment"
    }
    assert adjustments == {
        "adj:2025-11:queries:starter:t2": (Decimal(2), Decimal("0.02"), "2025-11"),
        "adj:2025-11:usage": (Decimal(3), Decimal("1.25"), "2025-11"),
    }
    assert december.total == Decimal("29.00") + Decimal("0.05") + Decimal("0.02") + Decimal("1.25")
    assert december.total_queries == 5  # the CSV counts December's own events
    # And closing December again bills nothing twice
    assert cycle.close(DEC).statements == [december]


def test_a_price_book_change_after_the_fact_does_not_change_a_regenerated_statement(
    env, tmp_path, monkeypatch
):
    # Given usage ingested (priced at event time) and November closed
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    events = [
        UsageEvent(
            event_id=f"e{i}",
            tenant_id="acme",
            timestamp=f"2025-11-0{i + 1}T10:00:00Z",
            type="query",
            model="gpt-4o",
            input_tokens=100_000,
            output_tokens=10_000,
        )
        for i in range(5)
    ]
    container.ingest_service().ingest(events)
    stored = container.billing_cycle().close(NOV).statements[0]
    # When the price book is changed (every price x 10) and the statement is regenerated from the stores
    book = tmp_path / "book.yaml"
    book.write_text(
        Path(env.settings.pricebook_path)
        .read_text()
        .replace('"2.50"', '"25.00"')
        .replace('"10.00"', '"100.00"')
    )
    monkeypatch.setenv("PRICEBOOK_PATH", str(book))
    container.reset()
    assert container.price_book().versions[0].models["gpt-4o"].input_per_1m == Decimal("25.00")
    cycle = container.billing_cycle()
    (regenerated,) = cycle.rate([container.tenants().get("acme")], NOV, container.periods().closed_at(NOV))
    # Then it is the same statement (5 x (100k x 2.50 + 10k x 10.00) / 1e6 x 1.25 = 2.1875 -> 2.19)
    assert regenerated == stored
    assert {l.line_id: l.amount for l in stored.lines}["usage"] == Decimal("2.19")


def test_a_preview_is_month_to_date_and_stores_nothing(env):
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 3, "2025-11-02T00:00:00Z"))
    statement, stored = container.billing_cycle().statement("acme", NOV)
    assert not stored and statement.total == Decimal("29.03")
    assert container.statements().get("acme", NOV) is None
    assert (
        container.billing_cycle().export_csv(NOV).decode().splitlines()[1]
        == "acme,2025-11,3,0,29.03,2025-11-30"
    )


def test_usage_stored_after_a_final_statement_is_billed_next_month(env):
    # Given a starter tenant with 5 November queries, cancelled at 2025-11-16 (final statement at once:
    # 29.00 x 15/30 + 5 x 0.01)
    make_tenant("leaver", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("leaver", 5, "2025-11-02T00:00:00Z", prefix="a"))
    _, final = container.tenant_service().cancel(
        "leaver",
        __import__("billing.tenants.service", fromlist=["CancelRequest"]).CancelRequest(
            at="2025-11-16T00:00:00Z"
        ),
    )
    assert final.is_final and final.total == Decimal("14.55")
    time.sleep(0.01)
    # When 2 November queries from before the cancellation are stored after the final statement was issued
    env.store.insert_events(queries("leaver", 2, "2025-11-10T00:00:00Z", prefix="b"))
    cycle = container.billing_cycle()
    november = cycle.close(NOV)
    december = cycle.close(DEC)
    # Then November keeps the final statement, and December bills them on a statement of adjustment
    # lines only (positions 6-7 of November's starter tiers @0.01)
    assert [s.model_dump_json() for s in november.statements] == [final.model_dump_json()]
    (adjustment,) = december.statements
    assert {l.line_id: l.amount for l in adjustment.lines} == {
        "adj:2025-11:queries:starter:t1": Decimal("0.02"),
        "adj:2025-11:usage": Decimal("0.00"),
    }
    assert adjustment.total == Decimal("0.02") and adjustment.invoice_date == "2025-12-31"
    assert not adjustment.is_final and adjustment.total_queries == 0
    # And nothing is billed twice on a re-run or in January
    assert cycle.close(DEC).created == []
    assert cycle.close(Month(2026, 1)).statements == []


@pytest.mark.parametrize("canceled_at", ["2025-12-01T00:00:00Z", "2025-11-30T23:59:59.999Z"])
def test_usage_stored_after_a_final_statement_ending_the_month_is_billed_next_month(env, canceled_at):
    # Given a starter tenant with 5 November queries, cancelled at the very end of November (exactly
    # 00:00 on December 1st, or 1 ms before it): November's statement is its final one, issued at once
    make_tenant("leaver", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("leaver", 5, "2025-11-02T00:00:00Z", prefix="a"))
    _, final = container.tenant_service().cancel("leaver", CancelRequest(at=canceled_at))
    assert final.month == "2025-11" and final.is_final and final.invoice_date == "2025-11-30"
    assert final.total == Decimal("29.05")
    time.sleep(0.01)
    # When 2 November queries from before the cancellation are stored after the final statement was
    # issued, and before November's close
    env.store.insert_events(queries("leaver", 2, "2025-11-30T23:59:58Z", prefix="b"))
    cycle = container.billing_cycle()
    november = cycle.close(NOV)
    december = cycle.close(DEC)
    # Then November keeps the final statement, and December bills them on a statement of adjustment
    # lines only (positions 6-7 of November's starter tiers @0.01)
    assert [s.model_dump_json() for s in november.statements] == [final.model_dump_json()]
    (adjustment,) = december.statements
    assert {l.line_id: l.amount for l in adjustment.lines} == {
        "adj:2025-11:queries:starter:t1": Decimal("0.02"),
        "adj:2025-11:usage": Decimal("0.00"),
    }
    assert adjustment.total == Decimal("0.02") and adjustment.invoice_date == "2025-12-31"
    assert not adjustment.is_final and adjustment.total_queries == 0
    # And nothing is billed twice on a re-run or in January
    assert cycle.close(DEC).created == []
    assert cycle.close(Month(2026, 1)).statements == []


def test_an_earlier_month_replayed_after_a_final_statement_is_billed_next_month(env):
    # Given a starter tenant with October closed (3 queries), cancelled on 2025-11-16 (final statement)
    OCT = Month(2025, 10)
    make_tenant("leaver", [("starter", "2025-09-01T00:00:00Z")])
    env.store.insert_events(queries("leaver", 3, "2025-10-02T00:00:00Z", prefix="o"))
    cycle = container.billing_cycle()
    cycle.close(OCT)
    time.sleep(0.01)
    _, final = container.tenant_service().cancel("leaver", CancelRequest(at="2025-11-16T00:00:00Z"))
    time.sleep(0.01)
    # When a replay stores 2 more October queries after the final statement, before November's close
    env.store.insert_events(queries("leaver", 2, "2025-10-20T00:00:00Z", prefix="r"))
    cycle.close(NOV)
    (december,) = cycle.close(DEC).statements
    # Then December bills them as October adjustments (positions 4-5 of October's tiers @0.01), alone
    assert final.inputs["late_months"] == []
    assert {l.line_id: l.amount for l in december.lines} == {
        "adj:2025-10:queries:starter:t1": Decimal("0.02"),
        "adj:2025-10:usage": Decimal("0.00"),
    }
    assert december.total == Decimal("0.02")


def test_late_trial_usage_of_a_cancelled_tenant_issues_no_statement(env):
    # Given a starter tenant cancelled on 2025-11-16 during its trial (which runs to 2025-11-20): its
    # final statement bills nothing
    make_tenant("trialist", [("starter", "2025-11-06T00:00:00Z")], trial_ends_at="2025-11-20T00:00:00Z")
    _, final = container.tenant_service().cancel("trialist", CancelRequest(at="2025-11-16T00:00:00Z"))
    assert final.is_final and final.total == 0
    time.sleep(0.01)
    # When a trial-time query is stored after the final statement, before November's close
    env.store.insert_events(queries("trialist", 1, "2025-11-10T00:00:00Z", prefix="t"))
    cycle = container.billing_cycle()
    cycle.close(NOV)
    # Then December has nothing to bill it: trial usage is free, and no empty statement is issued
    assert cycle.close(DEC).statements == []
