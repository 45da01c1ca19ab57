"""Statements: the rated, rounded result of a tenant's month; the source of truth for invoices.

A statement is immutable once stored. ``line_id`` values are stable across re-computation, so
they serve as Stripe idempotency keys (``{statement_id}:{line_id}``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from billing.kernel.periods import iso

LineKind = Literal[
    "base_fee", "queries", "usage_cost", "adjustment", "charge", "commitment", "coupon", "credit"
]


class StatementLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    line_id: str  # stable within the statement, e.g. "base:starter:1"
    kind: LineKind
    description: str  # what the customer reads (billing.rating.wording); never audited by
    plan: str | None = None
    quantity: Decimal  # what the customer counts: units, requests, packages; 1 for a fee or a credit
    unit_price: Decimal | None = None
    amount_exact: Decimal  # unrounded
    amount: Decimal  # rounded half-up once to the currency's minor unit (cents for USD)
    period_start: datetime
    period_end: datetime
    adjustment_month: str | None = None  # for prior-period adjustment lines
    # A base fee's proration, for audit: amount_exact = fee x prorated_seconds / month_seconds.
    prorated_seconds: Decimal | None = None
    month_seconds: int | None = None

    @field_serializer("period_start", "period_end")
    def _ser(self, value: datetime) -> str:
        return iso(value)


class Statement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    statement_id: str  # "{tenant_id}:{YYYY-MM}"
    tenant_id: str
    month: str  # YYYY-MM
    currency: str = "usd"
    period_start: datetime
    period_end: datetime  # exclusive; canceled_at for a final statement
    is_final: bool = False
    invoice_date: str  # YYYY-MM-DD
    lines: list[StatementLine] = Field(default_factory=list)
    total: Decimal  # sum of the rounded lines
    total_queries: int = 0
    total_tokens: int = 0
    # Every stored event of the month the statement counted (trial included), what the reconcile
    # compares with the store; None on statements stored before events were counted.
    total_events: int | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)  # versions/digests of what it was rated from

    @field_serializer("period_start", "period_end")
    def _ser(self, value: datetime) -> str:
        return iso(value)

    @staticmethod
    def make_id(tenant_id: str, month: str) -> str:
        return f"{tenant_id}:{month}"
