"""Stripe invoicing of statements: an idempotent, resumable state machine per statement.

Where things are: ``records`` (the record, job, outcome types), ``state_machine`` (the service),
``plan`` (the dry-run request plan).

Statements (billing.statements.statement) are the source of truth for amounts; Stripe presents the invoice and
charges the saved payment method. For each statement (tenant-month) a record in BillingTable
(pk ``MONTH#{month}``, sk ``INVOICE#{tenant}``, versioned, conditional writes) walks through

    pending -> draft_created -> items_added -> finalized -> paid | payment_failed | sent | carried
    pending -> not_sent                      (total = 0: nothing is sent to Stripe)
    pending -> credited                      (total < 0: credited once to the customer's Stripe balance)

and records the Stripe ids (customer, invoice; ``gsi1pk = STRIPEINV#{invoice_id}`` for webhooks).
Each step is safe to repeat, so a job killed at any point and run again ends with exactly one Stripe
invoice per tenant-month holding each statement line once:

- every POST carries an idempotency key derived from the statement: ``{statement_id}:invoice``,
  ``{statement_id}:line:{line_id}``, ``{statement_id}:finalize``, ``{statement_id}:pay`` (and
  ``customer:{tenant_id}``); Stripe replays the first result for 24 hours;
- beyond that, state is read back from Stripe instead of assumed: a record without an invoice id
  first looks the invoice up by metadata (``statement_id``, listing the customer's invoices), a
  draft's existing items are listed and only missing ``line_id``s added, and an invoice found
  already finalized or paid moves the record forward without sending anything.

The Stripe invoice total must equal the statement total to the cent: lines are already rounded to
cents (billing.kernel.money), each becomes one item of exactly that many cents, and the draft's total is
checked before it is finalized (``InvoiceMismatch`` otherwise, which fails the job).
Invoices are ``charge_automatically`` with ``auto_advance=false``: Stripe neither charges nor retries
them on its own; this job pays once and the dunning schedule (billing.dunning) owns later attempts.
"""

from billing.invoicing.plan import plan_requests
from billing.invoicing.records import (
    MAX_STEPS,
    TERMINAL,
    InvoiceMismatch,
    InvoiceOutcome,
    InvoiceRecord,
    InvoiceRecords,
    InvoiceState,
    InvoicingJob,
    StatementInconsistent,
    StatementSource,
    idempotency_key,
    parse_job,
    statement_cents,
)
from billing.invoicing.state_machine import InvoicingService

__all__ = [
    "MAX_STEPS",
    "TERMINAL",
    "InvoiceMismatch",
    "InvoiceOutcome",
    "InvoiceRecord",
    "InvoiceRecords",
    "InvoiceState",
    "InvoicingJob",
    "InvoicingService",
    "StatementInconsistent",
    "StatementSource",
    "idempotency_key",
    "parse_job",
    "plan_requests",
    "statement_cents",
]
