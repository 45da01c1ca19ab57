"""What the billing producers publish as outgoing webhooks, and how a publish stays out of their way.

Invariants:
- each event reports a fact already stored (a statement, a Stripe invoice event merged into dunning,
  a standing transition committed), and is published after it, never before;
- one fact is one message however often its producer repeats (a close run again, a Stripe event
  redelivered, a Lambda retried): the ``source_id`` names the fact (``statement.issued:{statement}``,
  the Stripe event id, the transition) and ``Dispatcher.publish`` derives the message id from it;
- a publish never fails nor undoes the billing action it reports: a failure (SQS or DynamoDB down)
  is logged and counted (metric ``WebhookPublishFailed``), and the fact is published when its
  producer next repeats it (the close's re-run, a Stripe redelivery, a later transition's refresh);
- each payload carries the object's full state as of the publish (amounts as decimal strings or
  integer minor units, never floats), so a receiver applies the highest ``sequence`` of an object and
  needs no other message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit

from billing.kernel.periods import iso
from billing.runtime.observability import logger, metrics
from billing.statements.statement import Statement

if TYPE_CHECKING:
    from datetime import datetime

    from billing.dunning.timeline import AuditEntry
    from billing.outgoing_webhooks.delivery import Dispatcher


class WebhookPublisher(Protocol):
    def publish(self, event_type: str, object_id: str, data: Mapping[str, Any], *, source_id: str) -> None:
        """Publish the fact ``source_id`` (at most one message per fact); never raises."""
        ...


class QuietPublisher:
    """Publishes through the dispatcher (built on first use: a producer that never publishes never
    reaches SQS), logging and counting a failure instead of raising it."""

    def __init__(self, dispatcher: Callable[[], Dispatcher]):
        self._dispatcher = dispatcher

    def publish(self, event_type: str, object_id: str, data: Mapping[str, Any], *, source_id: str) -> None:
        try:
            self._dispatcher().publish(event_type, object_id, data, source_id=source_id)
        except Exception:  # noqa: BLE001 - a lost webhook never undoes the billing action it reports
            logger.exception(
                "webhook not published",
                extra={"event_type": event_type, "object_id": object_id, "source_id": source_id},
            )
            metrics.add_metric(name="WebhookPublishFailed", unit=MetricUnit.Count, value=1)


# ------------------------------------------------------------------------------------ statements
def _statement(statement: Statement) -> dict[str, Any]:
    return statement.model_dump(mode="json", exclude={"inputs"})


def publish_statement(webhooks: WebhookPublisher, statement: Statement) -> None:
    """``statement.issued`` for a stored statement, and ``usage.late_adjusted`` when it carries
    adjustment lines (late usage of an earlier closed month); both about the statement."""
    webhooks.publish(
        "statement.issued",
        statement.statement_id,
        _statement(statement),
        source_id=f"statement.issued:{statement.statement_id}",
    )
    adjustments = [line for line in statement.lines if line.kind == "adjustment"]
    if not adjustments:
        return
    webhooks.publish(
        "usage.late_adjusted",
        statement.statement_id,
        {
            "statement_id": statement.statement_id,
            "tenant_id": statement.tenant_id,
            "month": statement.month,
            "currency": statement.currency,
            "adjusted_months": sorted(
                {line.adjustment_month for line in adjustments if line.adjustment_month}
            ),
            "adjustment_total": str(sum((line.amount for line in adjustments), start=Decimal(0))),
            "adjustments": [line.model_dump(mode="json") for line in adjustments],
            "statement_total": str(statement.total),
        },
        source_id=f"usage.late_adjusted:{statement.statement_id}",
    )


# -------------------------------------------------------------------------------------- invoices
PUBLISHED_INVOICE_EVENTS = ("invoice.finalized", "invoice.paid", "invoice.payment_failed")


def _minor_units(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def invoice_data(
    *,
    stripe_event_id: str,
    occurred_at: datetime,
    invoice: Mapping[str, Any],
    invoice_id: str,
    tenant_id: str,
    month: str | None,
    state: str | None,
    standing: str,
) -> dict[str, Any]:
    """An invoice event's payload: the invoice as Stripe's event shows it (amounts in integer minor
    units), our dunning state of it after the event is merged, and the tenant's standing."""
    hosted = invoice.get("hosted_invoice_url")
    currency = invoice.get("currency")
    return {
        "invoice_id": invoice_id,
        "tenant_id": tenant_id,
        "month": month,
        "statement_id": Statement.make_id(tenant_id, month) if month else None,
        "status": invoice.get("status") if isinstance(invoice.get("status"), str) else None,
        "state": state,
        "amount_due": _minor_units(invoice.get("amount_due")),
        "amount_paid": _minor_units(invoice.get("amount_paid")),
        "amount_remaining": _minor_units(invoice.get("amount_remaining")),
        "currency": currency if isinstance(currency, str) else None,
        "hosted_invoice_url": hosted if isinstance(hosted, str) else None,
        "attempt_count": _minor_units(invoice.get("attempt_count")),
        "tenant_standing": standing,
        "stripe_event_id": stripe_event_id,
        "occurred_at": iso(occurred_at),
    }


# --------------------------------------------------------------------------------------- tenants
TENANT_EVENTS = {
    "past_due": "tenant.past_due",
    "suspended": "tenant.suspended",
    "active": "tenant.reinstated",
}


def publish_standing(
    webhooks: WebhookPublisher, tenant_id: str, standing: str, added: list[AuditEntry]
) -> None:
    """One ``tenant.*`` event per tenant transition a standing commit added, each carrying the
    standing now (after the commit) besides the transition it reports."""
    for entry in added:
        if entry.subject != "tenant" or entry.to_state not in TENANT_EVENTS:
            continue
        event_type = TENANT_EVENTS[entry.to_state]
        webhooks.publish(
            event_type,
            tenant_id,
            {
                "tenant_id": tenant_id,
                "standing": standing,
                "from": entry.from_state,
                "to": entry.to_state,
                "at": iso(entry.at),
                "why": entry.why,
                "cause_id": entry.event_id,
            },
            source_id=f"{event_type}:{tenant_id}:{entry.event_id}:{iso(entry.at)}",
        )
