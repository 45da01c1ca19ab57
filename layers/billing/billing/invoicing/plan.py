"""The dry-run plan: the provider requests ``InvoicingService.invoice`` would send next, from our records
alone (``billing invoice push --dry-run``). Nothing is sent.

The collection method is the one the job will use: a draft already made keeps its own; before the
draft, the job asks the provider whether the customer has a payment method, and the plan reads our
mirror of that answer (the tenant's card on file, kept by the webhook): with a card the invoice is
charged (``pay``), without one it is sent for payment on the hosted page (``send``)."""

from __future__ import annotations

from billing.invoicing.customers import customer_draft
from billing.invoicing.records import TERMINAL, idempotency_key, statement_cents
from billing.invoicing.service import InvoicingService
from billing.kernel.errors import NotFound
from billing.kernel.periods import Month
from billing.payments.provider import CollectionMethod, PlannedRequest


def plan_requests(service: InvoicingService, tenant_id: str, month: str | Month) -> list[PlannedRequest]:
    """The Stripe requests ``invoice`` would send next, from our records alone (nothing is sent;
    ids not known yet are shown as ``{customer_id}`` / ``{invoice_id}``)."""
    month = str(month)
    planner = service.planner
    statement = service.statements.get(tenant_id, month)
    if statement is None:
        raise NotFound(f"no statement for tenant {tenant_id} in {month}")
    total = statement_cents(statement)
    record = service.records.get(tenant_id, month)
    state = record.state if record else "pending"
    if state in TERMINAL or total == 0:
        return []
    tenant = service.customers.tenant(tenant_id)
    requests: list[PlannedRequest] = []
    customer_id = (record and record.customer_id) or tenant.stripe_customer_id
    if customer_id is None:
        draft = customer_draft(tenant)
        requests += [planner.find_customer_request(tenant.id), planner.customer_request(draft)]
        customer_id = "{customer_id}"
    if total < 0:  # credited to the customer's balance (InvoiceStateMachine._credit)
        return [
            *requests,
            planner.find_balance_credit_request(customer_id),
            planner.balance_credit_request(service.drafts.credit_draft(statement, customer_id, -total)),
        ]
    invoice_id = (record and record.invoice_id) or "{invoice_id}"
    method: CollectionMethod = "charge_automatically" if tenant.payment_method_id else "send_invoice"
    if record is not None and state != "pending":
        method = "send_invoice" if record.collection_method == "send_invoice" else "charge_automatically"
    if state == "pending":
        requests += [
            planner.find_invoice_request(customer_id),
            planner.invoice_request(service.drafts.invoice_draft(statement, customer_id, method)),
        ]
    if state in ("pending", "draft_created"):
        if state == "draft_created":
            requests.append(planner.list_items_request(invoice_id))
        requests += [
            planner.item_request(service.drafts.item_draft(statement, line, customer_id, invoice_id))
            for line in statement.lines
        ]
    if state in ("pending", "draft_created", "items_added"):
        requests += [
            planner.get_invoice_request(invoice_id),
            planner.finalize_request(invoice_id, idempotency_key(statement.statement_id, "finalize")),
        ]
    if method == "send_invoice":
        requests.append(planner.send_request(invoice_id, idempotency_key(statement.statement_id, "send")))
    else:
        requests.append(planner.pay_request(invoice_id, idempotency_key(statement.statement_id, "pay")))
    return requests
