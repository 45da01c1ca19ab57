"""Provider request drafts built from a statement: the invoice, one item per line, the balance credit.

Pure construction: nothing here talks to Stripe. Invariants:

- every draft's metadata names the statement (``tenant_id``, ``month``, ``statement_id``; an item also
  its ``line_id`` and ``kind``): a later run finds what an earlier one created by these, never by
  remembering Stripe ids it may have lost;
- every idempotency key is ``records.idempotency_key(statement_id, step)``, so the same statement
  always sends the same keys (``invoice``, ``invoice:send``, ``line:{line_id}``, ``credit``);
- an item's amount is its line's amount in minor units, unchanged (lines are already rounded to
  cents), so the invoice's pre-tax total is the statement total.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from billing.catalog.plans import PlanCatalog
from billing.catalog.product_sync import product_key
from billing.invoicing.records import idempotency_key
from billing.kernel.money import to_minor
from billing.payments.provider import (
    BalanceCreditDraft,
    CollectionMethod,
    InvoiceDraft,
    ItemDraft,
)
from billing.statements.statement import Statement, StatementLine


class Drafts:
    def __init__(self, catalog: PlanCatalog, products: Callable[[], Mapping[str, str]] | None = None):
        """``products`` gives the recorded ``billing_key -> Stripe product`` ids (catalog sync); it is
        read once, on the first item, and kept for the life of this object."""
        self.catalog = catalog
        self._products_source = products
        self._products: Mapping[str, str] | None = None

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
            product_id=self.product(line.plan, line.kind),
        )

    @staticmethod
    def credit_draft(statement: Statement, customer_id: str, owed: int) -> BalanceCreditDraft:
        """``owed`` minor units (positive) credited to the customer's balance, for a total below zero."""
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

    def product(self, plan_id: str | None, kind: str) -> str | None:
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
