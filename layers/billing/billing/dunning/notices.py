"""Notices: each dunning transition, as an event the SaaS can email or page on.

Owned by the dunning domain: the value type and the publishing protocol live here, the EventBridge
adapter in ``billing.adapters.aws.notices``. Invariants:
- a notice is derived from an audit entry the tenant's standing commit added (or from invoicing for
  ``payment_method_missing``, ``balance_credited`` and ``final_balance_left``), so it is published
  after the state it reports is stored;
- delivery is at least once: a notice has a stable ``id`` (kind, subject, Stripe event or retry id)
  for the consumer to drop repeats, e.g. when a reordered webhook stream recomputes the trail;
- publishing never fails the transition: a lost notice is logged, the state stays right.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from billing.dunning.facts import InvoiceDunning
from billing.dunning.schedule import retry_due_at
from billing.dunning.timeline import AuditEntry
from billing.kernel.periods import iso

NoticeKind = Literal[
    "payment_failed",
    "retry_scheduled",
    "retry_failed",
    "suspended",
    "reactivated",
    "payment_method_missing",
    "balance_credited",
    "final_balance_left",
]


@dataclass(frozen=True)
class InvoiceDetails:
    amount_due: int  # integer cents
    currency: str
    hosted_invoice_url: str | None
    month: str | None = None


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    tenant_id: str
    at: datetime
    why: str
    source_id: str  # the Stripe event id or our retry id behind it
    invoice_id: str | None = None
    details: InvoiceDetails | None = None
    next_retry_at: datetime | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.invoice_id or self.tenant_id}:{self.source_id}"

    def detail(self) -> dict[str, Any]:
        """The EventBridge ``detail`` (``source: billing``, ``detail-type: dunning.{kind}``)."""
        d = self.details
        return {
            "id": self.id,
            "kind": self.kind,
            "tenant_id": self.tenant_id,
            "invoice_id": self.invoice_id,
            "month": d.month if d else None,
            "amount_due": d.amount_due if d else None,
            "currency": d.currency if d else None,
            "hosted_invoice_url": d.hosted_invoice_url if d else None,
            "next_retry_at": iso(self.next_retry_at) if self.next_retry_at else None,
            "at": iso(self.at),
            "why": self.why,
        }


class NoticePublisher(Protocol):
    def publish(self, notices: Sequence[Notice]) -> None: ...


InvoiceLookup = Callable[[str, str], InvoiceDetails | None]


def notices_for(
    tenant_id: str,
    added: Iterable[AuditEntry],
    invoices: Sequence[InvoiceDunning],
    retry_days: Sequence[int],
    lookup: InvoiceLookup | None = None,
) -> list[Notice]:
    """The notices of the audit entries a commit added (in their order)."""
    by_id = {i.invoice_id: i for i in invoices}
    out: list[Notice] = []
    for entry in added:
        if entry.subject == "tenant":
            if entry.to_state == "suspended":
                out.append(Notice("suspended", tenant_id, entry.at, entry.why, entry.event_id))
            elif entry.to_state == "active" and entry.from_state == "suspended":
                out.append(Notice("reactivated", tenant_id, entry.at, entry.why, entry.event_id))
            continue
        invoice = by_id.get(entry.subject)
        details = lookup(tenant_id, entry.subject) if lookup is not None else None
        kinds: list[NoticeKind] = []
        if entry.to_state == "past_due" and entry.from_state in ("draft", "open"):
            kinds.append("payment_failed")
        elif entry.to_state in ("past_due", "exhausted") and entry.from_state == "past_due":
            kinds.append("retry_failed")
        else:
            continue
        next_at = _next_retry(invoice, entry, retry_days)
        if next_at is not None:
            kinds.append("retry_scheduled")
        for kind in kinds:
            out.append(
                Notice(
                    kind,
                    tenant_id,
                    entry.at,
                    entry.why,
                    entry.event_id,
                    entry.subject,
                    details,
                    next_at if kind == "retry_scheduled" else None,
                )
            )
    return out


def _next_retry(
    invoice: InvoiceDunning | None, entry: AuditEntry, retry_days: Sequence[int]
) -> datetime | None:
    """The retry that follows this failure (None after the last, or once the invoice is closed).

    The retries made are those that had failed by the entry's time, not all of them: a trail
    recomputed later still tells, for this entry, the retry that came next then. For the latest
    entry that is every retry made, so the notice names the due date the record stores."""
    if invoice is None or invoice.first_failure is None or invoice.closed is not None:
        return None
    made = sum(1 for a in invoice.failed_attempts() if a.at <= entry.at)
    return retry_due_at(invoice.first_failure.at, made, retry_days)


def payment_method_missing(
    tenant_id: str, invoice_id: str, at: datetime, details: InvoiceDetails | None
) -> Notice:
    """The tenant has no card on file: its invoice was sent (hosted page, due date) instead."""
    return Notice(
        "payment_method_missing",
        tenant_id,
        at,
        "no payment method on file; invoice sent with its hosted payment page",
        f"invoice:{invoice_id}",
        invoice_id,
        details,
    )


def balance_credited(
    tenant_id: str, balance_transaction_id: str, at: datetime, details: InvoiceDetails
) -> Notice:
    """A statement below zero was credited to the customer's Stripe balance (``details.amount_due``
    is the credit, negative): its next invoices will be that much lower."""
    return Notice(
        "balance_credited",
        tenant_id,
        at,
        "statement total below zero (a late adjustment); credited to the customer's Stripe balance",
        f"credit:{balance_transaction_id}",
        None,
        details,
    )


def final_balance_left(tenant_id: str, invoice_id: str, at: datetime, details: InvoiceDetails) -> Notice:
    """A final statement (the tenant cancelled) was below Stripe's minimum charge: Stripe marked the
    invoice paid and left ``details.amount_due`` on the customer's balance, and no later invoice
    will collect it. An operator decides: collect it another way or write it off."""
    return Notice(
        "final_balance_left",
        tenant_id,
        at,
        "final statement below Stripe's minimum charge; the amount is left on the customer's Stripe "
        "balance and no later invoice will collect it",
        f"invoice:{invoice_id}",
        invoice_id,
        details,
    )
