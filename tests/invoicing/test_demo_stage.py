"""The demo stage pushes the closed month to the Stripe double and shows equal totals."""

from __future__ import annotations

from rich.console import Console

from billing_cli.demo import invoicing as demo_invoicing
from tests.invoicing.conftest import MONTH, Billing, make_statement, make_tenant


def test_demo_stage_invoices_the_month(billing: Billing, monkeypatch) -> None:
    # Given three closed statements, one of them zero
    monkeypatch.setenv("STRIPE_API_BASE", billing.stripe.api_base)  # restored after the stage moves it
    for tenant_id, amounts in {"acme": ["29", "4.4449"], "beta": ["99", "0.005"], "zero": ["0"]}.items():
        make_tenant(tenant_id)
        make_statement(tenant_id, amounts)
    console = Console(record=True, width=160)

    # When the stage runs
    try:
        result = demo_invoicing.run(console, MONTH)
        double = demo_invoicing.current_double()
    finally:
        if demo_invoicing._running:
            demo_invoicing._running.pop().stop()

    # Then two invoices exist, totals equal, one card declined, and pushing again sent nothing
    text = console.export_text()
    assert result["invoices"] == 2 and result["equal"] == 3 and result["declined"] == "beta"
    assert "Stripe totals equal statement totals: 3/3" in text
    assert "pushed again: 0 Stripe requests" in text
    assert {i["status"] for i in double.invoices_for()} == {"paid", "open"}
