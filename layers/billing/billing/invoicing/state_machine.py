"""The per-statement invoicing walk: one record moved from ``pending`` to a terminal state.

``InvoiceStateMachine.invoice`` reads the statement and its record, then repeats one step at a time
until the record is terminal (``records.TERMINAL``). Invariants (the package docstring has the states):

- a step sends at most the Stripe requests of its own transition, then saves the record with a
  versioned conditional write; a step that loses that write to another writer re-reads the record
  and goes on from the state the winner stored (at most ``records.MAX_STEPS`` steps, then ``Conflict``);
- a step never assumes what an earlier run did: what it cannot take from the record it reads back
  from Stripe (the invoice by metadata, a draft's items, the invoice's status), so a run killed at
  any point and run again sends nothing twice that Stripe would act on twice;
- the draft's pre-tax total is checked against the statement before finalizing and again after;
  any difference is ``InvoiceMismatch`` and nothing more is sent for that statement;
- notices (``payment_method_missing``, ``balance_credited``, ``final_balance_left``) are published
  only after the record saying so is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing.dunning.notices import (
    InvoiceDetails,
    NoticePublisher,
    balance_credited,
    final_balance_left,
    payment_method_missing,
)
from billing.invoicing.customers import CustomerLinker
from billing.invoicing.drafts import Drafts
from billing.invoicing.records import (
    MAX_STEPS,
    TERMINAL,
    InvoiceMismatch,
    InvoiceOutcome,
    InvoiceRecord,
    InvoiceRecords,
    StatementSource,
    TooManyLines,
    idempotency_key,
    statement_cents,
)
from billing.kernel.errors import Conflict, NotFound
from billing.kernel.money import fmt_minor, from_minor
from billing.kernel.periods import Month, iso
from billing.payments.provider import (
    MAX_INVOICE_ITEMS,
    CollectionMethod,
    InvoiceSummary,
    PaymentAttempt,
    PaymentGateway,
)
from billing.runtime.observability import logger
from billing.statements.statement import Statement


class _Raced(Exception):
    """Another writer moved the record first; re-read it and continue from its state."""


@dataclass
class _Run:
    """What this run learned from Stripe, so it does not ask twice."""

    invoice: InvoiceSummary | None = None
    created_now: bool = False


class InvoiceStateMachine:
    def __init__(
        self,
        *,
        statements: StatementSource,
        records: InvoiceRecords,
        customers: CustomerLinker,
        drafts: Drafts,
        gateway: Callable[[], PaymentGateway],
        clock: Callable[[], datetime] | None = None,
        notices: NoticePublisher | None = None,
    ):
        """``gateway`` is called on each use; the caller makes it build the gateway once (building it
        fetches the provider's secret key). ``notices`` may be None: nothing is published then."""
        self.statements = statements
        self.records = records
        self.customers = customers
        self.drafts = drafts
        self._gateway = gateway
        self.clock = clock or (lambda: datetime.now(UTC))
        self.notices = notices

    @property
    def gateway(self) -> PaymentGateway:
        return self._gateway()

    def invoice(self, tenant_id: str, month: str | Month) -> InvoiceOutcome:
        """Bring the statement's invoice as far as it goes: created, itemized, finalized, charged once."""
        month = str(month)
        statement = self.statements.get(tenant_id, month)
        if statement is None:
            raise NotFound(
                f"no statement for tenant {tenant_id} in {month}",
                details=[{"field": "tenant_id/month", "reason": "statement not found"}],
            )
        total = statement_cents(statement)
        record = self.records.get(tenant_id, month) or self._create_record(statement, total)
        run = _Run()
        for _ in range(MAX_STEPS):
            if record.state in TERMINAL:
                return InvoiceOutcome.of(record)
            try:
                record = self._step(statement, total, record, run)
            except _Raced:
                record = self._reload(tenant_id, month)
                run = _Run()
        raise Conflict(f"invoice of {statement.statement_id} is being advanced concurrently; retry later")

    def _create_record(self, statement: Statement, total: int) -> InvoiceRecord:
        now = iso(self.clock())
        record = InvoiceRecord(
            tenant_id=statement.tenant_id,
            month=statement.month,
            statement_id=statement.statement_id,
            is_final=statement.is_final,
            currency=statement.currency,
            total_cents=total,
            created_at=now,
            updated_at=now,
        )
        return self.records.save(record) or self._reload(statement.tenant_id, statement.month)

    def _reload(self, tenant_id: str, month: str) -> InvoiceRecord:
        """The record another writer just wrote (it exists: records are never deleted by invoicing)."""
        record = self.records.get(tenant_id, month)
        if record is None:
            raise Conflict(f"invoice record of {tenant_id} {month} vanished while being written; retry")
        return record

    def _save(self, record: InvoiceRecord, **changes: Any) -> InvoiceRecord:
        updated = record.model_copy(update={**changes, "updated_at": iso(self.clock())})
        stored = self.records.save(updated)
        if stored is None:
            raise _Raced()
        if updated.state != record.state:
            logger.info(
                "invoice state",
                extra={
                    "tenant_id": record.tenant_id,
                    "month": record.month,
                    "from_state": record.state,
                    "to_state": updated.state,
                    "invoice_id": updated.invoice_id,
                },
            )
        return stored

    def _step(self, statement: Statement, total: int, record: InvoiceRecord, run: _Run) -> InvoiceRecord:
        if record.state == "pending":
            return self._start(statement, total, record, run)
        if record.state == "draft_created":
            return self._add_items(statement, total, record, run)
        if record.state == "items_added":
            return self._finalize(statement, total, record, run)
        if record.state == "finalized":
            return self._pay(statement, record)
        raise AssertionError(f"unexpected state {record.state}")

    def _start(self, statement: Statement, total: int, record: InvoiceRecord, run: _Run) -> InvoiceRecord:
        if total == 0:
            logger.info(
                "statement not sent to Stripe",
                extra={"statement_id": statement.statement_id, "reason": "zero total"},
            )
            return self._save(record, state="not_sent", reason="zero total")
        if total < 0:
            return self._credit(statement, -total, record)
        if len(statement.lines) > MAX_INVOICE_ITEMS:
            raise TooManyLines(
                f"statement {statement.statement_id} has {len(statement.lines)} lines; a Stripe "
                f"invoice holds at most {MAX_INVOICE_ITEMS}",
                details=[{"field": "lines", "reason": f"more than {MAX_INVOICE_ITEMS} lines"}],
            )
        customer_id, created = self.customers.link(statement.tenant_id)
        found = (
            [] if created else self.gateway.find_invoices(customer_id, "statement_id", statement.statement_id)
        )
        if len(found) > 1:
            raise InvoiceMismatch(
                f"Stripe holds {len(found)} non-void invoices for statement {statement.statement_id} "
                f"({', '.join(i.id for i in found)}); void the extra ones, then retry"
            )
        existing = found[0] if found else None
        if existing is not None:
            logger.info(
                "recovered the Stripe invoice by metadata",
                extra={
                    "statement_id": statement.statement_id,
                    "invoice_id": existing.id,
                    "status": existing.status,
                },
            )
            run.invoice = existing
        else:
            method: CollectionMethod = (
                "charge_automatically" if self.gateway.payment_method_on_file(customer_id) else "send_invoice"
            )
            run.invoice = self.gateway.create_draft_invoice(
                self.drafts.invoice_draft(statement, customer_id, method)
            )
            run.created_now = not run.invoice.replayed  # a fresh draft holds no items yet
        return self._save(
            record,
            state="draft_created",
            customer_id=customer_id,
            invoice_id=run.invoice.id,
            invoice_status=run.invoice.status,
            collection_method=run.invoice.collection_method,
        )

    def _credit(self, statement: Statement, owed: int, record: InvoiceRecord) -> InvoiceRecord:
        """A total below zero (only a late adjustment can make one: coupons and credits stop at zero)
        is owed to the tenant: it is credited once to the customer's Stripe balance, which Stripe
        takes off the customer's next invoices. A credit made by an earlier run whose record update
        was lost is found by its metadata, not made again."""
        customer_id, created = self.customers.link(statement.tenant_id)
        credit = (
            None
            if created
            else self.gateway.find_balance_credit(customer_id, "statement_id", statement.statement_id)
        )
        if credit is None:
            credit = self.gateway.credit_balance(self.drafts.credit_draft(statement, customer_id, owed))
        logger.info(
            "statement below zero; credited to the customer's balance",
            extra={"statement_id": statement.statement_id, "cents": owed, "balance_transaction_id": credit},
        )
        saved = self._save(
            record,
            state="credited",
            customer_id=customer_id,
            balance_transaction_id=credit,
            credited_to_balance=owed,
            reason=f"total below zero: {owed} minor units credited to the customer's Stripe balance, "
            "taken off its next invoices",
        )
        if self.notices is not None:
            details = InvoiceDetails(-owed, statement.currency, None, statement.month)
            self.notices.publish([balance_credited(statement.tenant_id, credit, self.clock(), details)])
        return saved

    def _add_items(self, statement: Statement, total: int, record: InvoiceRecord, run: _Run) -> InvoiceRecord:
        assert record.invoice_id and record.customer_id
        invoice = run.invoice if run.invoice is not None else self.gateway.get_invoice(record.invoice_id)
        if invoice.status != "draft":  # finalized by an earlier run whose record update was lost
            return self._finalized(record, invoice, total)
        if not run.created_now:
            present = self._present_lines(statement, record.invoice_id)
        else:
            present = set()
        for line in statement.lines:
            if line.line_id in present:
                continue
            self.gateway.add_invoice_item(
                self.drafts.item_draft(statement, line, record.customer_id, record.invoice_id)
            )
            present.add(line.line_id)
        run.invoice = None  # its total changed; read it again before finalizing
        return self._save(record, state="items_added", lines=len(statement.lines), invoice_status="draft")

    def _present_lines(self, statement: Statement, invoice_id: str) -> set[str]:
        present: set[str] = set()
        known = {line.line_id for line in statement.lines}
        for item in self.gateway.list_invoice_items(invoice_id):
            line_id = item.line_id
            if line_id is None or line_id not in known or line_id in present:
                raise InvoiceMismatch(
                    f"Stripe invoice {invoice_id} holds an item ({item.id}, line {line_id!r}) "
                    f"that is not exactly one line of statement {statement.statement_id}"
                )
            present.add(line_id)
        return present

    def _finalize(self, statement: Statement, total: int, record: InvoiceRecord, run: _Run) -> InvoiceRecord:
        assert record.invoice_id
        invoice = self.gateway.get_invoice(record.invoice_id)
        if invoice.status == "draft":
            self._check_total_summary(statement.statement_id, invoice, total)
            invoice = self.gateway.finalize_invoice(
                record.invoice_id, idempotency_key=idempotency_key(statement.statement_id, "finalize")
            )
        return self._finalized(record, invoice, total)

    def _finalized(self, record: InvoiceRecord, invoice: InvoiceSummary, total: int) -> InvoiceRecord:
        self._check_total_summary(record.statement_id, invoice, total)
        if invoice.status in ("void", "uncollectible"):
            raise InvoiceMismatch(
                f"Stripe invoice {invoice.id} of {record.statement_id} is {invoice.status}; "
                "an operator has to decide what to do with this statement"
            )
        # Paid on finalization with less paid than due: under Stripe's minimum charge, the amount
        # due went to the customer's balance (Stripe collects it with the customer's next invoice).
        carried = invoice.amount_due - invoice.amount_paid if invoice.status == "paid" else 0
        return self._save(
            record,
            state="finalized",
            invoice_status=invoice.status,
            stripe_total=invoice.total,
            invoice_number=invoice.number,
            hosted_invoice_url=invoice.hosted_invoice_url,
            carried_to_balance=carried or None,
        )

    @staticmethod
    def _check_total_summary(statement_id: str, invoice: InvoiceSummary, total: int) -> None:
        # Stripe Tax adds tax on top of our lines: what must equal the statement is the pre-tax total.
        pre_tax = invoice.total if invoice.total_excluding_tax is None else invoice.total_excluding_tax
        if pre_tax != total:
            raise InvoiceMismatch(
                f"Stripe invoice {invoice.id} totals {pre_tax} cents before tax but statement "
                f"{statement_id} totals {total} cents"
            )

    def _pay(self, statement: Statement, record: InvoiceRecord) -> InvoiceRecord:
        assert record.invoice_id
        if record.invoice_status == "paid" and record.carried_to_balance:
            logger.info(
                "below Stripe's minimum charge; carried to the customer's next invoice",
                extra={"statement_id": statement.statement_id, "cents": record.carried_to_balance},
            )
            currency, minimum = record.currency, self.gateway.minimum_charge(record.currency)
            of = f" of {fmt_minor(from_minor(minimum, currency), currency)}" if minimum else " in"
            saved = self._save(
                record,
                state="carried",
                payment_succeeded=False,
                reason=f"below Stripe's minimum charge{of} {currency.upper()}: "
                f"{record.carried_to_balance} minor units added to the customer's Stripe balance, "
                + (
                    "and no later invoice will collect it (final statement)"
                    if record.is_final
                    else "collected with the next invoice"
                ),
            )
            if record.is_final and self.notices is not None:  # there is no next invoice
                details = InvoiceDetails(
                    record.carried_to_balance, record.currency, record.hosted_invoice_url, record.month
                )
                self.notices.publish(
                    [final_balance_left(record.tenant_id, record.invoice_id, self.clock(), details)]
                )
            return saved
        if record.invoice_status == "paid":  # nothing due (Stripe marks it paid when finalized)
            return self._save(record, state="paid", payment_succeeded=True)
        if record.collection_method == "send_invoice":
            # No card on file: an off-session charge could only fail. Stripe emails the invoice
            # with its hosted payment page; invoice.paid (webhook) settles it.
            sent = self.gateway.send_invoice(
                record.invoice_id, idempotency_key=idempotency_key(statement.statement_id, "send")
            )
            logger.info(
                "no payment method on file; invoice sent",
                extra={"statement_id": statement.statement_id, "invoice_id": record.invoice_id},
            )
            saved = self._save(record, state="sent", invoice_status=sent.status)
            if self.notices is not None:
                details = InvoiceDetails(
                    sent.amount_due,
                    sent.currency,
                    sent.hosted_invoice_url or record.hosted_invoice_url,
                    record.month,
                )
                self.notices.publish(
                    [payment_method_missing(record.tenant_id, record.invoice_id, self.clock(), details)]
                )
            return saved
        attempt: PaymentAttempt = self.gateway.pay_invoice(
            record.invoice_id, idempotency_key=idempotency_key(statement.statement_id, "pay")
        )
        if attempt.succeeded:
            return self._save(
                record, state="paid", invoice_status=attempt.invoice_status, payment_succeeded=True
            )
        logger.info(
            "first charge failed; dunning takes over",
            extra={
                "statement_id": statement.statement_id,
                "invoice_id": record.invoice_id,
                "failure_code": attempt.failure_code,
            },
        )
        return self._save(
            record,
            state="payment_failed",
            invoice_status=attempt.invoice_status,
            payment_succeeded=False,
            failure_code=attempt.failure_code,
            failure_message=attempt.failure_message,
        )
