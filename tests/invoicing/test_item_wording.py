"""The Stripe invoice items a customer reads: each line's words, quantity 1 at the line's amount, and
the line's audit data in the item's metadata within Stripe's limits."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.kernel.periods import Month
from billing.rating.usage import MonthUsage, Usage
from billing.rating.wording import DESCRIPTION_LIMIT
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment
from tests.invoicing.conftest import MONTH, Billing, make_tenant


def test_items_carry_the_customers_words_and_the_lines_audit_data(billing: Billing) -> None:
    # Given a tenant on Starter that moved to Pro on 16 November, with its month rated and stored
    tenant = make_tenant("acme")
    moved = tenant.model_copy(
        update={
            "plans": [
                *tenant.plans,
                PlanAssignment(plan="pro", effective_at=datetime(2025, 11, 16, tzinfo=UTC)),
            ]
        }
    )
    usage = Usage(events=2238, queries=1200, tokens=8_750_000, cost_usd=Decimal("24.473982723"))
    statement = container.rater().rate(moved, Month.parse(MONTH), MonthUsage((Usage(), usage), usage))
    assert container.statements().put_if_absent(statement)

    # When it is invoiced
    outcome = billing.service.invoice("acme", MONTH)

    # Then each item reads as its line, with quantity 1 at the line's amount in cents
    assert outcome.state == "paid"
    posts = {
        r.params["metadata"]["line_id"]: r.params
        for r in billing.stripe.requests
        if r.path == "/v1/invoiceitems" and r.method == "POST"
    }
    assert {k: p["description"] for k, p in posts.items()} == {
        "base:starter:1": "Starter plan, 1-15 Nov 2025 (prorated, 15 of 30 days)",
        "base:pro:1": "Pro plan, 16-30 Nov 2025 (prorated, 15 of 30 days)",
        "queries:pro:t1": "Queries 1-10,000 at $0.008 (1,200 queries)",
        "usage": "Usage at list prices: 2,238 requests, 8.75M tokens",
    }
    for line in statement.lines:
        params = posts[line.line_id]
        amount = int(params.get("amount") or params["price_data"]["unit_amount"])
        assert amount == int(line.amount * 100) and params.get("quantity", "1") == "1"
        assert len(params["description"]) <= DESCRIPTION_LIMIT
        # And the metadata names the statement and keeps what an auditor checks the line by
        meta = params["metadata"]
        assert len(meta) <= 50 and all(len(k) <= 40 and len(v) <= 500 for k, v in meta.items())
        assert meta["statement_id"] == "acme:2025-11" and meta["kind"] == line.kind
        assert Decimal(meta["amount_exact"]) == line.amount_exact
        assert Decimal(meta["quantity"]) == line.quantity
    base = posts["base:pro:1"]["metadata"]
    assert (base["prorated_seconds"], base["month_seconds"]) == ("1296000", "2592000")
    assert (base["period_start"], base["period_end"]) == ("2025-11-16T00:00:00Z", "2025-12-01T00:00:00Z")
    assert Decimal(base["amount_exact"]) == Decimal("49.5")
    assert "prorated_seconds" not in posts["usage"]["metadata"]
    # And the invoice Stripe holds shows those words on its lines
    (invoice,) = billing.stripe.invoices_for("acme")
    assert invoice["total"] == int(statement.total * 100)
    assert sorted(l["description"] for l in invoice["lines"]["data"]) == sorted(
        p["description"] for p in posts.values()
    )
