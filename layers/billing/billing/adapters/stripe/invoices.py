"""Invoices: one per statement, created as a draft, itemized, finalized, then charged once.

Invoices are created with ``auto_advance=False`` (and finalized with ``auto_advance=False``):
Stripe never finalizes, charges or retries them on its own; our job pays once and the dunning
schedule owns every later attempt. ``collection_method`` is ``charge_automatically`` when the
customer has a card on file; without one it is ``send_invoice``, with Stripe's due date
(``days_until_due``) on its hosted page. Pending invoice items are never swept in: an invoice holds
only the items added to it.

An invoice is found again by listing the customer's invoices (strongly consistent, unlike search)
for its ``metadata.statement_id``: before creating one, and when Stripe replays a saved 5xx of the
creation. A replayed 5xx of a finalize or a pay is recovered by retrieving the invoice: once it has
left ``draft`` (or ``open``) the work is done.

Card errors are values (``PaymentAttempt``), not exceptions; so is a request Stripe refuses while
the invoice stays open (e.g. no payment method on file), since the dunning schedule retries those
too. Other invalid requests raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import (
    MAX_DESCRIPTION,
    StripeCalls,
    StripeRequest,
    id_of,
    metadata_of,
    segment,
    was_replayed,
)
from billing.payments.provider import InvoiceDraft, InvoiceSummary, PaymentAttempt

if TYPE_CHECKING:
    from stripe.params import (
        InvoiceCreateParams,
        InvoiceFinalizeInvoiceParams,
        InvoiceListParams,
        InvoicePayParams,
        InvoiceSendInvoiceParams,
    )


class Invoices(StripeCalls):
    days_until_due: int
    automatic_tax: bool

    # -- requests ---------------------------------------------------------------------------------
    def invoice_request(self, draft: InvoiceDraft) -> StripeRequest:
        params: InvoiceCreateParams = {
            "customer": draft.customer_id,
            "currency": draft.currency,
            "collection_method": draft.collection_method,
            "auto_advance": False,  # Stripe never finalizes, charges or retries on its own
            "pending_invoice_items_behavior": "exclude",
            "description": draft.description[:MAX_DESCRIPTION],
            "metadata": dict(draft.metadata),
        }
        if draft.collection_method == "send_invoice":
            params["days_until_due"] = self.days_until_due  # Stripe's due date, shown on the hosted page
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}  # Stripe adds tax on top of our lines
        return StripeRequest("post", "/v1/invoices", params, draft.idempotency_key)

    def get_invoice_request(self, invoice_id: str) -> StripeRequest:
        return StripeRequest("get", f"/v1/invoices/{segment(invoice_id)}", {})

    def find_invoice_request(self, customer_id: str) -> StripeRequest:
        """The first page of the customer's invoices (``_each`` asks for the next ones)."""
        params: InvoiceListParams = {"customer": customer_id, "limit": 100}
        return StripeRequest("get", "/v1/invoices", params)

    def finalize_request(self, invoice_id: str, idempotency_key: str) -> StripeRequest:
        params: InvoiceFinalizeInvoiceParams = {"auto_advance": False}
        return StripeRequest("post", f"/v1/invoices/{segment(invoice_id)}/finalize", params, idempotency_key)

    def send_request(self, invoice_id: str, idempotency_key: str) -> StripeRequest:
        params: InvoiceSendInvoiceParams = {}
        return StripeRequest("post", f"/v1/invoices/{segment(invoice_id)}/send", params, idempotency_key)

    def pay_request(self, invoice_id: str, idempotency_key: str) -> StripeRequest:
        params: InvoicePayParams = {"off_session": True}
        return StripeRequest("post", f"/v1/invoices/{segment(invoice_id)}/pay", params, idempotency_key)

    # -- calls ------------------------------------------------------------------------------------
    def create_draft_invoice(self, draft: InvoiceDraft) -> InvoiceSummary:
        statement_id = draft.metadata.get("statement_id", "")
        invoice = self._send(
            self.invoice_request(draft),
            stripe.Invoice,
            recover=lambda: self._invoice_by_metadata(draft.customer_id, "statement_id", statement_id),
        )
        return _invoice_summary(invoice, replayed=was_replayed(invoice))

    def get_invoice(self, invoice_id: str) -> InvoiceSummary:
        return _invoice_summary(self._send(self.get_invoice_request(invoice_id), stripe.Invoice))

    def find_invoices(self, customer_id: str, metadata_key: str, value: str) -> list[InvoiceSummary]:
        """The customer's non-void invoices whose metadata[key] == value, newest first. Lists by
        customer (strongly consistent, unlike search), so it also finds one created a moment ago."""
        return [_invoice_summary(i) for i in self._invoices_by_metadata(customer_id, metadata_key, value)]

    def finalize_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary:
        invoice = self._send(
            self.finalize_request(invoice_id, idempotency_key),
            stripe.Invoice,
            recover=lambda: self._invoice_unless(invoice_id, "draft"),
        )
        return _invoice_summary(invoice)

    def send_invoice(self, invoice_id: str, *, idempotency_key: str) -> InvoiceSummary:
        """Stripe emails the customer the invoice with its hosted payment page (send_invoice)."""
        invoice = self._send(self.send_request(invoice_id, idempotency_key), stripe.Invoice)
        return _invoice_summary(invoice)

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> PaymentAttempt:
        """Charge the customer's saved payment method once. Declines come back as a value; so does a
        request Stripe refuses while the invoice stays open (e.g. no payment method on file), since
        the dunning schedule retries those too. Anything else raises."""
        try:
            invoice = self._send(
                self.pay_request(invoice_id, idempotency_key),
                stripe.Invoice,
                recover=lambda: self._invoice_unless(invoice_id, "open"),
            )
        except stripe.CardError as exc:
            status = self.get_invoice(invoice_id).status
            return PaymentAttempt(False, status, _decline_code(exc), exc.user_message or str(exc))
        except stripe.InvalidRequestError as exc:
            status = self.get_invoice(invoice_id).status
            if status == "paid":
                return PaymentAttempt(True, status)
            if status == "open":
                return PaymentAttempt(
                    False, status, exc.code or "invalid_request", exc.user_message or str(exc)
                )
            raise
        summary = _invoice_summary(invoice)
        return PaymentAttempt(summary.status == "paid", summary.status)

    def _invoice_by_metadata(self, customer_id: str, key: str, value: str) -> stripe.Invoice | None:
        found = self._invoices_by_metadata(customer_id, key, value)
        return found[0] if found and value else None

    def _invoices_by_metadata(self, customer_id: str, metadata_key: str, value: str) -> list[stripe.Invoice]:
        invoices = self._each(self.find_invoice_request(customer_id), stripe.Invoice)
        return [
            i for i in invoices if metadata_of(i.metadata).get(metadata_key) == value and i.status != "void"
        ]

    def _invoice_unless(self, invoice_id: str, status: str) -> stripe.Invoice | None:
        """The invoice when it has left ``status`` (the replayed call's work is done), else None."""
        invoice = self._send(self.get_invoice_request(invoice_id), stripe.Invoice)
        return invoice if invoice.status != status else None


def _decline_code(exc: stripe.CardError) -> str | None:
    error = exc.error
    decline = getattr(error, "decline_code", None) if error is not None else None
    return str(decline) if decline else exc.code


def _invoice_summary(invoice: stripe.Invoice, *, replayed: bool = False) -> InvoiceSummary:
    return InvoiceSummary(
        id=str(invoice.id),
        customer_id=id_of(invoice.customer),
        status=str(invoice.status or ""),
        total=int(invoice.total),
        amount_due=int(invoice.amount_due),
        amount_paid=int(invoice.amount_paid),
        currency=str(invoice.currency),
        metadata=metadata_of(invoice.metadata),
        number=invoice.number,
        hosted_invoice_url=invoice.hosted_invoice_url,
        auto_advance=invoice.auto_advance,
        collection_method=str(invoice.collection_method or "charge_automatically"),
        total_excluding_tax=int(
            invoice.total_excluding_tax if invoice.total_excluding_tax is not None else invoice.total
        ),
        replayed=replayed,
    )
