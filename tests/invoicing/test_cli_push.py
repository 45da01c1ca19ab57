"""``billing invoice push``: same code as the Lambda; ``--dry-run`` prints the exact requests."""

from __future__ import annotations

from typer.testing import CliRunner

from billing_cli import _load, app
from tests.invoicing.conftest import MONTH, Billing, make_statement, make_tenant

runner = CliRunner()


def test_dry_run_prints_the_requests_and_sends_nothing(billing: Billing) -> None:
    # Given a tenant with no Stripe customer yet and a two-line statement
    _load()
    make_tenant("acme")
    make_statement("acme", ["29.00", "1.234"])

    # When pushed with --dry-run
    result = runner.invoke(app, ["invoice", "push", "--month", MONTH, "--dry-run"])

    # Then the requests are printed, form-encoded as the SDK sends them, and Stripe saw nothing
    assert result.exit_code == 0, result.output
    out = result.output
    assert "POST /v1/customers  Idempotency-Key: customer:acme" in out
    assert "POST /v1/invoices  Idempotency-Key: acme:2025-11:invoice" in out
    assert "auto_advance=false" in out and "collection_method=charge_automatically" in out
    assert (
        "POST /v1/invoiceitems  Idempotency-Key: acme:2025-11:line:usage:2" in out and "&amount=123\n" in out
    )
    assert "POST /v1/invoices/{invoice_id}/finalize  Idempotency-Key: acme:2025-11:finalize" in out
    assert "POST /v1/invoices/{invoice_id}/pay  Idempotency-Key: acme:2025-11:pay" in out
    assert billing.stripe.requests == []


def test_push_invoices_the_month_and_is_safe_to_repeat(billing: Billing) -> None:
    # Given two tenants' statements, one of them zero
    _load()
    make_tenant("acme")
    make_statement("acme", ["29.00", "1.234"])
    make_tenant("zero")
    make_statement("zero", ["0"])

    # When pushed twice
    first = runner.invoke(app, ["invoice", "push", "--month", MONTH])
    second = runner.invoke(app, ["invoice", "push", "--month", MONTH, "--tenant", "acme"])

    # Then one invoice exists, paid, and the second run changed nothing
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "paid" in first.output and "not_sent" in first.output
    assert [i["status"] for i in billing.stripe.invoices_for()] == ["paid"]


def test_dry_run_of_a_statement_below_zero_prints_the_balance_credit(billing: Billing) -> None:
    # Given a statement below zero, for a tenant linked to its Stripe customer
    _load()
    make_tenant("owed", customer="cus_owed")
    make_statement("owed", ["1.00", "-5.20"])

    # When pushed with --dry-run
    result = runner.invoke(app, ["invoice", "push", "--month", MONTH, "--dry-run"])

    # Then the credit to the customer's balance is printed (amount negative: a credit), nothing sent
    assert result.exit_code == 0, result.output
    out = result.output
    assert "GET /v1/customers/cus_owed/balance_transactions" in out
    assert "POST /v1/customers/cus_owed/balance_transactions  Idempotency-Key: owed:2025-11:credit" in out
    assert "amount=-420" in out and "/v1/invoices" not in out
    assert billing.stripe.requests == []
