"""Credits to a customer's balance: how a statement below zero reaches Stripe, which takes the
credit off the customer's next invoices at finalization.

A credit is a negative customer balance transaction carrying the statement's metadata, so it is
found again by listing the customer's balance transactions (strongly consistent), both before
crediting and when Stripe replays a saved 5xx of the creation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import StripeCalls, StripeRequest, metadata_of, segment
from billing.payments.provider import BalanceCreditDraft

if TYPE_CHECKING:
    from stripe.params import CustomerBalanceTransactionCreateParams, CustomerBalanceTransactionListParams

# Stripe refuses a longer customer balance transaction description with a 400 (other objects allow 500).
MAX_BALANCE_DESCRIPTION = 350


class BalanceTransactions(StripeCalls):
    # -- requests ---------------------------------------------------------------------------------
    def balance_credit_request(self, draft: BalanceCreditDraft) -> StripeRequest:
        params: CustomerBalanceTransactionCreateParams = {
            "amount": -draft.amount,  # negative: a credit to the customer
            "currency": draft.currency,
            "description": draft.description[:MAX_BALANCE_DESCRIPTION],
            "metadata": dict(draft.metadata),
        }
        path = f"/v1/customers/{segment(draft.customer_id)}/balance_transactions"
        return StripeRequest("post", path, params, draft.idempotency_key)

    def find_balance_credit_request(self, customer_id: str) -> StripeRequest:
        """The first page of the customer's balance transactions (``_each`` asks for the next ones)."""
        params: CustomerBalanceTransactionListParams = {"limit": 100}
        return StripeRequest("get", f"/v1/customers/{segment(customer_id)}/balance_transactions", params)

    # -- calls ------------------------------------------------------------------------------------
    def credit_balance(self, draft: BalanceCreditDraft) -> str:
        """A negative customer balance transaction (a credit Stripe applies to the next invoices)."""
        statement_id = draft.metadata.get("statement_id", "")
        txn = self._send(
            self.balance_credit_request(draft),
            stripe.CustomerBalanceTransaction,
            recover=lambda: self._balance_credit(draft.customer_id, "statement_id", statement_id),
        )
        return txn.id

    def find_balance_credit(self, customer_id: str, metadata_key: str, value: str) -> str | None:
        """Lists the customer's balance transactions (strongly consistent), newest first."""
        found = self._balance_credit(customer_id, metadata_key, value)
        return found.id if found is not None else None

    def _balance_credit(
        self, customer_id: str, metadata_key: str, value: str
    ) -> stripe.CustomerBalanceTransaction | None:
        request = self.find_balance_credit_request(customer_id)
        for txn in self._each(request, stripe.CustomerBalanceTransaction):
            if metadata_of(txn.metadata).get(metadata_key) == value:
                return txn
        return None
