"""A statement becomes exactly one charged Stripe invoice whose total equals the statement's."""

from __future__ import annotations

from dataclasses import replace

from billing.runtime import container
from tests.invoicing.conftest import MONTH, Billing, Published, cents, make_statement, make_tenant


def test_statement_is_invoiced_itemized_finalized_and_charged(billing: Billing) -> None:
    # Given a tenant without a Stripe customer and its stored statement of three lines
    make_tenant("acme")
    statement = make_statement("acme", ["29.00", "12.3449", "0.005"])

    # When the invoicing job runs
    outcome = billing.service.invoice("acme", MONTH)

    # Then one paid Stripe invoice holds each line once, in cents, and its total is the statement's
    assert outcome.state == "paid"
    invoices = billing.stripe.invoices_for("acme")
    assert len(invoices) == 1
    invoice = invoices[0]
    assert invoice["status"] == "paid" and invoice["total"] == cents(statement) == 4135
    assert invoice["auto_advance"] is False and invoice["collection_method"] == "charge_automatically"
    assert invoice["metadata"] == {
        "tenant_id": "acme",
        "month": MONTH,
        "statement_id": "acme:2025-11",
        "is_final": "false",
    }
    lines = {line["metadata"]["line_id"]: line["amount"] for line in invoice["lines"]["data"]}
    assert lines == {"usage:1": 2900, "usage:2": 1234, "usage:3": 1}
    # and the tenant now carries its Stripe customer, the record the Stripe ids
    tenant = container.tenants().get("acme")
    assert tenant.stripe_customer_id == invoice["customer"]
    record = billing.records.get("acme", MONTH)
    assert record.state == "paid" and record.invoice_id == invoice["id"] and record.stripe_total == 4135
    assert billing.records.find_by_invoice_id(invoice["id"]).tenant_id == "acme"


def test_every_post_carries_a_key_derived_from_the_statement(billing: Billing) -> None:
    # Given a tenant with a customer already and a two-line statement
    make_tenant("beta")
    billing.service.ensure_customer("beta")
    make_statement("beta", ["10", "2.5"])
    billing.stripe.reset_requests()

    # When it is invoiced
    billing.service.invoice("beta", MONTH)

    # Then each POST used the key of its step, and the pinned API version
    posts = [
        (r.path.rsplit("/", 1)[-1], r.idempotency_key) for r in billing.stripe.requests if r.method == "POST"
    ]
    assert [key for _, key in posts] == [
        "beta:2025-11:invoice",
        "beta:2025-11:line:usage:1",
        "beta:2025-11:line:usage:2",
        "beta:2025-11:finalize",
        "beta:2025-11:pay",
    ]
    assert {r.stripe_version for r in billing.stripe.requests} == {container.settings().stripe_api_version}


def test_zero_total_statement_is_never_sent(billing: Billing) -> None:
    # Given a statement whose lines round to nothing
    make_tenant("trial")
    make_statement("trial", ["0", "0.004"])

    # When the job runs
    outcome = billing.service.invoice("trial", MONTH)

    # Then Stripe received no request at all and the record says why
    assert outcome.state == "not_sent"
    assert billing.stripe.requests == []
    assert billing.records.get("trial", MONTH).reason == "zero total"


def credit_posts(billing: Billing) -> list:
    return [
        r for r in billing.stripe.requests if r.method == "POST" and r.path.endswith("/balance_transactions")
    ]


def test_a_statement_below_zero_is_credited_to_the_customers_balance_once(billing: Billing) -> None:
    # Given a statement whose total is below zero (a late adjustment lowered a charge already billed)
    make_tenant("owed")
    make_statement("owed", ["1.00", "-5.20"])
    billing.service.notices = published = Published()

    # When the job runs, and runs again
    outcome = billing.service.invoice("owed", MONTH)
    again = billing.service.invoice("owed", MONTH)

    # Then the 4.20 owed is credited once to the customer's Stripe balance, and no invoice is made
    assert outcome.state == again.state == "credited" and outcome.credited_to_balance == 420
    assert billing.stripe.customer_for("owed")["balance"] == -420
    assert billing.stripe.invoices_for("owed") == []
    (post,) = credit_posts(billing)
    assert post.params["amount"] == "-420" and post.params["metadata"]["statement_id"] == "owed:2025-11"
    assert post.idempotency_key == "owed:2025-11:credit"
    record = billing.records.get("owed", MONTH)
    assert record.balance_transaction_id.startswith("cbtxn_") and "credited" in record.reason
    (notice,) = published.notices  # the SaaS can tell the tenant about its credit
    assert notice.kind == "balance_credited" and notice.detail()["amount_due"] == -420

    # And the next month's invoice is its statement less the credit: Stripe takes it off at finalization
    make_statement("owed", ["10.00"], month="2025-12")
    following = billing.service.invoice("owed", "2025-12")
    (invoice,) = billing.stripe.invoices_for("owed")
    assert following.state == "paid" and following.stripe_total == invoice["total"] == 1000
    assert invoice["amount_due"] == invoice["amount_paid"] == 580
    assert billing.stripe.customer_for("owed")["balance"] == 0


def test_a_credit_made_by_a_run_that_died_before_saving_is_not_made_again(billing: Billing) -> None:
    # Given a run credited the balance and died before its record said so (the key long expired)
    make_tenant("owed2", customer=None)
    statement = make_statement("owed2", ["-3.00"])
    service = billing.service
    customer_id, _ = service.customers.link("owed2")
    draft = service.drafts.credit_draft(statement, customer_id, 300)
    service.gateway.credit_balance(replace(draft, idempotency_key="expired-key"))

    # When the job runs again
    outcome = service.invoice("owed2", MONTH)

    # Then it finds that credit by its metadata and makes no second one
    assert outcome.state == "credited" and len(credit_posts(billing)) == 1
    assert billing.stripe.customer_for("owed2")["balance"] == -300


def test_final_statement_is_invoiced_like_any_other(billing: Billing) -> None:
    make_tenant("gone")
    make_statement("gone", ["13.37"], is_final=True)

    outcome = billing.service.invoice("gone", MONTH)

    assert outcome.state == "paid"
    (invoice,) = billing.stripe.invoices_for("gone")
    assert invoice["metadata"]["is_final"] == "true" and invoice["description"].startswith("Final statement")


def test_plan_product_is_named_through_an_inline_price(billing: Billing, monkeypatch) -> None:
    # Given plans whose starter plan has a Stripe product
    import yaml

    catalog = yaml.safe_load(container.settings().plans_path.read_text())
    for plan in catalog["plans"]:
        if plan["id"] == "starter":
            plan["stripe_product_id"] = "prod_starter"
    path = billing.env.settings.plans_path.parent.parent / "__never__"  # placeholder, replaced below
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "plans.yaml"
    path.write_text(yaml.safe_dump(catalog))
    monkeypatch.setenv("PLANS_PATH", str(path))
    container.reset()
    make_tenant("prod")
    make_statement("prod", ["29", "1.01"])

    # When invoiced
    billing.service.invoice("prod", MONTH)

    # Then the items name the product, and the amounts are unchanged
    (invoice,) = billing.stripe.invoices_for("prod")
    assert invoice["total"] == 3001
    item_posts = [
        r.params for r in billing.stripe.requests if r.path == "/v1/invoiceitems" and r.method == "POST"
    ]
    assert all(p["price_data"]["product"] == "prod_starter" and p["quantity"] == "1" for p in item_posts)
