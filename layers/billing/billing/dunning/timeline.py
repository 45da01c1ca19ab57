"""The tenant's standing and audit trail: a pure function of its invoice records, walked in time order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from billing.dunning.facts import InvoiceDunning, Mark
from billing.kernel.periods import iso

Standing = Literal["active", "past_due", "suspended"]
SEVERITY: dict[str, int] = {"active": 0, "past_due": 1, "suspended": 2}


@dataclass(frozen=True)
class AuditEntry:
    """One recorded transition. ``subject`` is "tenant" or an invoice id."""

    at: datetime
    subject: str
    from_state: str
    to_state: str
    why: str
    event_id: str
    order: int = 0  # tie-break at the same instant: invoice entries (0) before tenant entries (1)

    @property
    def seq(self) -> str:
        return f"{self.order}#{self.subject}#{self.event_id}"

    @property
    def key(self) -> str:
        return f"AUDIT#{iso(self.at)}#{self.seq}"

    def to_json(self) -> dict[str, Any]:
        return {
            "when": iso(self.at),
            "subject": self.subject,
            "from": self.from_state,
            "to": self.to_state,
            "why": self.why,
            "stripe_event_id": self.event_id,
        }


@dataclass(frozen=True)
class _Point:
    mark: Mark
    why: str


def timeline(
    invoices: Sequence[InvoiceDunning], customer_deleted: Mark | None, retry_count: int
) -> tuple[Standing, list[AuditEntry]]:
    """The tenant's current standing and every transition (invoice and tenant), in time order."""
    entries: list[AuditEntry] = []
    points: list[_Point] = []
    for inv in sorted(invoices, key=lambda i: i.invoice_id):
        entries.extend(_invoice_entries(inv, retry_count))
        if inv.first_failure:
            points.append(
                _Point(
                    inv.first_failure, f"invoice {inv.invoice_id}: {inv.failure_reason or 'payment failed'}"
                )
            )
        exhausted = inv.exhausted_at(retry_count)
        if exhausted:
            points.append(
                _Point(
                    exhausted, f"invoice {inv.invoice_id}: last retry ({retry_count} of {retry_count}) failed"
                )
            )
        if inv.closed and inv.first_failure:
            points.append(_Point(inv.closed.mark, f"invoice {inv.invoice_id} {_verb(inv.closed.kind)}"))
    if customer_deleted:
        points.append(_Point(customer_deleted, "customer deleted in Stripe"))

    def standing_at(t: datetime) -> Standing:
        worst: Standing = "active"
        for inv in invoices:
            if inv.first_failure is None or inv.first_failure.at > t:
                continue
            if inv.closed is not None and inv.closed.mark.at <= t:
                continue
            exhausted = inv.exhausted_at(retry_count)
            suspended = (exhausted is not None and exhausted.at <= t) or (
                customer_deleted is not None and customer_deleted.at <= t
            )
            state: Standing = "suspended" if suspended else "past_due"
            if SEVERITY[state] > SEVERITY[worst]:
                worst = state
        return worst

    current: Standing = "active"
    for at in sorted({p.mark.at for p in points}):
        new = standing_at(at)
        if new != current:
            cause = min((p for p in points if p.mark.at == at), key=lambda p: p.mark.event_id)
            entries.append(AuditEntry(at, "tenant", current, new, cause.why, cause.mark.event_id, order=1))
            current = new
    entries.sort(key=lambda e: (e.at, e.order, e.subject, e.event_id))
    return current, entries


def _verb(kind: str) -> str:
    return {"paid": "paid", "void": "voided", "uncollectible": "marked uncollectible"}[kind]


def _invoice_entries(inv: InvoiceDunning, retry_count: int) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    state = "draft"
    if inv.finalized and (inv.closed is None or inv.finalized.at <= inv.closed.mark.at):
        out.append(
            AuditEntry(
                inv.finalized.at, inv.invoice_id, "draft", "open", "invoice finalized", inv.finalized.event_id
            )
        )
        state = "open"
    else:
        state = "open"
    if inv.first_failure:
        out.append(
            AuditEntry(
                inv.first_failure.at,
                inv.invoice_id,
                state,
                "past_due",
                inv.failure_reason or "payment failed",
                inv.first_failure.event_id,
            )
        )
        state = "past_due"
        for attempt in inv.failed_attempts():
            last = attempt.n == retry_count
            code = attempt.failure_code or "declined"
            why = f"retry {attempt.n} of {retry_count} failed ({code})" + (
                "; retries exhausted" if last else ""
            )
            to = "exhausted" if last else "past_due"
            out.append(
                AuditEntry(attempt.at, inv.invoice_id, state, to, why, f"retry:{inv.invoice_id}:{attempt.n}")
            )
            state = to
    if inv.closed:
        why = f"invoice {_verb(inv.closed.kind)}"
        won = [a for a in inv.attempts if a.succeeded and a.at == inv.closed.mark.at]
        if won and inv.closed.kind == "paid":
            why = f"retry {won[0].n} of {retry_count} succeeded; invoice paid"
        out.append(
            AuditEntry(
                inv.closed.mark.at, inv.invoice_id, state, inv.closed.kind, why, inv.closed.mark.event_id
            )
        )
        if inv.resolution and inv.resolution != inv.closed:
            out.append(
                AuditEntry(
                    inv.resolution.mark.at,
                    inv.invoice_id,
                    inv.closed.kind,
                    inv.resolution.kind,
                    f"invoice {_verb(inv.resolution.kind)}",
                    inv.resolution.mark.event_id,
                )
            )
    return out
