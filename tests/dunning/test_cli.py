"""`billing tenant status T`: the standing and the timeline, as tables or JSON."""

from __future__ import annotations

import json
from datetime import timedelta

from typer.testing import CliRunner

from billing_cli import _load, app
from tests.dunning.support import T0, invoice_event, make_tenant

_load()


def test_status_prints_the_standing_and_the_timeline(stripe):
    # Given acme failed to pay and then paid
    make_tenant("acme")
    stripe.deliver(invoice_event("evt_f", "invoice.payment_failed", "in_acme_11", "acme", T0))
    stripe.deliver(invoice_event("evt_p", "invoice.paid", "in_acme_11", "acme", T0 + timedelta(days=2)))
    runner = CliRunner()
    # When the operator asks for its status
    table = runner.invoke(app, ["tenant", "status", "acme"], env={"COLUMNS": "160"})
    as_json = runner.invoke(app, ["tenant", "status", "acme", "--json"])
    # Then both show the same history
    assert table.exit_code == 0, table.output
    assert "payment status active" in table.output and "past_due -> active" in table.output
    body = json.loads(as_json.output)
    assert body["payment_status"] == "active" and body["payment_method_on_file"] is False
    assert "no payment method on file" in table.output
    assert [(e["subject"], e["to"], e["stripe_event_id"]) for e in body["audit"]] == [
        ("in_acme_11", "past_due", "evt_f"),
        ("tenant", "past_due", "evt_f"),
        ("in_acme_11", "paid", "evt_p"),
        ("tenant", "active", "evt_p"),
    ]


def test_status_of_an_unknown_tenant_fails_cleanly(stripe):
    result = CliRunner().invoke(app, ["tenant", "status", "nobody"])
    assert result.exit_code == 1 and "unknown tenant" in result.output
