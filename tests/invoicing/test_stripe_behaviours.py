"""The project against the Stripe behaviours the double now has: replayed 500s, 429 lock timeouts,
rate limits per endpoint, search lag, idempotency keys that follow what is sent, the 250-item limit,
and a tenant without a payment method."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.invoicing import TERMINAL
from billing.invoicing.records import TooManyLines
from billing.runtime import container
from billing_local.stripe_double import RateLimits, StripeDouble
from tests.invoicing.conftest import MONTH, Billing, Published, make_statement, make_tenant


@pytest.mark.parametrize("took_effect", [False, True], ids=["nothing-created", "created-then-failed"])
def test_a_replayed_500_is_recovered_by_metadata_or_a_derived_key(
    billing: Billing, took_effect: bool
) -> None:
    # Given Stripe saving a 500 under the invoice-creation key (which it replays to every retry)
    make_tenant("acme")
    make_statement("acme", ["49.99", "0.01"])
    billing.stripe.add_fault(
        "saved_server_error", method="POST", path="^/v1/invoices$", took_effect=took_effect
    )

    # When the job runs
    outcome = billing.service.invoice("acme", MONTH)

    # Then it got past the replay: exactly one invoice, paid
    assert outcome.state == "paid"
    assert len(billing.stripe.invoices_for("acme", include_void=False)) == 1
    keys = [
        r.idempotency_key for r in billing.stripe.requests if r.path == "/v1/invoices" and r.method == "POST"
    ]
    if took_effect:  # found by its metadata: no new key needed
        assert keys == ["acme:2025-11:invoice", "acme:2025-11:invoice"]
    else:  # nothing there: a key derived from the old one
        assert keys == ["acme:2025-11:invoice", "acme:2025-11:invoice", "acme:2025-11:invoice:a1"]


@pytest.mark.parametrize("path", [r"/finalize$", r"/pay$", r"^/v1/invoiceitems$"])
def test_replayed_500s_of_later_steps_are_recovered(billing: Billing, path: str) -> None:
    # Given a saved 500 on a later step, once after doing its work and once without
    make_tenant("acme")
    make_statement("acme", ["49.99", "0.01"])
    billing.stripe.add_fault("saved_server_error", method="POST", path=path, took_effect=True)

    # When the job runs
    outcome = billing.service.invoice("acme", MONTH)

    # Then the invoice is right: two lines, paid once
    (invoice,) = billing.stripe.invoices_for("acme")
    assert outcome.state == "paid" and invoice["status"] == "paid"
    assert len(invoice["lines"]["data"]) == 2 and invoice["attempt_count"] == 1


def test_lock_timeouts_are_429s_and_are_retried(billing: Billing) -> None:
    # Given the invoice locked by another Stripe process when we pay it
    make_tenant("acme")
    make_statement("acme", ["10.00"])
    billing.stripe.add_fault("lock_timeout", method="POST", path=r"/pay$", times=2)

    # When the job runs, then it waits and pays under the same key
    assert billing.service.invoice("acme", MONTH).state == "paid"
    pays = [r for r in billing.stripe.requests if r.path.endswith("/pay")]
    assert [r.status for r in pays] == [429, 429, 200] and len({r.idempotency_key for r in pays}) == 1


def test_a_parallel_month_stays_under_stripes_per_endpoint_and_account_limits(
    env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Stripe enforcing 10/s per endpoint and 25/s per account, and our limits set below them
    # (a loaded 2-core machine can bunch requests that left on time)
    from aws_lambda_powertools.utilities import parameters

    from billing_local.stripe_double import put_secret

    limits = RateLimits(global_per_s=25, endpoint_per_s=10, search_per_s=10)
    with StripeDouble(rate_limits=limits) as double:
        for key, value in {
            "STRIPE_API_BASE": double.api_base,
            "STRIPE_MAX_REQUESTS_PER_SECOND": "20",
            "STRIPE_ENDPOINT_REQUESTS_PER_SECOND": "8",
            "STRIPE_SEARCH_REQUESTS_PER_SECOND": "10",
            "STRIPE_RETRY_BASE_DELAY_S": "0.01",
        }.items():
            monkeypatch.setenv(key, value)
        container.reset()
        put_secret(container.settings().stripe_secret_name)
        parameters.clear_caches()
        for n in range(6):
            tenant = f"t{n}"
            double.card_at_signup(tenant)
            make_tenant(tenant, card=False)
            make_statement(tenant, ["10.00", "1.00", "0.50"])

        # When six statements (three items each) are invoiced by eight threads
        outcomes = container.invoicing_service().push(MONTH, workers=8)

        # Then all are paid and Stripe never answered 429
        assert {o.state for o in outcomes} == {"paid"}
        # (a loaded machine may still bunch a pair of requests past Stripe's window: retried)
        assert sum(r.status == 429 for r in double.requests) <= 2
        items = [r.at for r in double.requests if r.path == "/v1/invoiceitems" and r.method == "POST"]
        assert len(items) >= 18
    container.reset()


def test_read_after_write_never_depends_on_search(billing: Billing) -> None:
    # Given a customer created a moment ago (search does not see it yet) and its id not yet stored
    make_tenant("acme")
    first = billing.service.ensure_customer("acme")
    tenant = container.tenants().get("acme")
    container.tenants().save(tenant.model_copy(update={"stripe_customer_id": None}))

    # When the customer is ensured again at once
    second = billing.service.ensure_customer("acme")

    # Then it is the same customer (the idempotent create replayed it), never a second one
    assert second == first and len(billing.stripe.customers) == 1


def test_a_changed_email_under_the_same_customer_key_is_no_400(billing: Billing) -> None:
    # Given a customer created, its id lost before it was stored, then the tenant's email changed
    make_tenant("acme")
    billing.service.ensure_customer("acme")
    tenant = container.tenants().get("acme")
    container.tenants().save(
        tenant.model_copy(update={"stripe_customer_id": None, "email": "new@acme.example"})
    )

    # When the customer is ensured again, then Stripe is sent another key (no idempotency_error)
    assert billing.service.ensure_customer("acme")
    statuses = {r.status for r in billing.stripe.requests if r.path == "/v1/customers"}
    assert statuses == {200}


def test_a_statement_over_250_lines_is_refused_before_anything_is_sent(billing: Billing) -> None:
    # Given a statement of 251 lines
    make_tenant("acme")
    make_statement("acme", [Decimal("0.01")] * 251)
    billing.stripe.reset_requests()

    # When the job runs, then it fails naming the field, and Stripe received nothing
    with pytest.raises(TooManyLines) as refused:
        billing.service.invoice("acme", MONTH)
    assert refused.value.details == [{"field": "lines", "reason": "more than 250 lines"}]
    assert billing.stripe.requests == []


def test_a_tenant_without_a_payment_method_is_sent_its_invoice_with_a_due_date(billing: Billing) -> None:
    # Given a tenant that never saved a card
    make_tenant("acme", card=False)
    make_statement("acme", ["49.99"])

    # When the job runs
    outcome = billing.service.invoice("acme", MONTH)

    # Then no charge was attempted: the invoice is sent (hosted page, due in 14 days), still open
    assert outcome.state == "sent" and outcome.state in TERMINAL
    (invoice,) = billing.stripe.invoices_for("acme")
    assert invoice["collection_method"] == "send_invoice" and invoice["status"] == "open"
    assert invoice["due_date"] - invoice["status_transitions"]["finalized_at"] == 14 * 86400
    assert not [r for r in billing.stripe.requests if r.path.endswith("/pay")]
    assert billing.stripe.events_of("invoice.sent")
    record = billing.records.get("acme", MONTH)
    assert record.hosted_invoice_url and record.collection_method == "send_invoice"
    # and a rerun sends nothing more
    before = len(billing.stripe.requests)
    billing.service.invoice("acme", MONTH)
    assert len(billing.stripe.requests) == before


def test_many_tenants_without_cards_are_each_sent_one_invoice(billing: Billing) -> None:
    # Given three tenants without cards, their jobs delivered twice at once
    for n in range(3):
        make_tenant(f"t{n}", card=False)
        make_statement(f"t{n}", ["5.00"])
    with ThreadPoolExecutor(6) as pool:
        outcomes = list(
            pool.map(lambda t: billing.service.invoice(t, MONTH), [f"t{n % 3}" for n in range(6)])
        )

    # Then each has one sent invoice
    assert {o.state for o in outcomes} == {"sent"}
    for n in range(3):
        assert len(billing.stripe.invoices_for(f"t{n}")) == 1


def test_a_statement_below_stripes_minimum_charge_is_carried_to_the_next_invoice(billing: Billing) -> None:
    # Given acme (a card on file) owes 0.30 for October, under Stripe's 0.50 USD minimum charge
    make_tenant("acme")
    make_statement("acme", ["0.30"], month="2025-10")
    # When October is invoiced
    october = billing.service.invoice("acme", "2025-10")
    # Then Stripe marked the invoice paid without charging it and moved the 30 cents to the customer's
    # balance; the record says so instead of claiming a payment
    (invoice,) = billing.stripe.invoices_for("acme")
    assert (invoice["status"], invoice["total"], invoice["amount_paid"]) == ("paid", 30, 0)
    assert billing.stripe.customer_for("acme")["balance"] == 30
    assert october.state == "carried" and october.state in TERMINAL
    record = billing.records.get("acme", "2025-10")
    assert record.carried_to_balance == 30 and record.payment_succeeded is False
    assert not [r for r in billing.stripe.requests if r.path.endswith("/pay")]

    # When November's 49.99 is invoiced
    make_statement("acme", ["49.99"], month="2025-11")
    november = billing.service.invoice("acme", "2025-11")
    # Then the invoice still totals our statement to the cent, and the charge collects both months
    assert november.state == "paid"
    invoice = billing.stripe.invoices_for("acme")[-1]
    assert (invoice["total"], invoice["starting_balance"], invoice["amount_due"]) == (4999, 30, 5029)
    assert invoice["amount_paid"] == 5029 and billing.stripe.customer_for("acme")["balance"] == 0
    assert billing.records.get("acme", "2025-11").stripe_total == 4999


def test_a_final_statement_below_the_minimum_is_left_on_the_balance_and_says_so(billing: Billing) -> None:
    # Given gone (cancelled) owes 0.30 on its final statement, under Stripe's 0.50 USD minimum
    make_tenant("gone")
    make_statement("gone", ["0.30"], is_final=True)
    billing.service.notices = published = Published()
    # When it is invoiced
    outcome = billing.service.invoice("gone", MONTH)
    # Then the 30 cents stay on the customer's balance, the record says no later invoice will
    # collect them, and the operator gets a notice to act on
    assert outcome.state == "carried" and billing.stripe.customer_for("gone")["balance"] == 30
    assert "no later invoice will collect it" in billing.records.get("gone", MONTH).reason
    (notice,) = published.notices
    assert notice.kind == "final_balance_left" and notice.invoice_id == outcome.invoice_id
    assert notice.detail()["amount_due"] == 30 and notice.detail()["month"] == MONTH


def test_lists_are_read_to_their_last_page(billing: Billing) -> None:
    # Given a customer with 105 balance credits and a draft invoice with 105 items (Stripe lists
    # 100 at most a page)
    from billing.payments.provider import BalanceCreditDraft, InvoiceDraft, ItemDraft

    make_tenant("pages")
    gateway = billing.service.gateway
    customer_id, _ = billing.service.customers.link("pages")
    for n in range(105):
        gateway.credit_balance(
            BalanceCreditDraft(customer_id, "usd", 1, f"credit {n}", {"statement_id": f"s{n}"}, f"credit-{n}")
        )
    invoice = gateway.create_draft_invoice(InvoiceDraft(customer_id, "usd", "pages", {}, "pages-invoice"))
    for n in range(105):
        gateway.add_invoice_item(
            ItemDraft(
                customer_id,
                invoice.id,
                "usd",
                1,
                f"item {n}",
                datetime(2025, 11, 1, tzinfo=UTC),
                datetime(2025, 12, 1, tzinfo=UTC),
                {"line_id": f"l{n}"},
                f"pages-item-{n}",
            )
        )

    # When the oldest credit is looked for and the items are listed
    oldest = gateway.find_balance_credit(customer_id, "statement_id", "s0")
    items = gateway.list_invoice_items(invoice.id)

    # Then both reach past the first page
    assert oldest is not None and oldest.startswith("cbtxn_")
    assert sorted(i.line_id for i in items) == sorted(f"l{n}" for n in range(105))
    assert len({r.params.get("starting_after") for r in billing.stripe.requests if r.method == "GET"}) > 2


def test_a_long_balance_credit_description_is_cut_to_stripes_350_characters(billing: Billing) -> None:
    # Given a customer and a credit whose description is longer than Stripe allows on a balance transaction
    from billing.payments.provider import BalanceCreditDraft

    make_tenant("acme")
    customer_id = billing.service.ensure_customer("acme")
    draft = BalanceCreditDraft(
        customer_id=customer_id,
        currency="usd",
        amount=700,
        description="Credit from statement " + "x" * 400,
        metadata={"tenant_id": "acme", "statement_id": "acme:2025-11"},
        idempotency_key="acme:2025-11:credit",
    )

    # When it is credited
    txn_id = container.stripe_gateway().credit_balance(draft)

    # Then Stripe accepted it with the description cut to 350 characters
    txn = billing.stripe.balance_transactions[txn_id]
    assert txn["amount"] == -700 and txn["description"] == draft.description[:350]


def test_our_rate_limiter_gives_each_endpoint_its_own_bucket_and_folds_only_ids() -> None:
    from billing.adapters.stripe.http import StripeRateLimits, endpoint_of

    # Given our limiter and requests whose path words have underscores like Stripe's ids
    limits = StripeRateLimits(100, 25, 20)
    api = "https://api.stripe.com"

    def bucket(method: str, path: str):
        return limits.for_endpoint(endpoint_of(method, api + path))

    # Then only object ids are folded into the endpoint's name
    assert endpoint_of("get", api + "/v1/setup_intents/seti_1Abc") == "GET /v1/setup_intents/{id}"
    assert endpoint_of("post", api + "/v1/billing_portal/sessions") == "POST /v1/billing_portal/sessions"
    assert (
        endpoint_of("get", api + "/v1/customers/cus_1/balance_transactions?limit=100")
        == "GET /v1/customers/{id}/balance_transactions"
    )
    assert endpoint_of("get", api + "/v1/checkout/sessions/cs_test_a1") == "GET /v1/checkout/sessions/{id}"
    # and different endpoints never share a bucket, while one endpoint's ids do
    assert bucket("get", "/v1/setup_intents/seti_1") is not bucket("get", "/v1/payment_methods/pm_1")
    assert bucket("get", "/v1/setup_intents") is not bucket("get", "/v1/payment_methods")
    assert bucket("post", "/v1/billing_portal/sessions") is not bucket(
        "post", "/v1/billing_portal/configurations"
    )
    assert bucket("post", "/v1/invoices/in_1/mark_uncollectible") is not bucket(
        "post", "/v1/invoices/in_1/void"
    )
    assert bucket("get", "/v1/setup_intents/seti_1") is bucket("get", "/v1/setup_intents/seti_2")


def test_a_final_statement_under_stripes_minimum_for_its_currency_says_which_minimum(
    billing: Billing,
) -> None:
    # Given gone (cancelled) owes 10.00 CZK on its final statement, under Stripe's 15.00 CZK minimum
    make_tenant("gone")
    statement = make_statement("gone", ["10.00"], is_final=True, store=False)
    assert container.statements().put_if_absent(statement.model_copy(update={"currency": "czk"}))
    billing.service.notices = published = Published()

    # When it is invoiced
    outcome = billing.service.invoice("gone", MONTH)

    # Then Stripe charged nothing and kept the 1000 minor units on the balance; the record names the
    # minimum it fell under, and the operator is told
    (invoice,) = billing.stripe.invoices_for("gone")
    assert (invoice["currency"], invoice["status"], invoice["amount_paid"]) == ("czk", "paid", 0)
    assert outcome.state == "carried" and billing.stripe.customer_for("gone")["balance"] == 1000
    reason = billing.records.get("gone", MONTH).reason
    assert reason.startswith("below Stripe's minimum charge of 15.00 CZK: 1000 minor units")
    assert [n.kind for n in published.notices] == ["final_balance_left"]
