"""Live: the collection path of a real customer against Stripe's test mode - the setup session (its
setup intent confirmed with a test card through the API, then our webhook handling of it), the
catalog sync, and the invoice of a tenant without a card. Skipped without STRIPE_TEST_SECRET_KEY:

    make live-stripe-test          # STRIPE_TEST_SECRET_KEY=sk_test_... in the environment
"""

from __future__ import annotations

import time

from billing.payments.card_on_file import CardFact, SetupRequest
from billing.runtime import container
from tests.invoicing.conftest import MONTH, make_statement, make_tenant
from tests.invoicing.test_live_stripe import live, pytestmark  # noqa: F401, F811 - fixture and skip marks


def _tenant_with_customer(client, clock, tenant_id: str) -> str:
    make_tenant(tenant_id, card=False)
    customer = client.v1.customers.create(
        {"name": tenant_id, "metadata": {"tenant_id": tenant_id}, "test_clock": clock.id}
    )
    tenant = container.tenants().get(tenant_id)
    container.tenants().save(tenant.model_copy(update={"stripe_customer_id": customer.id}))
    return customer.id


def test_setup_session_then_a_saved_card_becomes_the_invoice_default(live) -> None:  # noqa: F811
    client, clock = live
    tenant_id = f"live-setup-{int(time.time())}"
    customer_id = _tenant_with_customer(client, clock, tenant_id)

    # The setup page Stripe hosts for this customer
    page = container.card_on_file().setup_session(tenant_id, SetupRequest())
    session = client.v1.checkout.sessions.retrieve(page["session_id"])
    assert session.mode == "setup" and session.customer == customer_id and page["url"]

    # A card saved for the customer (Checkout's page needs a browser: the API confirms a setup
    # intent of the same customer with a test card instead)
    intent = client.v1.setup_intents.create(
        {
            "customer": customer_id,
            "payment_method": "pm_card_visa",
            # The pinned API version takes no payment_method_types here; a card needs no redirect
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "usage": "off_session",
            "confirm": True,
            "metadata": {"tenant_id": tenant_id},
        }
    )
    assert intent.status == "succeeded"

    # Our webhook handling of setup_intent.succeeded makes it the default, at Stripe
    from datetime import UTC, datetime

    result = container.card_on_file().record(
        CardFact(
            "evt_live",
            tenant_id,
            customer_id,
            str(intent.payment_method),
            datetime.fromtimestamp(intent.created, UTC),
            str(intent.id),
        )
    )
    assert result["status"] == "processed"
    customer = client.v1.customers.retrieve(customer_id)
    assert customer.invoice_settings.default_payment_method == intent.payment_method

    # and the next invoice is charged automatically
    make_statement(tenant_id, ["12.34"])
    assert container.invoicing_service().invoice(tenant_id, MONTH).state == "paid"


def test_a_tenant_without_a_card_is_sent_its_invoice(live) -> None:  # noqa: F811
    client, clock = live
    tenant_id = f"live-nocard-{int(time.time())}"
    _tenant_with_customer(client, clock, tenant_id)
    make_statement(tenant_id, ["49.00"])

    outcome = container.invoicing_service().invoice(tenant_id, MONTH)

    assert outcome.state == "sent"
    invoice = client.v1.invoices.retrieve(outcome.invoice_id)
    assert invoice.collection_method == "send_invoice" and invoice.status == "open"
    assert invoice.due_date and invoice.hosted_invoice_url and invoice.attempt_count == 0


def test_catalog_sync_is_idempotent_on_stripe(live) -> None:  # noqa: F811
    from billing.catalog.product_sync import sync_catalog

    gateway = container.stripe_gateway()
    first, ids = sync_catalog(container.plan_catalog(), gateway, container.product_ids())
    second, again = sync_catalog(container.plan_catalog(), gateway, container.product_ids())
    assert not second.create and not second.update and again == ids
    assert all(client_id.startswith("prod_") for client_id in ids.values())


def test_portal_configuration_sync_is_idempotent_and_names_every_session(live) -> None:  # noqa: F811
    from billing.payments.card_on_file import PaymentSettingsRequest
    from billing.payments.payment_settings_page import PageSpec, sync_page

    client, clock = live
    spec = PageSpec(default_return_url=container.settings().billing_portal_return_url)
    gateway, ids = container.stripe_gateway(), container.payment_settings_page_id()
    _, config_id = sync_page(spec, gateway, ids)
    second, again = sync_page(spec, gateway, ids)
    assert second.action == "unchanged" and again == config_id and config_id and config_id.startswith("bpc_")

    tenant_id = f"live-portal-{int(time.time())}"
    _tenant_with_customer(client, clock, tenant_id)
    page = container.card_on_file().payment_settings_session(tenant_id, PaymentSettingsRequest())
    assert page["url"].startswith("https://billing.stripe.com/")
