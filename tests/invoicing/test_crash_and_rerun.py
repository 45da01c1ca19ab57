"""Kill the invoicing at any step and run it again: exactly one Stripe invoice per tenant-month,
each statement line on it once, total equal to the statement's.

A "crash" is Stripe failing every attempt of a step (the job fails, as a killed Lambda would), or a
response lost after Stripe acted on the request (``lost_response``). ``forget_idempotency_keys``
is a day passing, so the rerun cannot lean on Stripe's 24-hour replay and must read Stripe's state.
"""

from __future__ import annotations

import threading

import pytest
import stripe

from tests.invoicing.conftest import MONTH, Billing, cents, make_statement, make_tenant

ITEMS = r"^/v1/invoiceitems$"
CREATE = r"^/v1/invoices$"
FINALIZE = r"/finalize$"
PAY = r"/pay$"


def assert_exactly_one_invoice(billing: Billing, tenant_id: str, statement) -> dict:
    invoices = billing.stripe.invoices_for(tenant_id)
    assert len(invoices) == 1, [i["id"] for i in invoices]
    invoice = invoices[0]
    line_ids = sorted(line["metadata"]["line_id"] for line in invoice["lines"]["data"])
    assert line_ids == sorted(line.line_id for line in statement.lines)
    assert invoice["total"] == cents(statement)
    assert len(
        [i for i in billing.stripe.invoice_items.values() if i["customer"] == invoice["customer"]]
    ) == len(statement.lines)
    return invoice


@pytest.fixture
def statement(billing: Billing):
    make_tenant("acme")
    billing.service.ensure_customer("acme")
    return make_statement("acme", ["29.00", "3.333", "0.125", "7.777"])


@pytest.mark.parametrize("forget_keys", [False, True], ids=["within-24h", "after-24h"])
@pytest.mark.parametrize(
    "step,path,after,state",
    [
        ("after the draft", ITEMS, 0, "draft_created"),
        ("after some items", ITEMS, 2, "draft_created"),
        ("before finalize", FINALIZE, 0, "items_added"),
        ("after finalize", PAY, 0, "finalized"),
    ],
)
def test_failed_step_then_rerun(
    billing: Billing, statement, step: str, path: str, after: int, state: str, forget_keys: bool
) -> None:
    # Given Stripe failing every attempt of one step
    billing.stripe.add_fault("server_error", method="POST", path=path, after=after, times=-1)

    # When the job runs, it fails and the record stays at the last completed step
    with pytest.raises(stripe.StripeError):
        billing.service.invoice("acme", MONTH)
    assert billing.records.get("acme", MONTH).state == state

    # And when it runs again once Stripe is back (possibly a day later)
    billing.stripe.clear_faults()
    if forget_keys:
        billing.stripe.forget_idempotency_keys()
    outcome = billing.service.invoice("acme", MONTH)

    # Then there is exactly one paid invoice with each line once
    assert outcome.state == "paid"
    assert assert_exactly_one_invoice(billing, "acme", statement)["status"] == "paid"


@pytest.mark.parametrize("path", [CREATE, ITEMS, FINALIZE, PAY], ids=["create", "item", "finalize", "pay"])
def test_stripe_acted_but_the_response_was_lost(billing: Billing, statement, path: str) -> None:
    # Given Stripe carrying out a request but every response to it being lost
    billing.stripe.add_fault("lost_response", method="POST", path=path, times=-1)
    with pytest.raises(stripe.StripeError):
        billing.service.invoice("acme", MONTH)

    # When the job runs again after the idempotency keys expired
    billing.stripe.clear_faults()
    billing.stripe.forget_idempotency_keys()
    outcome = billing.service.invoice("acme", MONTH)

    # Then the rerun found what Stripe had done instead of doing it again
    assert outcome.state == "paid"
    invoice = assert_exactly_one_invoice(billing, "acme", statement)
    assert invoice["attempt_count"] == 1


def test_lost_record_is_recovered_from_stripe_metadata(billing: Billing, statement) -> None:
    # Given a statement invoiced and paid, then its record lost and a day passed
    billing.service.invoice("acme", MONTH)
    (invoice,) = billing.stripe.invoices_for("acme")
    billing.records.delete("acme", MONTH)
    billing.stripe.forget_idempotency_keys()
    billing.stripe.reset_requests()

    # When the job runs again
    outcome = billing.service.invoice("acme", MONTH)

    # Then it found the invoice by metadata, created and charged nothing, and rebuilt the record
    assert outcome.state == "paid" and outcome.invoice_id == invoice["id"]
    assert [r.path for r in billing.stripe.requests if r.method == "POST"] == []
    assert_exactly_one_invoice(billing, "acme", statement)
    assert billing.records.find_by_invoice_id(invoice["id"]).state == "paid"


def test_duplicate_delivery_at_the_same_time_makes_one_invoice(billing: Billing, statement) -> None:
    # Given the same job delivered twice, both copies running at once
    billing.stripe.latency_s = 0.01
    results, errors = [], []

    def run() -> None:
        try:
            results.append(billing.service.invoice("acme", MONTH))
        except Exception as exc:  # noqa: BLE001 - a lost race may fail one copy; SQS redelivers it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in errors:
        results.append(billing.service.invoice("acme", MONTH))

    # Then one invoice, charged once
    assert {r.state for r in results} == {"paid"}
    invoice = assert_exactly_one_invoice(billing, "acme", statement)
    assert invoice["attempt_count"] == 1


def test_rerun_of_a_finished_job_sends_nothing(billing: Billing, statement) -> None:
    billing.service.invoice("acme", MONTH)
    billing.stripe.reset_requests()

    outcome = billing.service.invoice("acme", MONTH)

    assert outcome.state == "paid" and billing.stripe.requests == []


def test_two_invoices_for_one_statement_fail_the_job_instead_of_guessing(billing: Billing, statement) -> None:
    # Given someone created two invoices carrying this statement's metadata, and our record was lost
    from billing.invoicing import InvoiceMismatch
    from billing.payments.provider import InvoiceDraft

    customer = billing.service.ensure_customer("acme")
    meta = {"tenant_id": "acme", "month": MONTH, "statement_id": "acme:2025-11"}
    for n in range(2):
        billing.service.gateway.create_draft_invoice(
            InvoiceDraft(customer, "usd", "manual", meta, f"manual-{n}")
        )

    # When the job runs, it refuses to pick one and names both
    with pytest.raises(InvoiceMismatch, match="2 non-void invoices"):
        billing.service.invoice("acme", MONTH)
    assert len(billing.stripe.invoices_for("acme")) == 2
