"""Stripe invoicing of statements: an idempotent, resumable state machine per statement.

Where things are:

- ``records``: the invoice record, its states, the job message, outcomes, the statement total in cents;
- ``state_machine``: ``InvoiceStateMachine``, the per-statement walk from ``pending`` to a terminal state;
- ``customers``: ``CustomerLinker``, the tenant's one Stripe customer (signup and card on file use it too);
- ``drafts``: ``Drafts``, the invoice, item and balance-credit requests built from a statement;
- ``push``: ``push_month``, a month's statements invoiced on a thread pool;
- ``service``: ``InvoicingService``, those parts wired together behind ``invoice``, ``push`` and
  ``ensure_customer`` (what handlers, the CLI and the container call);
- ``plan``: the dry-run request plan (``billing invoice push --dry-run``).

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

from billing.invoicing.customers import CustomerLinker, customer_draft
from billing.invoicing.drafts import Drafts
from billing.invoicing.plan import plan_requests
from billing.invoicing.push import push_month
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
from billing.invoicing.service import InvoicingService
from billing.invoicing.state_machine import InvoiceStateMachine

__all__ = [
    "MAX_STEPS",
    "TERMINAL",
    "CustomerLinker",
    "Drafts",
    "InvoiceMismatch",
    "InvoiceOutcome",
    "InvoiceRecord",
    "InvoiceRecords",
    "InvoiceState",
    "InvoiceStateMachine",
    "InvoicingJob",
    "InvoicingService",
    "StatementInconsistent",
    "StatementSource",
    "customer_draft",
    "idempotency_key",
    "parse_job",
    "plan_requests",
    "push_month",
    "statement_cents",
]
