"""How Stripe's failures reach the job: transient ones are retried with the same idempotency key,
card declines are outcomes, invalid requests fail the job."""

from __future__ import annotations

import pytest
import stripe

from billing.runtime import container
from tests.invoicing.conftest import MONTH, Billing, make_statement, make_tenant


@pytest.fixture
def acme(billing: Billing):
    make_tenant("acme")
    billing.service.ensure_customer("acme")
    billing.stripe.reset_requests()
    return make_statement("acme", ["49.99", "0.015"])


@pytest.mark.parametrize("kind,status", [("rate_limit", 429), ("server_error", 500), ("timeout", 0)])
def test_transient_failures_are_retried_with_the_same_key(
    billing: Billing, acme, kind: str, status: int
) -> None:
    # Given Stripe failing the invoice creation twice
    billing.stripe.add_fault(kind, method="POST", path=r"^/v1/invoices$", times=2)

    # When the job runs
    outcome = billing.service.invoice("acme", MONTH)

    # Then it succeeded on the third attempt, which carried the same idempotency key
    assert outcome.state == "paid"
    creates = [r for r in billing.stripe.requests if r.method == "POST" and r.path == "/v1/invoices"]
    assert [r.status for r in creates] == [status, status, 200]
    assert {r.idempotency_key for r in creates} == {"acme:2025-11:invoice"}
    assert len(billing.stripe.invoices_for("acme")) == 1


def test_card_decline_is_an_outcome_not_an_error(billing: Billing, acme) -> None:
    # Given the tenant's card declines
    billing.stripe.decline(tenant_id="acme", decline_code="insufficient_funds")

    # When the job runs
    outcome = billing.service.invoice("acme", MONTH)

    # Then the job completed: the invoice is open and the failure is recorded for dunning
    assert outcome.state == "payment_failed" and outcome.failure_code == "insufficient_funds"
    record = billing.records.get("acme", MONTH)
    assert record.invoice_status == "open" and record.payment_succeeded is False
    assert "insufficient funds" in record.failure_message
    # and Stripe would tell the webhook handler, with our metadata on the invoice
    (failed,) = billing.stripe.events_of("invoice.payment_failed")
    assert failed["data"]["object"]["metadata"]["statement_id"] == "acme:2025-11"
    assert failed["data"]["object"]["id"] == record.invoice_id
    # and a rerun of the job does not charge again (dunning owns later attempts)
    billing.service.invoice("acme", MONTH)
    assert billing.stripe.invoices_for("acme")[0]["attempt_count"] == 1


def test_pay_invoice_reports_declines_for_dunning(billing: Billing, acme) -> None:
    # Given an open invoice whose first charge failed
    billing.stripe.decline(tenant_id="acme")
    billing.service.invoice("acme", MONTH)
    invoice_id = billing.records.get("acme", MONTH).invoice_id
    gateway = billing.service.gateway

    # When dunning retries with its own key, first still declined, then with a working card
    first = gateway.pay_invoice(invoice_id, idempotency_key=f"{invoice_id}:retry:1")
    billing.stripe.clear_declines()
    second = gateway.pay_invoice(invoice_id, idempotency_key=f"{invoice_id}:retry:2")
    again = gateway.pay_invoice(invoice_id, idempotency_key=f"{invoice_id}:retry:3")

    # Then each attempt is a value
    assert (first.succeeded, first.invoice_status, first.failure_code) == (
        False,
        "open",
        "insufficient_funds",
    )
    assert (second.succeeded, second.invoice_status) == (True, "paid")
    assert (again.succeeded, again.invoice_status) == (True, "paid")  # already paid: nothing charged


def test_invalid_request_fails_the_job(billing: Billing) -> None:
    # Given a tenant whose stored customer does not exist at Stripe
    make_tenant("broken", customer="cus_doesnotexist")
    make_statement("broken", ["10.00"])

    # When the job runs, Stripe refuses the request and the job fails (SQS retries, then the DLQ)
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        billing.service.invoice("broken", MONTH)

    # And nothing was retried: an invalid request does not become valid by repeating it
    reads = [r for r in billing.stripe.requests if r.path == "/v1/customers/cus_doesnotexist"]
    assert [r.status for r in reads] == [404]


def test_the_secret_key_comes_from_secrets_manager(billing: Billing, acme) -> None:
    # Given the key stored under the configured secret name (put there by the fixture)
    from billing.runtime.container import stripe_gateway

    # When the gateway is built, it authenticates with that key
    gateway = stripe_gateway()
    assert gateway.client._requestor._options.api_key == "sk_test_double_000000000000"
    assert gateway.client._requestor._options.stripe_version == container.settings().stripe_api_version


@pytest.mark.parametrize(
    "error, outage",
    [
        (stripe.APIConnectionError("timed out"), True),
        (stripe.APIError("boom", http_status=500), True),
        (stripe.APIError("bad gateway", http_status=502), True),
        (stripe.RateLimitError("slow down", http_status=429), True),
        (stripe.IdempotencyError("in flight", http_status=409), True),
        (stripe.InvalidRequestError("No such customer", "customer", http_status=404), False),
        (stripe.InvalidRequestError("bad param", "x", http_status=400), False),
        (stripe.CardError("declined", None, "card_declined", http_status=402), False),
        (ValueError("not stripe"), False),
    ],
)
def test_what_reaches_an_http_caller_as_a_503_is_stripe_failing_not_the_request(error, outage) -> None:
    # Given an error the Stripe adapter let through (it retried the transient ones already)
    from billing.kernel.errors import is_backing_service_failure

    # Then only Stripe failing (no answer, 5xx, 429, 409) is a backing-service failure (503, Retry-After)
    assert is_backing_service_failure(error) is outage
