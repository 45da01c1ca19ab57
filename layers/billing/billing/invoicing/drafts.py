"""Provider request drafts built from a statement: the invoice, one item per line, the balance credit.

Pure construction: nothing here talks to Stripe. Invariants:

- every draft's metadata names the statement (``tenant_id``, ``month``, ``statement_id``; an item also
  its ``line_id`` and ``kind``; a tenant calendar's invoice also ``period``, its label in the tenant's
  time zone, and ``time_zone``, which its description names too): a later run finds what an earlier one created by these, never by
  remembering Stripe ids it may have lost;
- every idempotency key is ``records.idempotency_key(statement_id, step)``, so the same statement
  always sends the same keys (``invoice``, ``invoice:send``, ``line:{line_id}``, ``credit``);
- an item's amount is its line's amount in minor units, unchanged (lines are already rounded to
  cents), so the invoice's pre-tax total is the statement total;
- an item's description is its line's words (billing.rating.wording), cut at a word boundary to
  Stripe's limit; its metadata also carries the line's audit data (``amount_exact``, quantity, unit
  price, plan, period instants, adjustment month, a base fee's prorated and month seconds), within
  Stripe's metadata limits (at most 50 keys, keys up to 40 characters, values up to 500).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from billing.catalog.plans import PlanCatalog
from billing.catalog.product_sync import product_key
from billing.invoicing.records import idempotency_key
from billing.kernel.money import to_minor
from billing.kernel.periods import iso
from billing.payments.provider import (
    BalanceCreditDraft,
    CollectionMethod,
    InvoiceDraft,
    ItemDraft,
)
from billing.rating.period_names import statement_title
from billing.rating.wording import fit
from billing.statements.statement import Statement, StatementLine

METADATA_VALUE_LIMIT = 500  # Stripe: metadata values up to 500 characters (keys up to 40, 50 keys)


def line_audit(line: StatementLine) -> dict[str, str]:
    """What an auditor checks a line by, as Stripe metadata (only the fields the line has): the
    exact amount before rounding, the quantity and unit price it was priced at, the plan, its
    instants, and for a base fee the seconds charged of the month's seconds."""
    fields: dict[str, object] = {
        "amount_exact": f"{line.amount_exact:f}",
        "quantity": f"{line.quantity:f}",
        "unit_price": None if line.unit_price is None else f"{line.unit_price:f}",
        "plan": line.plan,
        "period_start": iso(line.period_start),
        "period_end": iso(line.period_end),
        "adjustment_month": line.adjustment_month,
        "prorated_seconds": None if line.prorated_seconds is None else f"{line.prorated_seconds:f}",
        "month_seconds": line.month_seconds,
    }
    return {k: str(v)[:METADATA_VALUE_LIMIT] for k, v in fields.items() if v is not None}


def period_of(statement: Statement) -> dict[str, str]:
    """A tenant calendar's period as its customer reads it (``period``, its label in the tenant's
    zone, and ``time_zone``), as invoice metadata; nothing for a UTC month's statement."""
    period = statement.inputs.get("period")
    if not isinstance(period, dict):
        return {}
    return {"period": str(period["label"])[:METADATA_VALUE_LIMIT], "time_zone": str(period["time_zone"])}


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
        period = period_of(statement)
        return InvoiceDraft(
            customer_id=customer_id,
            currency=statement.currency,
            description=fit(
                statement_title(
                    statement.is_final, statement.month, period.get("period"), statement.tenant_id
                )
            ),
            metadata={
                "tenant_id": statement.tenant_id,
                "month": statement.month,
                "statement_id": statement.statement_id,
                "is_final": str(statement.is_final).lower(),
                **period,
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
            description=fit(line.description),
            period_start=line.period_start,
            period_end=line.period_end,
            metadata={
                "tenant_id": statement.tenant_id,
                "month": statement.month,
                "statement_id": statement.statement_id,
                "line_id": line.line_id,
                "kind": line.kind,
                **line_audit(line),
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
            description=f"Credit from statement {statement.statement_id} "
            f"({period_of(statement).get('period') or statement.month})",
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
