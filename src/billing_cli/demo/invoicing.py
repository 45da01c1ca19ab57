"""Demo stage: push the closed month's statements to a local Stripe double and show the invoices.

Runs in the environment ``billing demo`` already set up (moto + chdb, env vars, statements stored
and invoicing jobs enqueued by the rating stage's close). Starts the Stripe double (an HTTP server
the real SDK talks to), stores a test key in Secrets Manager, points ``STRIPE_API_BASE`` at the
double, feeds the queued jobs to the invoicing Lambda handler and pushes whatever had no job. The double keeps running for later stages
(``current_double()``), holding the invoices and the webhook events Stripe would have sent.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console
from rich.table import Table

from billing_local.stripe_double import StripeDouble, put_secret

DEMO_MONTH = "2025-11"
_running: list[StripeDouble] = []


def current_double() -> StripeDouble | None:
    """The double started by this stage (None before it ran)."""
    return _running[0] if _running else None


def start_double(latency_s: float = 0.0) -> StripeDouble:
    """Start (once) the Stripe double and make the configured environment use it."""
    from aws_lambda_powertools.utilities import parameters

    from billing.runtime import container

    if not _running:
        _running.append(StripeDouble(latency_s=latency_s).start())
    double = _running[0]
    os.environ["STRIPE_API_BASE"] = double.api_base
    container.reset()
    put_secret(container.settings().stripe_secret_name)
    parameters.clear_caches()
    return double


def save_cards(double: StripeDouble, tenant_ids: list[str]) -> dict[str, str]:
    """The path a real tenant takes to a card on file: a setup session (created on demand with its
    customer), the card entered on Stripe's page (the double completes the session), and Stripe's
    webhooks through the real webhook Lambda, signed, which make the card the invoice default."""
    import secrets
    from datetime import UTC, datetime

    from billing.payments.card_on_file import SetupRequest
    from billing.runtime import container
    from billing_cli.demo.webhooks import Clock, WebhookRelay

    secret = f"whsec_demo_{secrets.token_hex(12)}"
    put_secret(container.settings().stripe_webhook_secret_name, secret)
    relay = WebhookRelay(double, secret, Clock(datetime.now(UTC)))
    relay.seen = len(double.events_of())
    cards: dict[str, str] = {}
    for tenant_id in tenant_ids:
        session = container.card_on_file().setup_session(tenant_id, SetupRequest())
        double.complete_checkout_session(session["session_id"])
        relay.deliver_new()
        tenant = container.tenants().get(tenant_id)
        if tenant is not None and tenant.payment_method_id:
            cards[tenant_id] = tenant.payment_method_id
    return cards


def run(console: Console, month: str = DEMO_MONTH, *, decline_one: bool = True) -> dict[str, Any]:
    from billing.runtime import container
    from billing.runtime.container import invoicing_service

    console.rule(f"[bold]3/5 Stripe invoicing[/] - {month}")
    statements = container.statements().list_month(month)
    if not statements:
        console.print(f"no statements stored for {month}; the rating stage closes the month first")
        return {"invoices": 0}
    double = start_double()
    console.print(
        f"Stripe double listening on {double.api_base} (API version "
        f"{container.settings().stripe_api_version}); the official SDK talks to it over HTTP"
    )

    payable = [s for s in statements if s.total > 0]
    no_card = payable[-1].tenant_id if len(payable) >= 3 else None
    with_card = [s.tenant_id for s in payable if s.tenant_id != no_card]
    cards = save_cards(double, with_card)
    console.print(
        f"{len(cards)} tenant(s) saved a card through the setup flow (Checkout in setup mode; the "
        "webhook made it their invoice default)"
        + (
            f"; [yellow]{no_card} saved none[/] (its invoice is sent with a due date, not charged)"
            if no_card
            else ""
        )
    )
    declined = None
    if decline_one and len(with_card) >= 2:
        declined = with_card[-1]
        double.decline(tenant_id=declined, decline_code="insufficient_funds")
        console.print(
            f"[yellow]{declined}'s card will be declined[/] (a declined charge is an outcome; dunning "
            "takes over)"
        )

    service = invoicing_service()
    before = len(double.requests)
    queue_url = container.settings().invoicing_queue_url
    if queue_url:  # the close enqueued one job per non-zero statement: the Lambda handles them
        from billing_local.runner import drain_queue

        processed, failed = drain_queue(queue_url, "invoicing")
        console.print(f"InvoicingFunction handled {processed} SQS job(s) from the close ({failed} failed)")
    # Statements without a job (zero totals) get their record too; finished ones send nothing.
    outcomes = service.push(month, [s.tenant_id for s in statements])
    sent = len(double.requests) - before

    by_tenant = {s.tenant_id: s for s in statements}
    invoices = {
        i["metadata"].get("tenant_id"): i
        for i in double.invoices_for()
        if i["metadata"].get("month") == month
    }
    table = Table(
        "tenant",
        "invoice",
        "number",
        "statement",
        "stripe total",
        "status",
        "lines",
        "state",
        title=f"Stripe invoices for {month}",
    )
    equal = 0
    for outcome in outcomes:
        statement = by_tenant[outcome.tenant_id]
        invoice = invoices.get(outcome.tenant_id)
        stripe_total: int = invoice["total"] if invoice else 0
        same = (statement.total <= 0) if invoice is None else stripe_total == round(statement.total * 100)
        equal += bool(same)
        table.add_row(
            outcome.tenant_id,
            invoice["id"] if invoice else "-",
            (invoice or {}).get("number") or "-",
            f"{statement.total:.2f}",
            f"{stripe_total / 100:.2f}" if invoice else "(not sent)",
            invoice["status"] if invoice else "-",
            str(len(invoice["lines"]["data"])) if invoice else "-",
            outcome.state if not outcome.error else f"[red]{outcome.error}[/]",
            style=None if same else "red",
        )
    console.print(table)
    console.print(
        f"Stripe totals equal statement totals: [bold]{equal}/{len(outcomes)}[/] "
        f"({sent} Stripe requests, rate cap {container.settings().stripe_max_requests_per_second:g}/s)"
    )

    before = len(double.requests)
    service.push(month, [s.tenant_id for s in statements])
    console.print(f"pushed again: {len(double.requests) - before} Stripe requests (every statement is done)")
    events = double.events_of("invoice.finalized", "invoice.paid", "invoice.payment_failed")
    counts = {
        t: sum(1 for e in events if e["type"] == t)
        for t in ("invoice.finalized", "invoice.paid", "invoice.payment_failed")
    }
    console.print("webhook events Stripe would send: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    return {
        "invoices": len(invoices),
        "equal": equal,
        "statements": len(outcomes),
        "declined": declined,
        "no_card": no_card,
        "requests": sent,
        "outcomes": [o.summary() for o in outcomes],
    }
