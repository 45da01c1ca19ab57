"""Signup creates the Stripe customer once; existing tenants get one at their first invoice."""

from __future__ import annotations

from billing.runtime import container
from billing.tenants.requests import SignupRequest
from tests.invoicing.conftest import MONTH, Billing, make_statement


def signup(tenant_id: str, billing: Billing | None = None) -> None:
    if billing is not None:
        billing.stripe.card_at_signup(tenant_id)  # the tenant saves a card right after signup
    request = SignupRequest(
        id=tenant_id,
        name="Acme Corp",
        email="billing@acme.example",
        plan="starter",
        effective_at="2025-11-01T00:00:00Z",
    )
    container.tenant_service().signup(request)


def test_signup_creates_the_customer_exactly_once_even_when_retried(billing: Billing) -> None:
    # When the same signup arrives three times
    for _ in range(3):
        signup("acme")

    # Then Stripe has one customer for the tenant, with its name, email and id, stored on the tenant
    customers = [c for c in billing.stripe.customers.values() if c["metadata"].get("tenant_id") == "acme"]
    assert len(customers) == 1
    assert (customers[0]["name"], customers[0]["email"]) == ("Acme Corp", "billing@acme.example")
    assert container.tenants().get("acme").stripe_customer_id == customers[0]["id"]
    assert len([r for r in billing.stripe.requests if r.method == "POST" and r.path == "/v1/customers"]) == 1


def test_signup_succeeds_while_stripe_is_down_and_the_first_invoice_creates_the_customer(
    billing: Billing,
) -> None:
    # Given Stripe failing every request during the signup
    billing.stripe.add_fault("server_error", times=-1)
    signup("acme", billing)
    assert container.tenants().get("acme").stripe_customer_id is None

    # When Stripe is back and the tenant's first statement is invoiced
    billing.stripe.clear_faults()
    make_statement("acme", ["29.00"])
    outcome = billing.service.invoice("acme", MONTH)

    # Then the customer was created then, once, and charged
    customers = [c for c in billing.stripe.customers.values() if c["metadata"].get("tenant_id") == "acme"]
    assert len(customers) == 1 and outcome.state == "paid"
    assert container.tenants().get("acme").stripe_customer_id == customers[0]["id"]
