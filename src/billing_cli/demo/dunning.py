"""Demo stage: one tenant's card fails; the dunning timeline to suspension (ingest answers 402) and
back to active after the customer pays.

Runs in the environment ``billing demo`` set up, after the invoicing stage (whose Stripe double is
reused, with the webhook events Stripe would have sent). Every webhook goes through the real
webhook Lambda handler, signed with the endpoint secret stored in (moto's) Secrets Manager; the
scheduled dunning Lambda pays retries through the real Stripe gateway against the double. Time is
an injected clock moved day by day (Stripe's event times are re-stamped with it).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

T0 = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)  # November's invoices are finalized and charged
RETRY_HOUR = timedelta(hours=1)  # the hourly dunning run after each retry falls due


def _api_key(tenant_id: str) -> str:
    """The tenant's own API key id (one is issued for the demo if it has none)."""
    from billing.runtime import container

    tenant = container.tenants().get(tenant_id)
    if not tenant.api_key_ids:
        tenant = container.tenants().save(tenant.model_copy(update={"api_key_ids": [f"{tenant_id}-key"]}))
    return tenant.api_key_ids[0]


def _ingest_one(tenant: Any, at: datetime) -> tuple[int, str]:
    from billing_local.runner import LocalContext, api_gateway_event, load_function

    key = _api_key(tenant.id)
    body = {
        "events": [
            {
                "event_id": f"dunning-demo-{at.timestamp():.0f}",
                "tenant_id": tenant.id,
                "timestamp": "2025-12-16T08:00:00Z",
                "type": "query",
                "model": "gpt-4o-mini",
                "input_tokens": 100,
                "output_tokens": 20,
            }
        ]
    }
    response = load_function("ingest").handler(api_gateway_event(body, api_key_id=key), LocalContext())
    payload = json.loads(response["body"])
    return response["statusCode"], payload.get("message") or payload.get("status", "")


def _own_failing_tenant(double: Any) -> tuple[str, str]:
    """A tenant of our own with a declined card and a finalized, unpaid invoice (when the invoicing
    stage declined nobody)."""
    from billing.payments.provider import CustomerDraft, InvoiceDraft, ItemDraft
    from billing.runtime import container
    from billing.tenants.tenant import PlanAssignment, Tenant

    tenant_id = "latepay-co"
    container.tenants().create(
        Tenant(
            id=tenant_id,
            name="Latepay Co",
            email="billing@latepay.example",
            plans=[PlanAssignment(plan="starter", effective_at="2025-10-01T00:00:00Z")],
            api_key_ids=[f"{tenant_id}-key"],
        )
    )
    double.decline(tenant_id=tenant_id, decline_code="insufficient_funds")
    gateway = container.stripe_gateway()
    customer = gateway.ensure_customer(
        CustomerDraft(
            tenant_id, "Latepay Co", "billing@latepay.example", idempotency_key=f"demo-customer-{tenant_id}"
        )
    )
    double.attach_card(customer_id=customer)  # it saved a card, which declines
    meta = {"tenant_id": tenant_id, "month": "2025-11", "statement_id": f"{tenant_id}:2025-11"}
    draft = gateway.create_draft_invoice(
        InvoiceDraft(customer, "usd", "2025-11 usage", meta, idempotency_key=f"demo-invoice-{tenant_id}")
    )
    gateway.add_invoice_item(
        ItemDraft(
            customer,
            draft.id,
            "usd",
            2900,
            "Starter plan, 2025-11",
            datetime(2025, 11, 1, tzinfo=UTC),
            T0.replace(hour=0),
            {**meta, "line_id": "base"},
            idempotency_key=f"demo-item-{tenant_id}",
        )
    )
    gateway.finalize_invoice(draft.id, idempotency_key=f"demo-finalize-{tenant_id}")
    gateway.pay_invoice(draft.id, idempotency_key=f"demo-charge-{tenant_id}")
    return tenant_id, draft.id


def run(console: Console) -> dict[str, Any]:
    from billing.runtime import container
    from billing_cli.demo.invoicing import current_double, start_double
    from billing_cli.demo.webhooks import Clock, WebhookRelay
    from billing_cli.tenant import status_renderable
    from billing_local.runner import LocalContext, api_gateway_event, load_function
    from billing_local.stripe_double import put_secret

    console.rule("[bold]4/5 Webhooks and dunning[/] - retries on day 3, 7 and 14, suspension, recovery")
    double = current_double() or start_double()
    secret = f"whsec_demo_{secrets.token_hex(12)}"
    put_secret(container.settings().stripe_webhook_secret_name, secret)
    clock = Clock(T0)
    container.override(clock=clock)
    relay = WebhookRelay(double, secret, clock)
    dunning = load_function("dunning")

    counts = relay.deliver_new()
    console.print(
        f"{T0:%b %d %H:%M}  Stripe delivers the invoicing webhooks, signed: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    failing = [
        i
        for i in double.invoices_for(include_void=False)
        if i["status"] == "open" and i["attempt_count"] > 0 and i["metadata"].get("tenant_id")
    ]
    if failing:
        tenant_id, invoice_id = failing[0]["metadata"]["tenant_id"], failing[0]["id"]
    else:
        tenant_id, invoice_id = _own_failing_tenant(double)
        relay.deliver_new()
    tenants = container.tenants()
    console.print(
        f"[bold]{tenant_id}[/]'s card was declined for invoice {invoice_id}: "
        f"payment status [yellow]{tenants.get(tenant_id).payment_status}[/]; "
        f"Stripe will not retry (auto_advance=false), our schedule will"
    )

    rows = Table("day", "when", "what happened", "tenant status", title=f"dunning timeline of {tenant_id}")
    rows.add_row(
        "0",
        f"{T0:%Y-%m-%d %H:%M}",
        "first charge declined (invoice.payment_failed)",
        tenants.get(tenant_id).payment_status,
    )
    for day in (3, 7, 14):
        clock.now = T0 + timedelta(days=day) + RETRY_HOUR
        report = dunning.handler(
            {"time": clock.now.isoformat(), "detail-type": "Scheduled Event"},
            LocalContext(function_name="DunningFunction"),
        )
        relay.deliver_new()
        detail = next((d for d in report["details"] if d.get("invoice_id") == invoice_id), {})
        outcome = "paid" if detail.get("succeeded") else f"declined ({detail.get('failure_code')})"
        rows.add_row(
            str(day),
            f"{clock.now:%Y-%m-%d %H:%M}",
            f"retry {detail.get('attempt')} of 3: {outcome}",
            tenants.get(tenant_id).payment_status,
        )
    tenant = tenants.get(tenant_id)
    status, message = _ingest_one(tenant, clock.now)
    rows.add_row(
        "14", f"{clock.now:%Y-%m-%d %H:%M}", f"POST /v1/events -> {status}: {message}", tenant.payment_status
    )

    clock.now = T0 + timedelta(days=15, hours=2)
    double.clear_declines()
    container.stripe_gateway().pay_invoice(invoice_id, idempotency_key=f"demo-customer-pays-{invoice_id}")
    relay.deliver_new()
    tenant = tenants.get(tenant_id)
    rows.add_row(
        "15",
        f"{clock.now:%Y-%m-%d %H:%M}",
        "customer updates the card and pays (invoice.paid)",
        tenant.payment_status,
    )
    status, message = _ingest_one(tenant, clock.now)
    rows.add_row("15", f"{clock.now:%Y-%m-%d %H:%M}", f"POST /v1/events -> {status}", tenant.payment_status)
    console.print(rows)

    view = container.tenant_service().status(tenant_id)
    console.print(status_renderable(view))
    response = load_function("tenant_status").handler(
        api_gateway_event(
            None,
            path=f"/v1/tenants/{tenant_id}/status",
            method="GET",
            api_key_id=_api_key(tenant_id),
            path_parameters={"tenant_id": tenant_id},
        ),
        LocalContext(),
    )
    body = json.loads(response["body"])
    console.print(
        f"GET /v1/tenants/{tenant_id}/status -> {response['statusCode']}: payment_status "
        f"{body.get('payment_status')}, {len(body.get('audit', []))} audit entries "
        f"(also: billing tenant status {tenant_id})"
    )
    container.override(clock=None)
    return {
        "tenant_id": tenant_id,
        "invoice_id": invoice_id,
        "final_status": tenant.payment_status,
        "audit": len(view.audit),
    }
