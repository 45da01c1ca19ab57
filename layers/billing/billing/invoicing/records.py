"""Invoice records, the invoicing job message, outcomes, and the statement total in cents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from billing.kernel.errors import Conflict, InvalidRequest
from billing.kernel.money import to_minor
from billing.kernel.periods import Month
from billing.kernel.validation import Identifier, validation_details
from billing.statements.statement import Statement

InvoiceState = Literal[
    "pending",
    "draft_created",
    "items_added",
    "finalized",
    "paid",
    "payment_failed",
    "sent",
    "carried",
    "credited",
    "not_sent",
]
# sent: the tenant had no payment method; Stripe emailed the invoice (hosted page, due date).
# carried: below Stripe's minimum charge; Stripe marked it paid without a charge and added the amount
# to the customer's balance, which its next invoice collects.
# credited: the statement's total is below zero (a late adjustment lowered a charge already billed);
# the amount is credited to the customer's Stripe balance, which its next invoices use up.
TERMINAL: frozenset[str] = frozenset({"paid", "payment_failed", "sent", "carried", "credited", "not_sent"})
MAX_STEPS = 20  # enough for every state plus a few lost races


class InvoiceRecord(BaseModel):
    """The invoicing state of one statement (BillingTable, pk MONTH#{month} sk INVOICE#{tenant})."""

    model_config = ConfigDict(extra="ignore")
    tenant_id: str
    month: str
    statement_id: str
    state: InvoiceState = "pending"
    version: int = 0
    is_final: bool = False
    currency: str = "usd"
    total_cents: int = 0  # the statement's total, in integer cents
    customer_id: str | None = None
    invoice_id: str | None = None
    invoice_status: str | None = None  # Stripe's status as last seen here
    collection_method: str = "charge_automatically"  # send_invoice: no payment method on file
    invoice_number: str | None = None
    hosted_invoice_url: str | None = None
    stripe_total: int | None = None  # Stripe's total once finalized (== total_cents, checked)
    carried_to_balance: int | None = None  # cents Stripe moved to the customer's balance (minimum charge)
    credited_to_balance: int | None = None  # cents credited to the customer's balance (a total below zero)
    balance_transaction_id: str | None = None  # Stripe's id of that credit
    lines: int = 0  # statement lines on the Stripe invoice
    payment_succeeded: bool | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    reason: str | None = None  # why a statement was not sent
    created_at: str | None = None
    updated_at: str | None = None


class StatementSource(Protocol):
    def get(self, tenant_id: str, month: Month | str) -> Statement | None: ...

    def list_month(self, month: Month | str) -> list[Statement]: ...


class InvoiceRecords(Protocol):
    """Invoice records with versioned conditional writes: ``save`` returns None when another writer
    moved the record first (re-read it and continue from its state)."""

    def get(self, tenant_id: str, month: str) -> InvoiceRecord | None: ...

    def save(self, record: InvoiceRecord) -> InvoiceRecord | None: ...


class StatementInconsistent(InvalidRequest):
    code = "statement_inconsistent"


class TooManyLines(InvalidRequest):
    code = "too_many_invoice_lines"


class InvoiceMismatch(Conflict):
    code = "invoice_mismatch"


class InvoicingJob(BaseModel):
    """The SQS message body: ``{"tenant_id": "...", "month": "YYYY-MM"}``."""

    model_config = ConfigDict(extra="forbid")
    tenant_id: Identifier
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")


def parse_job(body: str | bytes | dict[str, Any]) -> InvoicingJob:
    """An invoicing message to a job, or InvalidRequest naming each bad field."""
    try:
        if isinstance(body, dict):
            return InvoicingJob.model_validate(body)
        return InvoicingJob.model_validate_json(body)
    except ValidationError as exc:
        details = validation_details(exc)
        raise InvalidRequest(
            'invoicing job must be {"tenant_id": "...", "month": "YYYY-MM"}', details=details
        ) from None


@dataclass
class InvoiceOutcome:
    tenant_id: str
    month: str
    state: str
    total_cents: int
    invoice_id: str | None = None
    invoice_status: str | None = None
    stripe_total: int | None = None
    failure_code: str | None = None
    error: str | None = None
    credited_to_balance: int | None = None

    @classmethod
    def of(cls, record: InvoiceRecord) -> InvoiceOutcome:
        return cls(
            record.tenant_id,
            record.month,
            record.state,
            record.total_cents,
            record.invoice_id,
            record.invoice_status,
            record.stripe_total,
            record.failure_code,
            credited_to_balance=record.credited_to_balance,
        )

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def statement_cents(statement: Statement) -> int:
    """The statement total in integer cents, after checking it is the sum of its (cent) lines."""
    try:
        lines = sum(to_minor(line.amount, statement.currency) for line in statement.lines)
        total = to_minor(statement.total, statement.currency)
    except ValueError as exc:
        raise StatementInconsistent(f"statement {statement.statement_id}: {exc}") from None
    if lines != total:
        raise StatementInconsistent(
            f"statement {statement.statement_id}: lines sum to {lines} cents but the total is {total} cents"
        )
    return total


def idempotency_key(statement_id: str, step: str) -> str:
    return f"{statement_id}:{step}"
