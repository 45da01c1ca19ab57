"""Out of order and more than once: the state never moves backwards, and a shuffled, duplicated
stream reaches exactly the final states and audit trail of the ordered one."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.runtime import container
from tests.dunning.support import T0, customer_deleted_event, invoice_event, make_tenant


def test_a_late_payment_failed_after_paid_changes_nothing(stripe):
    # Given acme's invoice failed, then was paid
    make_tenant("acme")
    inv = "in_acme_11"
    stripe.deliver(invoice_event("evt_1", "invoice.payment_failed", inv, "acme", T0))
    stripe.deliver(invoice_event("evt_2", "invoice.paid", inv, "acme", T0 + timedelta(hours=5)))
    before = container.dunning_service().status("acme").to_json()
    # When a payment_failed dated after the payment arrives late
    status, body = stripe.deliver(
        invoice_event("evt_3", "invoice.payment_failed", inv, "acme", T0 + timedelta(hours=6))
    )
    # Then it is acknowledged and changes nothing
    assert status == 200 and body["changed"] is False and body["invoice_state"] == "paid"
    assert container.dunning_service().status("acme").to_json() == before
    assert container.tenants().get("acme").payment_status == "active"


def test_paid_delivered_before_an_earlier_failure_keeps_the_invoice_paid(stripe):
    # Given the paid event arrives first, then the failure that happened before it
    make_tenant("acme")
    inv = "in_acme_11"
    stripe.deliver(invoice_event("evt_paid", "invoice.paid", inv, "acme", T0 + timedelta(hours=5)))
    status, body = stripe.deliver(invoice_event("evt_fail", "invoice.payment_failed", inv, "acme", T0))
    # Then the invoice stays paid and the tenant active; the history records the real sequence
    assert body["invoice_state"] == "paid" and body["standing"] == "active"
    audit = [
        (e["subject"], e["from"], e["to"])
        for e in container.dunning_service().status("acme").to_json()["audit"]
    ]
    assert audit == [
        (inv, "open", "past_due"),
        ("tenant", "active", "past_due"),
        (inv, "past_due", "paid"),
        ("tenant", "past_due", "active"),
    ]


def test_an_overdue_delivered_after_the_payment_changes_nothing(stripe):
    # Given acme paid its sent invoice on the hosted page just before Stripe flagged it overdue
    make_tenant("acme")
    inv = "in_acme_11"
    stripe.deliver(invoice_event("evt_paid", "invoice.paid", inv, "acme", T0 + timedelta(days=14)))
    # When the overdue event, dated later, arrives
    status, body = stripe.deliver(
        invoice_event("evt_overdue", "invoice.overdue", inv, "acme", T0 + timedelta(days=14, hours=1))
    )
    # Then the invoice stays paid and acme active
    assert status == 200 and body["invoice_state"] == "paid" and body["changed"] is False
    assert container.tenants().get("acme").payment_status == "active"


def test_uncollectible_then_paid_ends_paid(stripe):
    make_tenant("acme")
    inv = "in_acme_11"
    stripe.deliver(invoice_event("evt_1", "invoice.payment_failed", inv, "acme", T0))
    stripe.deliver(invoice_event("evt_3", "invoice.paid", inv, "acme", T0 + timedelta(days=20)))
    stripe.deliver(
        invoice_event("evt_2", "invoice.marked_uncollectible", inv, "acme", T0 + timedelta(days=10))
    )
    view = container.dunning_service().status("acme").to_json()
    assert view["invoices"][0]["state"] == "paid" and view["payment_status"] == "active"
    # marking it uncollectible (day 10) ended dunning; the later payment is recorded on the invoice
    assert view["audit"][-2:] == [
        {
            "when": "2025-12-11T09:00:00Z",
            "subject": "tenant",
            "from": "past_due",
            "to": "active",
            "why": f"invoice {inv} marked uncollectible",
            "stripe_event_id": "evt_2",
        },
        {
            "when": "2025-12-21T09:00:00Z",
            "subject": inv,
            "from": "uncollectible",
            "to": "paid",
            "why": "invoice paid",
            "stripe_event_id": "evt_3",
        },
    ]
    assert view["invoices"][0]["next_retry_at"] is None


# ------------------------------------------------------------------------------------------ property
_RUNS = itertools.count(1)
ENDINGS = ["open", "paid", "void", "uncollectible", "uncollectible_then_paid", "paid_then_late_failure"]

invoice_story = st.fixed_dictionaries(
    {
        "failures": st.integers(min_value=0, max_value=3),
        "action_required": st.booleans(),
        "ending": st.sampled_from(ENDINGS),
        "start_h": st.integers(min_value=0, max_value=48),
        "gap_h": st.integers(min_value=1, max_value=200),
    }
)
tenant_story = st.fixed_dictionaries(
    {
        "invoices": st.lists(invoice_story, min_size=1, max_size=2),
        "customer_deleted_h": st.none() | st.integers(min_value=0, max_value=400),
    }
)


def _stream(run: str, tenants: list[dict]) -> list[dict]:
    """Stripe's events for a month's invoices, in the order Stripe created them."""
    events: list[tuple] = []
    for t, story in enumerate(tenants):
        tenant = f"{run}-t{t}"
        for i, inv in enumerate(story["invoices"]):
            invoice = f"in_{run}_{t}_{i}"
            at = T0 + timedelta(hours=inv["start_h"])
            seq = 0

            def add(kind: str, when, tenant=tenant, invoice=invoice, prefix=f"evt_{run}_{t}_{i}") -> None:
                nonlocal seq
                seq += 1
                events.append(
                    (when, invoice_event(f"{prefix}_{seq}", kind, invoice, tenant, when, attempt_count=seq))
                )

            add("invoice.finalized", at)
            for k in range(inv["failures"]):
                add("invoice.payment_failed", at + timedelta(minutes=5 + k * 60))
            if inv["action_required"]:
                add("invoice.payment_action_required", at + timedelta(minutes=7))
            end = at + timedelta(hours=inv["gap_h"])
            ending = inv["ending"]
            if ending in ("paid", "paid_then_late_failure"):
                add("invoice.paid", end)
            if ending == "void":
                add("invoice.voided", end)
            if ending.startswith("uncollectible"):
                add("invoice.marked_uncollectible", end)
            if ending == "uncollectible_then_paid":
                add("invoice.paid", end + timedelta(hours=30))
            if ending == "paid_then_late_failure":
                add("invoice.payment_failed", end + timedelta(minutes=1))
        if story["customer_deleted_h"] is not None:
            when = T0 + timedelta(hours=story["customer_deleted_h"])
            events.append((when, customer_deleted_event(f"evt_{run}_{t}_deleted", tenant, when)))
    events.sort(key=lambda e: (e[0], e[1]["id"]))
    return [e for _, e in events]


def _final(run: str, count: int) -> str:
    service = container.dunning_service()
    state = []
    for t in range(count):
        tenant = f"{run}-t{t}"
        state.append(
            {
                "tenant": container.tenants().get(tenant).payment_status,
                "view": service.status(tenant).to_json(),
            }
        )
    return json.dumps(state, sort_keys=True).replace(run, "RUN")


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tenants=st.lists(tenant_story, min_size=1, max_size=4), data=st.data())
def test_a_shuffled_duplicated_stream_ends_like_the_ordered_one(stripe, tenants, data):
    run = next(_RUNS)
    a, b = f"A{run}", f"B{run}"
    for run in (a, b):
        for t in range(len(tenants)):
            make_tenant(f"{run}-t{t}")
    # Given a month of events for several tenants, in Stripe's order
    for event in _stream(a, tenants):
        assert stripe.deliver(event)[0] == 200
    # When the same events arrive shuffled, some of them several times
    shuffled = data.draw(st.permutations(_stream(b, tenants)), label="order")
    repeats = data.draw(st.lists(st.sampled_from(shuffled), max_size=len(shuffled)), label="repeats")
    mixed = data.draw(st.permutations(shuffled + repeats), label="delivery")
    for event in mixed:
        assert stripe.deliver(event)[0] == 200
    # Then final standings, invoice states, schedules and audit trails are identical
    assert _final(b, len(tenants)) == _final(a, len(tenants))
