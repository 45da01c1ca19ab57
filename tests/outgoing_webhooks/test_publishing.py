"""The producers publish: a statement stored by the close, a Stripe invoice event merged into
dunning, a tenant's standing transition. Each through the real stores (moto DynamoDB and SQS, chdb),
the delivery Lambda and a real HTTP receiver that verifies every request with
``usage_tracker.verify_signature`` and with the ``standardwebhooks`` library.

One fact is one delivery however often its producer repeats it (a close run twice, a Stripe event
delivered twice), an endpoint gets only the types it subscribed to, and a publish that fails leaves
the billing action done and is published when the producer repeats it."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import boto3
import pytest

from billing.kernel.periods import Month
from billing.outgoing_webhooks.delivery import Message
from billing.outgoing_webhooks.endpoints import EndpointRequest
from billing.runtime import container
from billing.tenants.access import PLATFORM
from billing_local.runner import LocalContext, load_module, sqs_records
from tests.dunning.support import T0, customer_deleted_event, invoice_event
from tests.dunning.support import make_tenant as make_paying_tenant
from tests.rating.helpers import make_tenant, queries

NOV, DEC = Month(2025, 11), Month(2025, 12)


@pytest.fixture
def app():
    return load_module("webhook_delivery")


def register(receiver, *event_types: str, keep_secret: bool = True) -> str:
    """An endpoint at the receiver wanting ``event_types``; the receiver verifies with its secret."""
    created, secret = container.webhook_endpoint_service().register(
        EndpointRequest(url=receiver.url, event_types=list(event_types)), PLATFORM
    )
    if keep_secret:
        receiver.secret = secret
    return created.id


def queued(env) -> list[dict]:
    """Every message waiting in the delivery queue (taken off it)."""
    sqs, found = boto3.client("sqs"), []
    while True:
        got = sqs.receive_message(
            QueueUrl=env.settings.webhook_delivery_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return found
        found += got


def deliver(env, app) -> list[dict]:
    """Run the delivery Lambda on what is queued; the SQS records it got."""
    messages = queued(env)
    if messages:
        result = app.handler(sqs_records(messages), LocalContext(function_name="webhook-delivery"))
        assert result == {"batchItemFailures": []}
    return messages


def test_a_close_run_twice_delivers_statement_issued_once(env, receiver, app):
    # Given an endpoint subscribed to statement.issued, and another (same URL) to invoice.paid only
    wants = register(receiver, "statement.issued")
    register(receiver, "invoice.paid", keep_secret=False)
    # And a starter tenant with 800 November queries
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 800, "2025-11-02T00:00:00Z"))
    cycle = container.billing_cycle()
    # When November is closed twice (a retried close Lambda)
    cycle.close(NOV)
    cycle.close(NOV)
    # Then one message is queued, to the subscribed endpoint only
    sent = deliver(env, app)
    assert len(sent) == 1 and '"endpoint_id":"' + wants in sent[0]["Body"]
    # And the receiver got exactly one delivery, verified, carrying the stored statement in full
    [delivered] = receiver.verified
    statement = container.statements().get("acme", NOV)
    assert delivered["type"] == "statement.issued" and delivered["version"] == 1
    assert delivered["object_id"] == statement.statement_id == "acme:2025-11"
    assert delivered["sequence"] == 1
    assert delivered["data"]["total"] == str(statement.total) == "37.00"
    assert [line["line_id"] for line in delivered["data"]["lines"]] == [l.line_id for l in statement.lines]
    assert "inputs" not in delivered["data"]
    # And a third run delivers nothing more
    cycle.close(NOV)
    assert deliver(env, app) == [] and len(receiver.ids) == 1


def test_late_usage_on_a_statement_publishes_usage_late_adjusted(env, receiver, app):
    # Given an endpoint subscribed to usage.late_adjusted, and November closed
    register(receiver, "usage.late_adjusted")
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("acme", 1000, "2025-11-02T00:00:00Z", prefix="n"))
    cycle = container.billing_cycle()
    cycle.close(NOV)
    assert deliver(env, app) == []  # November has no adjustment
    time.sleep(0.01)
    # When two November queries arrive after the close, and December is closed
    env.store.insert_events(queries("acme", 2, "2025-11-29T00:00:00Z", prefix="late", cost="0.5"))
    cycle.close(DEC)
    deliver(env, app)
    # Then the receiver got the adjustment of December's statement, naming November
    [delivered] = receiver.verified
    assert delivered["type"] == "usage.late_adjusted" and delivered["object_id"] == "acme:2025-12"
    data = delivered["data"]
    assert data["adjusted_months"] == ["2025-11"]
    assert Decimal(data["adjustment_total"]) == Decimal("0.02") + Decimal("1.00")
    assert {a["line_id"] for a in data["adjustments"]} == {
        "adj:2025-11:queries:starter:t2",
        "adj:2025-11:usage",
    }


def test_a_close_whose_publish_fails_is_stored_and_publishes_on_its_next_run(env, receiver, app):
    # Given an endpoint subscribed to statement.issued, and SQS refusing every message
    register(receiver, "statement.issued")
    make_tenant("acme", [("starter", "2025-10-01T00:00:00Z")])

    class Down:
        def send(self, message: Message, delay: timedelta) -> None:
            raise ConnectionError("SQS is down")

    container.override(webhook_queue=Down())
    # When November is closed
    result = container.billing_cycle().close(NOV)
    # Then the close is done all the same: statement stored, nothing queued
    assert result.created == ["acme"] and container.statements().get("acme", NOV) is not None
    assert deliver(env, app) == []
    # When SQS is back and the close runs again
    container.override(webhook_queue=None)
    container.billing_cycle().close(NOV)
    deliver(env, app)
    # Then the statement is delivered once, as sequence 1 (its number was kept, not taken anew)
    [delivered] = receiver.verified
    assert (delivered["type"], delivered["object_id"], delivered["sequence"]) == (
        "statement.issued",
        "acme:2025-11",
        1,
    )


def test_a_stripe_invoice_paid_delivered_twice_is_delivered_once(env, stripe, receiver, app):
    # Given an endpoint subscribed to the invoice events, and acme's November invoice
    register(receiver, "invoice.paid", "invoice.finalized", "invoice.payment_failed")
    make_paying_tenant("acme")
    paid = invoice_event("evt_paid_1", "invoice.paid", "in_nov", "acme", T0)
    # When Stripe delivers invoice.paid twice
    assert stripe.deliver(paid)[1]["status"] == "processed"
    assert stripe.deliver(paid)[1]["status"] == "duplicate"
    # Then one message is queued, and delivered once (signed now, not at the injected clock's time)
    container.override(clock=None)
    assert len(deliver(env, app)) == 1
    [delivered] = receiver.verified
    assert delivered["type"] == "invoice.paid" and delivered["object_id"] == "in_nov"
    # And it carries what a receiver needs, whatever arrived before it
    assert delivered["data"] == {
        "invoice_id": "in_nov",
        "tenant_id": "acme",
        "month": "2025-11",
        "statement_id": "acme:2025-11",
        "status": "paid",
        "state": "paid",
        "amount_due": 4900,
        "amount_paid": 4900,
        "amount_remaining": 0,
        "currency": "usd",
        "hosted_invoice_url": delivered["data"]["hosted_invoice_url"],
        "attempt_count": 0,
        "tenant_standing": "active",
        "stripe_event_id": "evt_paid_1",
        "occurred_at": "2025-12-01T09:00:00Z",
    }


def test_a_suspension_publishes_tenant_suspended_once(env, stripe, receiver, app):
    # Given an endpoint subscribed to tenant.suspended only, and acme past due on a failed payment
    register(receiver, "tenant.suspended")
    make_paying_tenant("acme")
    failed = invoice_event("evt_failed_1", "invoice.payment_failed", "in_nov", "acme", T0)
    assert stripe.deliver(failed)[0] == 200
    assert container.tenants().get("acme").payment_status == "past_due"
    # When dunning suspends acme (its Stripe customer deleted with the invoice unpaid), told twice
    stripe.clock.advance(days=1)
    deleted = customer_deleted_event("evt_cus_deleted", "acme", stripe.clock.now)
    assert stripe.deliver(deleted)[1]["standing"] == "suspended"
    stripe.deliver(deleted)
    # Then the endpoint gets tenant.suspended once (and neither past_due nor payment_failed)
    container.override(clock=None)
    assert len(deliver(env, app)) == 1
    [delivered] = receiver.verified
    assert delivered["type"] == "tenant.suspended" and delivered["object_id"] == "acme"
    assert delivered["data"]["standing"] == "suspended"
    assert (delivered["data"]["from"], delivered["data"]["to"]) == ("past_due", "suspended")
    assert delivered["data"]["cause_id"] == "evt_cus_deleted"
    assert delivered["data"]["at"] == "2025-12-02T09:00:00Z"


def test_past_due_and_reinstated_are_published_with_increasing_sequence(env, stripe, receiver, app):
    # Given an endpoint subscribed to every tenant standing event
    register(receiver, "tenant.past_due", "tenant.suspended", "tenant.reinstated")
    make_paying_tenant("acme")
    # When acme's payment fails, then the invoice is paid a day later
    stripe.deliver(invoice_event("evt_f", "invoice.payment_failed", "in_nov", "acme", T0))
    stripe.clock.advance(days=1)
    stripe.deliver(invoice_event("evt_p", "invoice.paid", "in_nov", "acme", stripe.clock.now))
    container.override(clock=None)
    deliver(env, app)
    # Then the receiver got past_due then reinstated, the later one with the higher sequence
    got = sorted((d["sequence"], d["type"], d["data"]["standing"]) for d in receiver.verified)
    assert got == [(1, "tenant.past_due", "past_due"), (2, "tenant.reinstated", "active")]


def test_a_final_statement_is_issued_once_by_the_cancellation_and_the_close(env, receiver, app):
    from billing.tenants.service import CancelRequest

    # Given an endpoint subscribed to statement.issued, and a starter tenant with November queries
    register(receiver, "statement.issued")
    make_tenant("leaver", [("starter", "2025-10-01T00:00:00Z")])
    env.store.insert_events(queries("leaver", 5, "2025-11-02T00:00:00Z"))
    # When it is cancelled mid-November, the cancellation repeated, and November closed
    cancel = CancelRequest(at="2025-11-16T00:00:00Z")
    _, final = container.tenant_service().cancel("leaver", cancel)
    container.tenant_service().cancel("leaver", cancel)
    container.billing_cycle().close(NOV)
    deliver(env, app)
    # Then the final statement was delivered once, saying it is the final one
    [delivered] = receiver.verified
    assert delivered["object_id"] == final.statement_id == "leaver:2025-11"
    assert delivered["data"]["is_final"] is True and delivered["data"]["total"] == str(final.total)
