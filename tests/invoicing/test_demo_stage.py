"""The demo stage pushes the closed month to the Stripe double and shows equal totals."""

from __future__ import annotations

from rich.console import Console

from billing_cli.demo import invoicing as demo_invoicing
from tests.invoicing.conftest import MONTH, Billing, make_statement, make_tenant


def test_demo_stage_invoices_the_month(billing: Billing, monkeypatch) -> None:
    # Given four closed statements, one of them zero
    monkeypatch.setenv("STRIPE_API_BASE", billing.stripe.api_base)  # restored after the stage moves it
    statements = {"acme": ["29", "4.4449"], "beta": ["99", "0.005"], "gamma": ["10"], "zero": ["0"]}
    for tenant_id, amounts in statements.items():
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

    # Then three invoices exist, totals equal, one card declined, one tenant without a card was
    # sent its invoice, the others saved theirs through the setup flow; pushing again sent nothing
    text = console.export_text()
    assert result["invoices"] == 3 and result["equal"] == 4 and result["declined"] == "beta"
    assert result["no_card"] == "gamma"
    assert "Stripe totals equal statement totals: 4/4" in text
    assert "pushed again: 0 Stripe requests" in text
    assert {i["status"] for i in double.invoices_for()} == {"paid", "open"}
    by_tenant = {i["metadata"]["tenant_id"]: i for i in double.invoices_for()}
    assert by_tenant["gamma"]["collection_method"] == "send_invoice"
    assert by_tenant["acme"]["collection_method"] == "charge_automatically"
    assert len(double.checkout_sessions) == 2 and all(
        s["status"] == "complete" for s in double.checkout_sessions.values()
    )
