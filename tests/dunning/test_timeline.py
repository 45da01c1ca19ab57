"""The dunning timeline with an injected clock, against the Stripe double through our real gateway:
fail, retry day 3/7/14 fail, suspended (ingest 402), customer pays, active; and recovery on day 7."""

from __future__ import annotations

import json
from datetime import timedelta

from billing.runtime import container
from billing.tenants.tenant import PlanAssignment
from tests.dunning.support import T0, customer_deleted_event, load_handler, make_tenant

ingest = load_handler("ingest")


def _tenant(tenant_id: str = "acme"):
    return make_tenant(tenant_id, plans=[PlanAssignment(plan="starter", effective_at="2025-01-01T00:00:00Z")])


def _deliver_all(stripe, world) -> list[dict]:
    """Hand every webhook Stripe would have sent since the last call to our endpoint."""
    bodies = []
    for event in world.new_events():
        status, body = stripe.deliver(event)
        assert status == 200, body
        bodies.append(body)
    return bodies


def _ingest_status(stripe, tenant_id: str = "acme") -> int:
    from tests.conftest import api_event

    event = {
        "event_id": f"u-{stripe.clock.now.timestamp()}",
        "tenant_id": tenant_id,
        "timestamp": "2025-12-02T10:00:00Z",
        "type": "query",
        "model": "gpt-4o-mini",
        "input_tokens": 10,
        "output_tokens": 2,
    }
    return ingest.handler(api_event({"events": [event]}), stripe.lambda_context)["statusCode"]


def _timeline(stripe, tenant_id: str = "acme") -> list[tuple]:
    status, body = stripe.get_status(tenant_id)
    assert status == 200
    return [(e["when"], e["subject"], e["from"], e["to"]) for e in body["audit"]]


def _fail_first_charge(stripe, world, tenant_id: str = "acme") -> str:
    world.double.decline(tenant_id=tenant_id)
    invoice = world.open_invoice(tenant_id)
    attempt = world.charge(invoice, f"{invoice}:charge")  # the invoicing job's one charge
    assert not attempt.succeeded
    _deliver_all(stripe, world)
    return invoice


def test_fail_three_retries_fail_suspended_customer_pays_active(stripe, world):
    # Given acme's November invoice, finalized on Dec 1 with auto_advance=false, and a card that declines
    _tenant()
    invoice = _fail_first_charge(stripe, world)
    # (Stripe itself will neither advance nor retry it: auto_advance is off)
    assert [(i["auto_advance"], i["next_payment_attempt"]) for i in world.double.invoices_for("acme")] == [
        (False, None)
    ]
    # Then acme is past due with retries on day 3, 7 and 14
    assert container.tenants().get("acme").payment_status == "past_due"
    status, body = stripe.get_status("acme")
    assert body["invoices"][0]["next_retry_at"] == "2025-12-04T09:00:00Z"
    assert _ingest_status(stripe) == 202  # past due still ingests

    # When the daily job runs before day 3, nothing is charged
    stripe.clock.set(T0 + timedelta(days=2))
    assert stripe.run_dunning()["due"] == 0 and len(world.pay_requests()) == 1

    # When it runs on day 3, day 7 and day 14 and each retry is declined
    for day, n in ((3, 1), (7, 2), (14, 3)):
        stripe.clock.set(T0 + timedelta(days=day, hours=1))
        report = stripe.run_dunning()
        assert (report["attempted"], report["failed"]) == (1, 1)
        assert world.pay_requests()[-1].idempotency_key == f"{invoice}:retry:{n}"
        _deliver_all(stripe, world)  # Stripe's own payment_failed events
        expected = "suspended" if n == 3 else "past_due"
        assert container.tenants().get("acme").payment_status == expected

    # Then acme is suspended: ingest answers 402 and no retry is left
    assert _ingest_status(stripe) == 402
    stripe.clock.set(T0 + timedelta(days=30))
    assert stripe.run_dunning()["due"] == 0 and len(world.pay_requests()) == 4

    # When the customer fixes the card and pays the invoice on day 15
    stripe.clock.set(T0 + timedelta(days=15))
    world.double.clear_declines()
    assert world.charge(invoice, "customer-pays-hosted-page").succeeded
    _deliver_all(stripe, world)
    # Then acme is active again and ingests
    assert container.tenants().get("acme").payment_status == "active"
    assert _ingest_status(stripe) == 202
    # And the timeline says exactly what happened, and when
    assert _timeline(stripe) == [
        ("2025-12-01T09:00:00Z", invoice, "draft", "open"),
        ("2025-12-01T09:00:00Z", invoice, "open", "past_due"),
        ("2025-12-01T09:00:00Z", "tenant", "active", "past_due"),
        ("2025-12-04T10:00:00Z", invoice, "past_due", "past_due"),
        ("2025-12-08T10:00:00Z", invoice, "past_due", "past_due"),
        ("2025-12-15T10:00:00Z", invoice, "past_due", "exhausted"),
        ("2025-12-15T10:00:00Z", "tenant", "past_due", "suspended"),
        ("2025-12-16T09:00:00Z", invoice, "exhausted", "paid"),
        ("2025-12-16T09:00:00Z", "tenant", "suspended", "active"),
    ]
    audit = stripe.get_status("acme")[1]["audit"]
    assert all(e["stripe_event_id"] and e["why"] for e in audit)
    assert audit[-1]["stripe_event_id"].startswith("evt_")  # the invoice.paid event that reactivated


def test_recovery_on_day_7_cancels_the_remaining_retry(stripe, world):
    # Given acme past due since Dec 1, and the day-3 retry declined
    _tenant()
    invoice = _fail_first_charge(stripe, world)
    stripe.clock.set(T0 + timedelta(days=3))
    stripe.run_dunning()
    _deliver_all(stripe, world)
    # When the card works again by day 7
    world.double.clear_declines()
    stripe.clock.set(T0 + timedelta(days=7))
    report = stripe.run_dunning()
    _deliver_all(stripe, world)
    # Then retry 2 pays the invoice and acme is active
    assert (report["attempted"], report["succeeded"]) == (1, 1)
    assert container.tenants().get("acme").payment_status == "active"
    status, body = stripe.get_status("acme")
    assert body["invoices"][0]["state"] == "paid" and body["invoices"][0]["next_retry_at"] is None
    assert body["audit"][-1]["to"] == "active" and "retry 2 of 3 succeeded" in body["audit"][-2]["why"]
    # And the day-14 retry never happens
    stripe.clock.set(T0 + timedelta(days=14))
    assert stripe.run_dunning()["due"] == 0
    assert [r.idempotency_key for r in world.pay_requests()] == [
        f"{invoice}:charge",
        f"{invoice}:retry:1",
        f"{invoice}:retry:2",
    ]


def test_a_voided_invoice_stops_its_retries_and_clears_past_due(stripe, world):
    _tenant()
    invoice = _fail_first_charge(stripe, world)
    # When the operator voids the invoice in Stripe on day 2
    stripe.clock.set(T0 + timedelta(days=2))
    world.gateway.client.v1.invoices.void_invoice(invoice)
    _deliver_all(stripe, world)
    # Then acme is active and no retry is made on day 3
    assert container.tenants().get("acme").payment_status == "active"
    stripe.clock.set(T0 + timedelta(days=3))
    assert stripe.run_dunning()["due"] == 0 and len(world.pay_requests()) == 1


def test_one_paid_invoice_leaves_the_tenant_past_due_while_another_is_failing(stripe, world):
    # Given two failed invoices (October's and November's)
    _tenant()
    world.double.decline(tenant_id="acme")
    october = world.open_invoice("acme", month="2025-10")
    november = world.open_invoice("acme", month="2025-11")
    for inv in (october, november):
        world.charge(inv, f"{inv}:charge")
    _deliver_all(stripe, world)
    # When only October's is paid
    world.double.clear_declines()
    stripe.clock.advance(days=1)
    world.charge(october, "customer-pays-october")
    _deliver_all(stripe, world)
    # Then acme stays past due, and November keeps its retry schedule
    assert container.tenants().get("acme").payment_status == "past_due"
    states = {
        i["invoice_id"]: (i["state"], i["next_retry_at"]) for i in stripe.get_status("acme")[1]["invoices"]
    }
    assert states == {october: ("paid", None), november: ("past_due", "2025-12-04T09:00:00Z")}


def test_a_deleted_customer_with_unpaid_invoices_is_suspended_and_not_retried(stripe, world):
    _tenant()
    world.double.decline(tenant_id="acme")
    invoice = world.open_invoice("acme")
    world.charge(invoice, f"{invoice}:charge")
    _deliver_all(stripe, world)
    customer = container.tenants().get("acme").stripe_customer_id
    # When the Stripe customer is deleted on day 1
    stripe.clock.advance(days=1)
    event = customer_deleted_event("evt_cus_deleted", "acme", stripe.clock.now)
    event["data"]["object"]["id"] = customer
    status, body = stripe.deliver(event)
    # Then acme is suspended (nothing left to charge) and the day-3 retry is not attempted
    assert status == 200 and body["standing"] == "suspended"
    stripe.clock.set(T0 + timedelta(days=3))
    report = stripe.run_dunning()
    assert report["attempted"] == 0 and len(world.pay_requests()) == 1
    assert stripe.run_dunning()["due"] == 0


def test_a_gateway_outage_leaves_the_retry_due_for_the_next_run(stripe, world):
    _tenant()
    invoice = _fail_first_charge(stripe, world)
    # When Stripe is down (every attempt 500s) during the day-3 run
    world.double.add_fault("server_error", method="POST", path=r"/pay$", times=-1)
    stripe.clock.set(T0 + timedelta(days=3))
    report = stripe.run_dunning()
    assert report["errors"] == 1 and report["attempted"] == 0
    # Then the next day's run makes the same attempt, with the same idempotency key
    world.double.clear_faults()
    stripe.clock.advance(days=1)
    assert stripe.run_dunning()["attempted"] == 1
    assert world.pay_requests()[-1].idempotency_key == f"{invoice}:retry:1"


def _sent_invoice_overdue(stripe, world, tenant_id: str = "acme") -> str:
    """A tenant without a card is sent its invoice (due in 14 days) and lets the due date pass."""
    invoice = world.open_invoice(tenant_id, card=False)
    _deliver_all(stripe, world)  # finalized, sent: nothing is failing yet
    assert container.tenants().get(tenant_id).payment_status == "active"
    assert not world.pay_requests()  # a sent invoice is never charged by the invoicing job
    (sent,) = world.double.invoices_for(tenant_id)
    stripe.clock.set(T0 + timedelta(days=14))
    assert world.double.pass_due_dates(sent["due_date"]) == [invoice]
    bodies = _deliver_all(stripe, world)
    assert [b["invoice_state"] for b in bodies] == ["past_due"]
    return invoice


def test_an_overdue_sent_invoice_is_dunned_until_the_tenant_saves_a_card(stripe, world):
    # Given acme never saved a card: its invoice was sent and the due date passed (invoice.overdue)
    _tenant()
    invoice = _sent_invoice_overdue(stripe, world)
    # Then acme is past due, with the usual retries after the overdue date
    assert container.tenants().get("acme").payment_status == "past_due"
    status, body = stripe.get_status("acme")
    assert body["invoices"][0]["next_retry_at"] == "2025-12-18T09:00:00Z"
    assert "past its due date" in body["audit"][1]["why"]
    # When the day-3 retry runs with still no card on file, it fails (Stripe: no payment method)
    stripe.clock.set(T0 + timedelta(days=17, hours=1))
    report = stripe.run_dunning()
    assert (report["attempted"], report["failed"]) == (1, 1)
    assert report["details"][0]["failure_code"] == "invoice_no_payment_method_types"
    # When acme saves a card and the day-7 retry runs
    world.double.attach_card(customer_id=container.tenants().get("acme").stripe_customer_id)
    stripe.clock.set(T0 + timedelta(days=21, hours=1))
    report = stripe.run_dunning()
    _deliver_all(stripe, world)
    # Then the retry charges the new card and acme is active again
    assert (report["attempted"], report["succeeded"]) == (1, 1)
    assert container.tenants().get("acme").payment_status == "active"
    assert [r.idempotency_key for r in world.pay_requests()] == [f"{invoice}:retry:1", f"{invoice}:retry:2"]


def test_an_overdue_sent_invoice_without_a_card_ends_suspended(stripe, world):
    # Given acme's sent invoice is overdue and acme never saves a card
    _tenant()
    _sent_invoice_overdue(stripe, world)
    # When every retry runs and fails
    for day in (17, 21, 28):
        stripe.clock.set(T0 + timedelta(days=day, hours=1))
        stripe.run_dunning()
        _deliver_all(stripe, world)
    # Then acme is suspended, and a redelivered overdue event changes nothing
    assert container.tenants().get("acme").payment_status == "suspended"
    (overdue,) = world.double.events_of("invoice.overdue")
    status, body = stripe.deliver(overdue)
    assert status == 200 and body["status"] == "duplicate"
    assert world.double.pass_due_dates(2**31) == []  # Stripe says it once


def test_tenant_status_endpoint_requires_an_allowed_key(stripe):
    _tenant()
    assert stripe.get_status("acme", api_key_id=None)[0] == 401
    assert stripe.get_status("acme", api_key_id="someone-else")[0] == 403
    assert stripe.get_status("nobody")[0] == 404
    status, body = stripe.get_status("acme")
    assert status == 200 and body == {
        "tenant_id": "acme",
        "payment_status": "active",
        "invoices": [],
        "audit": [],
        "payment_method_on_file": False,
    }
    json.dumps(body)
