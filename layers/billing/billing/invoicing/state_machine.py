"""The per-statement invoicing state machine (see the package docstring for its invariants)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from billing.catalog.plans import PlanCatalog
from billing.catalog.product_sync import product_key
from billing.dunning.notices import (
    InvoiceDetails,
    NoticePublisher,
    balance_credited,
    final_balance_left,
    payment_method_missing,
)
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
from billing.kernel.money import to_minor
from billing.kernel.periods import Month, iso
from billing.payments.provider import (
    MAX_INVOICE_ITEMS,
    BalanceCreditDraft,
    CollectionMethod,
    CustomerDraft,
    InvoiceDraft,
    InvoiceSummary,
    ItemDraft,
    PaymentAttempt,
    PaymentGateway,
    RequestPlanner,
)
from billing.runtime.observability import logger
from billing.statements.statement import Statement, StatementLine
from billing.tenants.tenant import Tenant, TenantStore, unknown_tenant


class _Raced(Exception):
    """Another writer moved the record first; re-read it and continue from its state."""


@dataclass
class _Run:
    """What this run learned from Stripe, so it does not ask twice."""

    invoice: InvoiceSummary | None = None
    created_now: bool = False
    lines_present: set[str] = field(default_factory=set)


class InvoicingService:
    def __init__(
        self,
        *,
        statements: StatementSource,
        tenants: TenantStore,
        catalog: PlanCatalog,
        records: InvoiceRecords,
        gateway: Callable[[], PaymentGateway],
        planner: RequestPlanner,
        is_conflict: Callable[[Exception], bool],
        clock: Callable[[], datetime] | None = None,
        products: Callable[[], Mapping[str, str]] | None = None,
        notices: NoticePublisher | None = None,
    ):
        """``gateway`` is called once, on first use: building it fetches the provider's secret key.
        ``products`` gives the recorded ``billing_key -> Stripe product`` ids (catalog sync), read
        once per service."""
        self._products_source = products
        self._products: Mapping[str, str] | None = None
        self.notices = notices
        self.statements = statements
        self.tenants = tenants
        self.catalog = catalog
        self.records = records
        self._gateway_factory = gateway
        self._gateway: PaymentGateway | None = None
        self.planner = planner
        self._lock = threading.Lock()
        self.is_conflict = is_conflict
        self.clock = clock or (lambda: datetime.now(UTC))

    @property
    def gateway(self) -> PaymentGateway:
        with self._lock:
            if self._gateway is None:
                self._gateway = self._gateway_factory()
            return self._gateway

    # ------------------------------------------------------------------------------------------ job
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
        customer_id, created = self._customer(statement.tenant_id)
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
                self.invoice_draft(statement, customer_id, method)
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
        customer_id, created = self._customer(statement.tenant_id)
        credit = (
            None
            if created
            else self.gateway.find_balance_credit(customer_id, "statement_id", statement.statement_id)
        )
        if credit is None:
            credit = self.gateway.credit_balance(self.credit_draft(statement, customer_id, owed))
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

    def credit_draft(self, statement: Statement, customer_id: str, owed: int) -> BalanceCreditDraft:
        return BalanceCreditDraft(
            customer_id=customer_id,
            currency=statement.currency,
            amount=owed,
            description=f"Credit from statement {statement.statement_id} ({statement.month})",
            metadata={
                "tenant_id": statement.tenant_id,
                "month": statement.month,
                "statement_id": statement.statement_id,
            },
            idempotency_key=idempotency_key(statement.statement_id, "credit"),
        )

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
                self.item_draft(statement, line, record.customer_id, record.invoice_id)
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
            saved = self._save(
                record,
                state="carried",
                payment_succeeded=False,
                reason=f"below Stripe's minimum charge: {record.carried_to_balance} minor units added to "
                "the customer's Stripe balance, "
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

    # ------------------------------------------------------------------------------------------ customer
    def ensure_customer(self, tenant_id: str) -> str:
        """The tenant's Stripe customer id, creating the customer once (signup, or the first invoice)."""
        return self._customer(tenant_id)[0]

    def _customer(self, tenant_id: str) -> tuple[str, bool]:
        """(customer id, created in this call)."""
        tenant = self.tenant(tenant_id)
        if tenant.stripe_customer_id:
            return tenant.stripe_customer_id, False
        draft = self.customer_draft(tenant)
        existing = self.gateway.find_customer(tenant.id)
        if existing is not None:
            customer_id, new = existing, False
        else:
            created = self.gateway.create_customer(draft)
            customer_id, new = created.id, not created.replayed
        linked = self.tenants.link_stripe_customer(tenant.id, customer_id)
        if linked is None:
            raise unknown_tenant([tenant_id])
        if linked != customer_id:
            return linked, False  # a concurrent job linked its customer first: that one is the tenant's
        logger.info("stripe customer linked", extra={"tenant_id": tenant.id, "customer_id": customer_id})
        return customer_id, new

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return tenant

    # ------------------------------------------------------------------------------------------ requests
    @staticmethod
    def customer_draft(tenant: Tenant) -> CustomerDraft:
        name = tenant.name or tenant.id
        # The key depends on what is sent: Stripe answers a changed name or email under a used key
        # with a 400 that no retry gets past. The lookup before creating finds an earlier one.
        digest = hashlib.sha256(f"{name}\n{tenant.email}".encode()).hexdigest()[:12]
        return CustomerDraft(
            tenant_id=tenant.id,
            name=name,
            email=tenant.email,
            idempotency_key=f"customer:{tenant.id}:{digest}",
        )

    @staticmethod
    def invoice_draft(
        statement: Statement, customer_id: str, method: CollectionMethod = "charge_automatically"
    ) -> InvoiceDraft:
        kind = "Final statement" if statement.is_final else "Statement"
        return InvoiceDraft(
            customer_id=customer_id,
            currency=statement.currency,
            description=f"{kind} {statement.month} for {statement.tenant_id}",
            metadata={
                "tenant_id": statement.tenant_id,
                "month": statement.month,
                "statement_id": statement.statement_id,
                "is_final": str(statement.is_final).lower(),
            },
            # Another collection method is another request: its own key (the lookup by metadata
            # before creating keeps it to one invoice per statement).
            idempotency_key=idempotency_key(
                statement.statement_id, "invoice" if method == "charge_automatically" else "invoice:send"
            ),
            collection_method=method,
        )

    def item_draft(
        self, statement: Statement, line: StatementLine, customer_id: str, invoice_id: str
    ) -> ItemDraft:
        return ItemDraft(
            customer_id=customer_id,
            invoice_id=invoice_id,
            currency=statement.currency,
            amount=to_minor(line.amount, statement.currency),
            description=line.description,
            period_start=line.period_start,
            period_end=line.period_end,
            metadata={
                "tenant_id": statement.tenant_id,
                "month": statement.month,
                "statement_id": statement.statement_id,
                "line_id": line.line_id,
                "kind": line.kind,
            },
            idempotency_key=idempotency_key(statement.statement_id, f"line:{line.line_id}"),
            product_id=self._product(line.plan, line.kind),
        )

    def _product(self, plan_id: str | None, kind: str) -> str | None:
        """The synced product of the line's kind (billing stripe sync-catalog), else the plan's
        ``stripe_product_id`` from the plans file, else none."""
        if self._products is None:
            self._products = dict(self._products_source()) if self._products_source else {}
        synced = self._products.get(product_key(plan_id, kind))
        if synced:
            return synced
        if plan_id is None or plan_id not in self.catalog:
            return None
        return self.catalog.get(plan_id).stripe_product_id

    # ------------------------------------------------------------------------------------------ month
    def push(
        self,
        month: str | Month,
        tenant_ids: Iterable[str] | None = None,
        *,
        workers: int = 8,
        on_done: Callable[[InvoiceOutcome], None] | None = None,
    ) -> list[InvoiceOutcome]:
        """Invoice the month's statements (or the given tenants') in parallel; the gateway's rate
        limiter keeps the whole run under the Stripe cap. Failures are outcomes with ``error``."""
        month = str(month)
        ids = (
            sorted(set(tenant_ids))
            if tenant_ids is not None
            else [s.tenant_id for s in self.statements.list_month(month)]
        )

        def one(tenant_id: str) -> InvoiceOutcome:
            try:
                return self.invoice(tenant_id, month)
            except Exception as exc:  # noqa: BLE001 - one tenant's failure never stops the month
                logger.exception("invoicing failed", extra={"tenant_id": tenant_id, "month": month})
                return InvoiceOutcome(tenant_id, month, "error", 0, error=f"{type(exc).__name__}: {exc}")

        outcomes: list[InvoiceOutcome] = []
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for future in as_completed([pool.submit(one, t) for t in ids]):
                outcome = future.result()
                outcomes.append(outcome)
                if on_done:
                    on_done(outcome)
        return sorted(outcomes, key=lambda o: o.tenant_id)
