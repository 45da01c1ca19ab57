"""Notices: every dunning transition reaches the stack's EventBridge bus (source billing, typed
detail), read back here through a rule that targets an SQS queue (moto)."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest

from billing.dunning.notices import notices_for
from billing.dunning.timeline import AuditEntry
from billing.runtime import container
from tests.dunning.support import T0
from tests.dunning.test_timeline import _deliver_all, _fail_first_charge, _tenant


@pytest.fixture
def bus(stripe, world, monkeypatch: pytest.MonkeyPatch):
    """Given the notices bus, with a rule sending every billing notice to a queue we read."""
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.create_event_bus(Name="billing-notices")
    queue_url = sqs.create_queue(QueueName="notices")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="all", EventBusName="billing-notices", EventPattern=json.dumps({"source": ["billing"]})
    )
    events.put_targets(Rule="all", EventBusName="billing-notices", Targets=[{"Id": "q", "Arn": arn}])
    monkeypatch.setenv("NOTICES_BUS_NAME", "billing-notices")
    container.reset()
    container.override(clock=stripe.clock)

    def read() -> list[dict]:
        out = []
        while True:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for message in got:
                out.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    return read


def _kinds(notices: list[dict]) -> list[str]:
    return [n["detail"]["kind"] for n in notices]


def test_each_dunning_transition_publishes_a_notice(stripe, world, bus) -> None:
    # Given acme's first charge declined
    _tenant()
    invoice = _fail_first_charge(stripe, world)

    # Then the bus got "payment failed" and "retry scheduled" for day 3, typed and complete
    first = bus()
    assert _kinds(first) == ["payment_failed", "retry_scheduled"]
    assert {n["source"] for n in first} == {"billing"}
    assert [n["detail-type"] for n in first] == ["dunning.payment_failed", "dunning.retry_scheduled"]
    detail = first[1]["detail"]
    assert detail["tenant_id"] == "acme" and detail["invoice_id"] == invoice
    assert detail["next_retry_at"] == "2025-12-04T09:00:00Z" and detail["id"]

    # When the three retries fail
    kinds = []
    for day in (3, 7, 14):
        stripe.clock.set(T0 + timedelta(days=day, hours=1))
        stripe.run_dunning()
        _deliver_all(stripe, world)
        kinds += _kinds(bus())
    # Then each failure was told, the next retry with it, and the suspension
    assert kinds == [
        "retry_failed",
        "retry_scheduled",
        "retry_failed",
        "retry_scheduled",
        "retry_failed",
        "suspended",
    ]

    # When the customer pays, the reactivation is told
    stripe.clock.set(T0 + timedelta(days=15))
    world.double.clear_declines()
    world.charge(invoice, "customer-pays-hosted-page")
    paid_events = world.new_events()
    for event in paid_events:
        stripe.deliver(event)
    assert _kinds(bus()) == ["reactivated"]

    # And redeliveries tell nothing new
    for event in paid_events:
        stripe.deliver(event)
    assert bus() == []


def test_notices_carry_the_invoice_amount_and_hosted_url_from_our_record() -> None:
    # Given an added audit entry of a first failure and a lookup of our invoice record
    from billing.dunning.facts import Failed, InvoiceDunning, Mark, apply
    from billing.dunning.notices import InvoiceDetails

    record = apply(InvoiceDunning("acme", "in_1", "2025-11"), Failed(Mark(T0, "evt_1"), "declined"))
    entry = AuditEntry(T0, "in_1", "open", "past_due", "declined", "evt_1")
    details = InvoiceDetails(4999, "usd", "https://invoice.stripe.com/i/x", "2025-11")

    # When notices are derived
    notices = notices_for("acme", [entry], [record], [3, 7, 14], lambda t, i: details)

    # Then they say how much, where to pay and when the next retry runs
    assert [n.kind for n in notices] == ["payment_failed", "retry_scheduled"]
    body = notices[1].detail()
    assert body["amount_due"] == 4999 and body["hosted_invoice_url"].startswith("https://invoice.stripe.com/")
    assert body["next_retry_at"] == "2025-12-04T09:00:00Z" and body["month"] == "2025-11"
