"""An event rendered at another Stripe API version than the one the code is pinned to is processed
(its consumed fields are checked by the typed models) and the answer says so, since Stripe shows
the answer under the endpoint's delivery attempts."""

from __future__ import annotations

from billing.runtime import container
from tests.dunning.support import T0, invoice_event, make_tenant


def test_an_event_at_the_pinned_version_carries_no_warning(stripe):
    make_tenant("acme")
    event = invoice_event("evt_1", "invoice.payment_failed", "in_acme_11", "acme", T0)
    assert event["api_version"] == container.settings().stripe_api_version
    status, body = stripe.deliver(event)
    assert status == 200 and body["status"] == "processed" and "warning" not in body


def test_an_event_at_another_version_is_processed_and_the_answer_warns(stripe):
    # Given the webhook endpoint was created at an older API version
    make_tenant("acme")
    event = invoice_event("evt_1", "invoice.payment_failed", "in_acme_11", "acme", T0)
    event["api_version"] = "2024-06-20"
    # When Stripe delivers it (twice)
    status, body = stripe.deliver(event)
    again_status, again = stripe.deliver(event)
    # Then the fact is recorded, and both answers name the versions and the fix
    assert status == 200 and body["status"] == "processed" and body["standing"] == "past_due"
    assert "2024-06-20" in body["warning"] and container.settings().stripe_api_version in body["warning"]
    assert again_status == 200 and again["status"] == "duplicate" and "warning" in again
    assert container.tenants().get("acme").payment_status == "past_due"
