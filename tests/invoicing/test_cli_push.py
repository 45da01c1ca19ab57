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
