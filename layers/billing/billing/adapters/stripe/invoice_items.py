"""Invoice items: one per statement line, on the statement's draft invoice.

Each item carries its line's ``metadata.line_id`` and is created under the line's idempotency key,
so a rerun adds no line twice; when Stripe replays a saved 5xx of a creation, the item is looked
up by listing the invoice's items (strongly consistent). Amounts are the line's integer cents:
a line whose product is known names it through an inline one-off price (quantity 1 x the line's
cents), any other line (a credit, below zero) is a plain amount. Stripe's period end is inclusive,
ours exclusive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import MAX_DESCRIPTION, StripeCalls, StripeRequest, id_of, metadata_of
from billing.payments.provider import ItemDraft, ItemSummary

if TYPE_CHECKING:
    from stripe.params import InvoiceItemCreateParams, InvoiceItemCreateParamsPriceData, InvoiceItemListParams


class InvoiceItems(StripeCalls):
    # -- requests ---------------------------------------------------------------------------------
    def item_request(self, draft: ItemDraft) -> StripeRequest:
        params: InvoiceItemCreateParams = {
            "customer": draft.customer_id,
            "invoice": draft.invoice_id,
            "currency": draft.currency,
            "description": draft.description[:MAX_DESCRIPTION],
            "period": {
                "start": int(draft.period_start.timestamp()),
                # Stripe's period end is inclusive; ours is exclusive.
                "end": max(int(draft.period_start.timestamp()), int(draft.period_end.timestamp()) - 1),
            },
            "metadata": dict(draft.metadata),
        }
        if draft.product_id and draft.amount >= 0:
            # The current API has no `product` on invoice items: a product is named through an inline
            # one-off price. quantity 1 x unit_amount keeps the amount exactly the line's cents.
            price_data: InvoiceItemCreateParamsPriceData = {
                "currency": draft.currency,
                "product": draft.product_id,
                "unit_amount": draft.amount,
            }
            params["price_data"] = price_data
            params["quantity"] = 1
        else:
            params["amount"] = draft.amount
        return StripeRequest("post", "/v1/invoiceitems", params, draft.idempotency_key)

    def list_items_request(self, invoice_id: str) -> StripeRequest:
        """The first page of the invoice's items (``_each`` asks for the next ones)."""
        params: InvoiceItemListParams = {"invoice": invoice_id, "limit": 100}
        return StripeRequest("get", "/v1/invoiceitems", params)

    # -- calls ------------------------------------------------------------------------------------
    def add_invoice_item(self, draft: ItemDraft) -> ItemSummary:
        line_id = draft.metadata.get("line_id")
        item = self._send(
            self.item_request(draft),
            stripe.InvoiceItem,
            recover=lambda: next(
                (
                    i
                    for i in self._items(draft.invoice_id)
                    if line_id and metadata_of(i.metadata).get("line_id") == line_id
                ),
                None,
            ),
        )
        return _item_summary(item)

    def list_invoice_items(self, invoice_id: str) -> list[ItemSummary]:
        return [_item_summary(i) for i in self._items(invoice_id)]

    def _items(self, invoice_id: str) -> list[stripe.InvoiceItem]:
        return list(self._each(self.list_items_request(invoice_id), stripe.InvoiceItem))


def _item_summary(item: stripe.InvoiceItem) -> ItemSummary:
    invoice = item.invoice
    return ItemSummary(
        id=str(item.id),
        invoice_id=id_of(invoice) if invoice else None,
        amount=int(item.amount),
        metadata=metadata_of(item.metadata),
    )
