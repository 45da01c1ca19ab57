"""The dunning service: records facts from webhooks, runs due retries, reports a tenant's status.

Storage and the payment collector come in through the protocols declared here and in billing.payments.provider.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from billing.dunning.facts import (
    Attempt,
    Attempted,
    Fact,
    InvoiceDunning,
    InvoiceState,
    Mark,
    Resolved,
    apply,
    earliest,
)
from billing.dunning.notices import InvoiceLookup, NoticePublisher, notices_for
from billing.dunning.schedule import last_retry
from billing.dunning.timeline import AuditEntry, Standing, timeline
from billing.kernel.periods import iso, to_ms
from billing.outgoing_webhooks.publishing import WebhookPublisher, publish_standing
from billing.payments.provider import PaymentCollector
from billing.runtime.observability import logger


@dataclass(frozen=True)
class TenantStanding:
    """The serialisation point of a tenant's dunning: its standing, the audit trail that explains
    it, and a version every recomputation bumps (one conditional write, no transaction)."""

    tenant_id: str
    status: Standing = "active"
    customer_deleted: Mark | None = None
    audit: tuple[AuditEntry, ...] = ()
    version: int = 0
    mirrored: bool = True  # the tenant record's payment_status already shows ``status``


@dataclass(frozen=True)
class DueRetry:
    tenant_id: str
    invoice_id: str
    due_at: datetime


class DunningStore(Protocol):
    def get_invoice(self, tenant_id: str, invoice_id: str) -> InvoiceDunning | None: ...
    def put_invoice(self, record: InvoiceDunning, next_retry_at: datetime | None) -> bool: ...
    def snapshot(self, tenant_id: str) -> tuple[TenantStanding, list[InvoiceDunning]]: ...
    def standing(self, tenant_id: str) -> TenantStanding: ...
    def commit(self, before: TenantStanding, after: TenantStanding) -> bool: ...
    def due(self, now: datetime, limit: int) -> list[DueRetry]: ...


class ConcurrentUpdate(Exception):
    """Gave up after too many conflicting writers (never expected in practice)."""


Clock = Callable[[], datetime]


@dataclass
class Outcome:
    tenant_id: str
    invoice_id: str | None
    changed: bool
    invoice_state: str | None
    standing: Standing

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "invoice_id": self.invoice_id,
            "changed": self.changed,
            "invoice_state": self.invoice_state,
            "standing": self.standing,
        }


@dataclass
class RunReport:
    due: int = 0
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "attempted": self.attempted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "details": self.details,
        }


@dataclass
class StatusView:
    tenant_id: str
    standing: Standing
    invoices: list[tuple[InvoiceDunning, InvoiceState, datetime | None]]
    audit: list[AuditEntry]
    payment_status: str | None = None  # the tenant record's mirror (what ingest enforces), when known
    payment_method_on_file: bool | None = (
        None  # the tenant's card mirror (billing.payments.card_on_file), when known
    )

    def with_payment_status(
        self, payment_status: str, payment_method_on_file: bool | None = None
    ) -> StatusView:
        return replace(self, payment_status=payment_status, payment_method_on_file=payment_method_on_file)

    def to_json(self) -> dict[str, Any]:
        body = self._json()
        if self.payment_method_on_file is not None:
            body["payment_method_on_file"] = self.payment_method_on_file
        return body

    def _json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "payment_status": self.payment_status or self.standing,
            "invoices": [
                {
                    "invoice_id": inv.invoice_id,
                    "month": inv.month,
                    "state": state,
                    "first_failed_at": iso(inv.first_failure.at) if inv.first_failure else None,
                    "attempts": len(inv.attempts),
                    "next_retry_at": iso(nxt) if nxt else None,
                }
                for inv, state, nxt in self.invoices
            ],
            "audit": [e.to_json() for e in self.audit],
        }


def _mark(fact: Fact) -> Mark | None:
    return getattr(fact, "mark", None)


class DunningService:
    """Applies facts with versioned conditional writes (retrying on conflict) and keeps the tenant's
    standing and audit trail equal to ``timeline()`` of its invoice records."""

    MAX_CONFLICT_RETRIES = 50

    def __init__(
        self,
        repo: DunningStore,
        *,
        retry_days: Sequence[int],
        clock: Clock,
        gateway: PaymentCollector | None = None,
        sleep: Callable[[float], None] = time.sleep,
        notices: NoticePublisher | None = None,
        invoice_details: InvoiceLookup | None = None,
        webhooks: WebhookPublisher | None = None,
    ):
        """``notices`` gets every transition a standing commit adds (``billing.dunning.notices``);
        ``webhooks`` gets each tenant transition as ``tenant.past_due`` / ``tenant.suspended`` /
        ``tenant.reinstated`` (``billing.outgoing_webhooks.publishing``), after the commit."""
        self.notices = notices
        self.webhooks = webhooks
        self.invoice_details = invoice_details
        self.repo = repo
        self.retry_days = list(retry_days)
        self.clock = clock
        self.gateway = gateway
        self._sleep = sleep

    @property
    def retry_count(self) -> int:
        return last_retry(self.retry_days)

    # -- webhook side -----------------------------------------------------------------------------
    def record(self, tenant_id: str, invoice_id: str, month: str | None, facts: Sequence[Fact]) -> Outcome:
        """Merge facts into the invoice record (compare-and-set on its version); when it changed,
        bring the tenant's standing and audit trail up to date. Three requests on the usual path:
        read the tenant's dunning partition, write the invoice, write the standing."""
        for attempt in range(self.MAX_CONFLICT_RETRIES):
            standing, invoices = self.repo.snapshot(tenant_id)
            current = next((i for i in invoices if i.invoice_id == invoice_id), None)
            base = current or InvoiceDunning(tenant_id=tenant_id, invoice_id=invoice_id, month=month)
            updated = base
            for fact in facts:
                updated = apply(updated, fact)
            if updated.month is None and month:
                updated = replace(updated, month=month)
            if current is not None and updated.fingerprint() == current.fingerprint():
                status = standing.status
                if not self._up_to_date(standing, invoices):  # an earlier run stopped half way
                    status = self.refresh(tenant_id, snapshot=(standing, invoices))
                elif self.webhooks is not None:  # a repeated fact publishes what it caused, once
                    causes = {m.event_id for m in map(_mark, facts) if m is not None}
                    caused = [e for e in standing.audit if e.event_id in causes]
                    publish_standing(self.webhooks, tenant_id, status, caused)
                return Outcome(tenant_id, invoice_id, False, current.state(self.retry_count), status)
            if not self.repo.put_invoice(updated, updated.next_retry_at(self.retry_days)):
                self._backoff(attempt)
                continue
            updated = replace(updated, version=base.version + 1)
            others = [i for i in invoices if i.invoice_id != invoice_id]
            status = self.refresh(tenant_id, snapshot=(standing, [*others, updated]))
            return Outcome(tenant_id, invoice_id, True, updated.state(self.retry_count), status)
        raise ConcurrentUpdate(f"invoice {invoice_id}: too many concurrent writers")

    def _up_to_date(self, standing: TenantStanding, invoices: Sequence[InvoiceDunning]) -> bool:
        status, entries = timeline(invoices, standing.customer_deleted, self.retry_count)
        return standing.mirrored and status == standing.status and tuple(entries) == standing.audit

    def customer_deleted(self, tenant_id: str, mark: Mark) -> Outcome:
        snapshot = self.repo.snapshot(tenant_id)
        known = snapshot[0].customer_deleted
        if known is not None and known <= mark and self._up_to_date(*snapshot):
            return Outcome(tenant_id, None, False, None, snapshot[0].status)
        standing = self.refresh(tenant_id, customer_deleted=mark, snapshot=snapshot)
        return Outcome(tenant_id, None, True, None, standing)

    def refresh(
        self,
        tenant_id: str,
        *,
        customer_deleted: Mark | None = None,
        snapshot: tuple[TenantStanding, list[InvoiceDunning]] | None = None,
    ) -> Standing:
        """Recompute standing and audit trail from the invoice records; one versioned write.

        The standing (with its version) is read no later than the invoice records (it sorts first
        in the same query), so a writer that saw stale records always loses the version race to one
        that saw them all; the loser re-reads and recomputes."""
        for attempt in range(self.MAX_CONFLICT_RETRIES):
            before, invoices = snapshot if snapshot is not None else self.repo.snapshot(tenant_id)
            snapshot = None
            deleted = earliest(before.customer_deleted, customer_deleted)
            status, entries = timeline(invoices, deleted, self.retry_count)
            after = TenantStanding(tenant_id, status, deleted, tuple(entries), before.version + 1)
            if self.repo.commit(before, after):
                self._notify(tenant_id, before, after, invoices)
                if self.webhooks is not None:
                    known = set(before.audit)
                    added = [e for e in after.audit if e not in known]
                    publish_standing(self.webhooks, tenant_id, status, added)
                return status
            self._backoff(attempt)
        raise ConcurrentUpdate(f"tenant {tenant_id}: too many concurrent writers")

    def _notify(
        self,
        tenant_id: str,
        before: TenantStanding,
        after: TenantStanding,
        invoices: Sequence[InvoiceDunning],
    ) -> None:
        if self.notices is None:
            return
        known = set(before.audit)
        added = [e for e in after.audit if e not in known]
        if not added:
            return
        try:
            found = notices_for(tenant_id, added, invoices, self.retry_days, self.invoice_details)
            self.notices.publish(found)
        except Exception:  # noqa: BLE001 - a lost notice never undoes the stored transition
            logger.exception("dunning notices not published", extra={"tenant_id": tenant_id})

    def _backoff(self, attempt: int) -> None:
        self._sleep(min(0.2, 0.002 * (2 ** min(attempt, 7))) * random.random())

    # -- scheduled side ---------------------------------------------------------------------------
    def run_due(self, *, limit: int = 500, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Pay every retry that is due now, once per attempt number (idempotency key per attempt).
        ``should_stop`` (e.g. the Lambda is about to time out) ends the run early; the rest stays due."""
        if self.gateway is None:
            raise RuntimeError("dunning run needs a payment gateway")
        now = to_ms(self.clock())  # stored with millisecond precision
        report = RunReport()
        for due in self.repo.due(now, limit):
            report.due += 1
            if should_stop():
                report.skipped += 1
                continue
            record = self.repo.get_invoice(due.tenant_id, due.invoice_id)
            standing = self.repo.standing(due.tenant_id)
            next_at = record.next_retry_at(self.retry_days) if record else None
            if record is None or next_at is None or next_at > now or standing.customer_deleted is not None:
                if record is not None and standing.customer_deleted is not None:
                    self.repo.put_invoice(record, None)  # no one left to charge: drop the schedule
                report.skipped += 1
                continue
            n = record.retries_made + 1
            key = f"{record.invoice_id}:retry:{n}"
            try:
                result = self.gateway.pay_invoice(record.invoice_id, idempotency_key=key)
            except Exception as exc:
                report.errors += 1
                report.details.append({"invoice_id": record.invoice_id, "attempt": n, "error": str(exc)})
                continue
            attempt = Attempt(
                n,
                now,
                bool(result.succeeded),
                getattr(result, "failure_code", None),
                getattr(result, "failure_message", None),
                getattr(result, "invoice_status", None),
            )
            facts: list[Fact] = [Attempted(attempt)]
            mark = Mark(now, f"retry:{record.invoice_id}:{n}")
            status = attempt.invoice_status
            if attempt.succeeded or status == "paid":
                facts.append(Resolved("paid", mark))
            elif status in ("void", "uncollectible"):
                facts.append(Resolved(status, mark))  # type: ignore[arg-type]
            outcome = self.record(record.tenant_id, record.invoice_id, record.month, facts)
            report.attempted += 1
            if attempt.succeeded:
                report.succeeded += 1
            else:
                report.failed += 1
            report.details.append(
                {
                    "tenant_id": record.tenant_id,
                    "invoice_id": record.invoice_id,
                    "attempt": n,
                    "succeeded": attempt.succeeded,
                    "failure_code": attempt.failure_code,
                    "invoice_state": outcome.invoice_state,
                    "standing": outcome.standing,
                }
            )
        return report

    # -- read side --------------------------------------------------------------------------------
    def status(self, tenant_id: str) -> StatusView:
        standing, invoices = self.repo.snapshot(tenant_id)
        invoices = sorted(invoices, key=lambda i: (i.month or "", i.invoice_id))
        rows = [(inv, inv.state(self.retry_count), inv.next_retry_at(self.retry_days)) for inv in invoices]
        return StatusView(tenant_id, standing.status, rows, list(standing.audit))
