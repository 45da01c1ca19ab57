"""Live: the real invoicing code against Stripe's test mode, with test clocks for time.

Runs only when STRIPE_TEST_SECRET_KEY (an sk_test_... key) is set; skipped otherwise:

    STRIPE_TEST_SECRET_KEY=sk_test_... .venv/bin/python -m pytest tests/invoicing/test_live_stripe.py -m live_stripe

The key goes into (moto's) Secrets Manager like in production, so it reaches the SDK only through
Powertools Parameters. Each test makes its own test clock and deletes it (and with it its customers).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from billing.payments.provider import CustomerDraft
from billing.runtime import container
from billing_local.stripe_double import put_secret
from tests.invoicing.conftest import MONTH, cents, make_statement, make_tenant

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
pytestmark = [
    pytest.mark.live_stripe,
    pytest.mark.skipif(not KEY.startswith("sk_test_"), reason="STRIPE_TEST_SECRET_KEY (sk_test_...) not set"),
]


@pytest.fixture
def live(env, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import stripe

    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    monkeypatch.setenv("STRIPE_MAX_REQUESTS_PER_SECOND", "20")
    container.reset()
    put_secret(container.settings().stripe_secret_name, KEY)
    client = stripe.StripeClient(KEY, stripe_version=container.settings().stripe_api_version)
    clock = client.v1.test_helpers.test_clocks.create(
        {"frozen_time": int(time.time()), "name": "billing live test"}
    )
    try:
        yield client, clock
    finally:
        client.v1.test_helpers.test_clocks.delete(clock.id)
        container.reset()


def customer_with_card(client, clock, tenant_id: str, card: str) -> str:
    from billing.runtime.container import invoicing_service

    gateway = invoicing_service().gateway
    customer_id = gateway.create_customer(
        CustomerDraft(tenant_id, tenant_id, "", f"live:{tenant_id}:{clock.id}", test_clock=clock.id)
    ).id
    payment_method = client.v1.payment_methods.attach(card, {"customer": customer_id})
    client.v1.customers.update(
        customer_id, {"invoice_settings": {"default_payment_method": payment_method.id}}
    )
    tenant = container.tenants().get(tenant_id)
    container.tenants().save(tenant.model_copy(update={"stripe_customer_id": customer_id}))
    return customer_id


def advance(client, clock, seconds: int) -> None:
    current = client.v1.test_helpers.test_clocks.retrieve(clock.id)
    client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": current.frozen_time + seconds})
    for _ in range(60):
        if client.v1.test_helpers.test_clocks.retrieve(clock.id).status == "ready":
            return
        time.sleep(2)
    raise TimeoutError("test clock did not finish advancing")


def test_statement_becomes_a_paid_stripe_invoice_with_equal_total(live) -> None:
    from billing.runtime.container import invoicing_service

    client, clock = live
    tenant_id = f"live-{int(time.time())}"
    make_tenant(tenant_id)
    customer_with_card(client, clock, tenant_id, "pm_card_visa")
    statement = make_statement(tenant_id, ["29.00", "1.2345", "0.005", "7.777"])

    outcome = invoicing_service().invoice(tenant_id, MONTH)
    again = invoicing_service().invoice(tenant_id, MONTH)

    assert outcome.state == again.state == "paid"
    invoice = client.v1.invoices.retrieve(outcome.invoice_id)
    assert invoice.total == cents(statement) and invoice.status == "paid" and invoice.auto_advance is False
    lines = client.v1.invoices.list_lines(outcome.invoice_id, {"limit": 100})
    assert sorted(line.metadata["line_id"] for line in lines.data) == sorted(
        line.line_id for line in statement.lines
    )


def test_declined_card_is_an_outcome_and_stripe_does_not_retry_on_its_own(live) -> None:
    from billing.runtime.container import invoicing_service

    client, clock = live
    tenant_id = f"live-decline-{int(time.time())}"
    make_tenant(tenant_id)
    customer_with_card(client, clock, tenant_id, "pm_card_chargeCustomerFail")
    make_statement(tenant_id, ["49.00"])

    outcome = invoicing_service().invoice(tenant_id, MONTH)
    assert outcome.state == "payment_failed" and outcome.failure_code

    # Ten days later (test clock) Stripe has not attempted the invoice again: our dunning owns that.
    advance(client, clock, 10 * 24 * 3600)
    invoice = client.v1.invoices.retrieve(outcome.invoice_id)
    assert invoice.status == "open" and invoice.attempt_count == 1 and invoice.next_payment_attempt is None


def test_statement_below_zero_is_credited_to_the_stripe_balance_once(live) -> None:
    from billing.runtime.container import invoicing_service

    client, clock = live
    tenant_id = f"live-credit-{int(time.time())}"
    make_tenant(tenant_id)
    customer_id = customer_with_card(client, clock, tenant_id, "pm_card_visa")
    make_statement(tenant_id, ["1.00", "-5.20"])

    outcome = invoicing_service().invoice(tenant_id, MONTH)
    again = invoicing_service().invoice(tenant_id, MONTH)

    assert outcome.state == again.state == "credited" and outcome.credited_to_balance == 420
    assert client.v1.customers.retrieve(customer_id).balance == -420
    credits = client.v1.customers.balance_transactions.list(customer_id, {"limit": 10}).data
    assert [(t.amount, t.metadata["statement_id"]) for t in credits] == [(-420, f"{tenant_id}:{MONTH}")]
