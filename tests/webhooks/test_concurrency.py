"""Two events for the same tenant processed at the same moment never lose an update; a failure in
the middle of processing never loses the event."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from billing.adapters.dynamodb.items import dynamodb_client
from billing.adapters.stripe.webhook_signature import sign
from billing.runtime import container
from tests.dunning.support import T0, WEBHOOK_SECRET, invoice_event, make_tenant


def _events(tenant: str, invoices: int) -> list[dict]:
    """Per invoice: finalized, failed; the even ones are then paid, every third one voided."""
    out = []
    for i in range(invoices):
        inv = f"in_{tenant}_{i}"
        out.append(invoice_event(f"evt_{tenant}_{i}_fin", "invoice.finalized", inv, tenant, T0))
        out.append(
            invoice_event(
                f"evt_{tenant}_{i}_fail", "invoice.payment_failed", inv, tenant, T0 + timedelta(minutes=i + 1)
            )
        )
        if i % 2 == 0:
            out.append(
                invoice_event(
                    f"evt_{tenant}_{i}_paid", "invoice.paid", inv, tenant, T0 + timedelta(hours=i + 1)
                )
            )
        elif i % 3 == 0:
            out.append(
                invoice_event(
                    f"evt_{tenant}_{i}_void", "invoice.voided", inv, tenant, T0 + timedelta(hours=i + 1)
                )
            )
    return out


def _view(tenant: str) -> str:
    view = container.dunning_service().status(tenant).to_json()
    view["tenant_status"] = container.tenants().get(tenant).payment_status
    return json.dumps(view, sort_keys=True).replace(tenant, "T")


def _conflict_counter() -> dict[str, int]:
    seen = {"conditional_failures": 0}

    def after(http_response, parsed, **_):
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            seen["conditional_failures"] += 1

    dynamodb_client().meta.events.register("after-call.dynamodb", after)
    return seen


def test_concurrent_events_for_one_tenant_lose_no_update(stripe):
    # Given two tenants with the same month of events: one processed in order, one all at once
    make_tenant("calm")
    make_tenant("busy")
    processor = container.webhook_processor()
    now = int(stripe.clock.now.timestamp())

    def deliver(event: dict) -> str:
        body = json.dumps(event).encode()
        return processor.handle(body, sign(body, WEBHOOK_SECRET, now)).status

    for event in _events("calm", 8):
        assert deliver(event) == "processed"
    conflicts = _conflict_counter()
    # When the busy tenant's 21 events (8 invoices) hit 21 threads released by one barrier
    busy = _events("busy", 8)
    gate = threading.Barrier(len(busy))

    def racing(event: dict) -> str:
        gate.wait()
        return deliver(event)

    with ThreadPoolExecutor(max_workers=len(busy)) as pool:
        results = list(pool.map(racing, busy))
    # Then every event was processed, writers did collide, and nothing was lost
    assert results == ["processed"] * len(busy)
    assert conflicts["conditional_failures"] > 0
    assert _view("busy") == _view("calm")
    assert container.tenants().get("busy").payment_status == "past_due"


def test_the_same_event_delivered_twice_at_once_is_applied_once(stripe):
    make_tenant("acme")
    processor = container.webhook_processor()
    event = invoice_event("evt_twice", "invoice.payment_failed", "in_acme", "acme", T0)
    body = json.dumps(event).encode()
    header = sign(body, WEBHOOK_SECRET, int(stripe.clock.now.timestamp()))
    gate = threading.Barrier(6)

    def racing(_: int) -> str:
        gate.wait()
        return processor.handle(body, header).status

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = sorted(pool.map(racing, range(6)))
    assert results.count("processed") == 1 and results.count("duplicate") == 5
    audit = container.dunning_service().status("acme").audit
    assert [(e.subject, e.to_state) for e in audit] == [("in_acme", "past_due"), ("tenant", "past_due")]


def test_a_failure_mid_processing_leaves_the_event_to_be_processed_on_redelivery(stripe):
    # Given the tenant's standing write fails once (DynamoDB throttling after the invoice was written)
    make_tenant("acme")
    failures = {"left": 1}

    def throttle(params, **_):
        item = params.get("Item") or {}
        if failures["left"] and item.get("sk", {}).get("S") == "DUNNING":
            failures["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}},
                "PutItem",
            )

    dynamodb_client().meta.events.register("before-parameter-build.dynamodb.PutItem", throttle)
    event = invoice_event("evt_flaky", "invoice.payment_failed", "in_acme", "acme", T0)
    # When Stripe delivers it: 503 (a backing service failed, never a 500), so Stripe will redeliver
    status, body = stripe.deliver(event)
    assert status == 503 and body["error"] == "service_unavailable"
    assert container.tenants().get("acme").payment_status == "active"
    # When the redelivery comes
    stripe.clock.advance(minutes=1)
    status, body = stripe.deliver(event)
    # Then it is processed (not taken for a duplicate), and the tenant is past due
    assert status == 200 and body["status"] == "processed"
    assert container.tenants().get("acme").payment_status == "past_due"
    assert [e.to_state for e in container.dunning_service().status("acme").audit] == ["past_due", "past_due"]
    # And a third delivery is a duplicate
    assert stripe.deliver(event)[1]["status"] == "duplicate"


@pytest.mark.parametrize("threads", [8])
def test_standing_writes_from_the_dunning_job_and_webhooks_interleave_safely(stripe, threads):
    # Given one tenant with several failing invoices
    make_tenant("acme")
    processor = container.webhook_processor()
    now = int(stripe.clock.now.timestamp())
    events = [
        invoice_event(f"evt_f{i}", "invoice.payment_failed", f"in_{i}", "acme", T0) for i in range(threads)
    ]
    events += [
        invoice_event(f"evt_p{i}", "invoice.paid", f"in_{i}", "acme", T0 + timedelta(hours=1))
        for i in range(threads)
    ]
    for event in events[:threads]:
        body = json.dumps(event).encode()
        processor.handle(body, sign(body, WEBHOOK_SECRET, now))
    # When every invoice's payment lands at once
    gate = threading.Barrier(threads)

    def pay(event: dict) -> str:
        body = json.dumps(event).encode()
        gate.wait()
        return processor.handle(body, sign(body, WEBHOOK_SECRET, now)).status

    with ThreadPoolExecutor(max_workers=threads) as pool:
        assert set(pool.map(pay, events[threads:])) == {"processed"}
    # Then the tenant is active: no payment was lost
    assert container.tenants().get("acme").payment_status == "active"
    assert container.dunning_service().status("acme").standing == "active"
