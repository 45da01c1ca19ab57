"""Customers: one per tenant, named by ``metadata.tenant_id``.

Finding a tenant's customer uses search, which is eventually consistent: a customer created seconds
ago may be missing, so creation is idempotent by key (the same draft twice is one customer). When
Stripe replays a saved 5xx of a creation, the customer is looked up by listing (strongly
consistent) the customers with the draft's email, or, for a tenant without one, the customers
created within the key's lifetime (Stripe keeps a key's result 24 hours), by ``metadata.tenant_id``.
A customer found that way was made by an earlier attempt, so it is reported as replayed, not new.
The default payment method is read with a retrieve (strongly consistent) and set idempotently (the
same value twice is one state).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import stripe

from billing.adapters.stripe.client import (
    StripeCalls,
    StripeRequest,
    id_of,
    metadata_of,
    segment,
    was_replayed,
)
from billing.payments.provider import CreatedCustomer, CustomerDraft

if TYPE_CHECKING:
    from stripe.params import (
        CustomerCreateParams,
        CustomerListParams,
        CustomerSearchParams,
        CustomerUpdateParams,
    )


KEY_LIFETIME_S = 24 * 3600  # Stripe keeps an idempotency key's result this long
CLOCK_SKEW_S = 3600  # our clock against Stripe's ``created``, with room to spare


class Customers(StripeCalls):
    # -- requests ---------------------------------------------------------------------------------
    def find_customer_request(self, tenant_id: str) -> StripeRequest:
        params: CustomerSearchParams = {"query": f"metadata['tenant_id']:'{_quote(tenant_id)}'", "limit": 10}
        return StripeRequest("get", "/v1/customers/search", params)

    def customer_request(self, draft: CustomerDraft) -> StripeRequest:
        params: CustomerCreateParams = {"metadata": {"tenant_id": draft.tenant_id}}
        if draft.name:
            params["name"] = draft.name
        if draft.email:
            params["email"] = draft.email
        if draft.test_clock:
            params["test_clock"] = draft.test_clock
        return StripeRequest("post", "/v1/customers", params, draft.idempotency_key)

    def customers_by_email_request(self, email: str) -> StripeRequest:
        params: CustomerListParams = {"email": email, "limit": 100}
        return StripeRequest("get", "/v1/customers", params)

    def customers_created_since_request(self, since: int) -> StripeRequest:
        params: CustomerListParams = {"created": {"gte": since}, "limit": 100}
        return StripeRequest("get", "/v1/customers", params)

    def retrieve_customer_request(self, customer_id: str) -> StripeRequest:
        return StripeRequest("get", f"/v1/customers/{segment(customer_id)}", {})

    def default_payment_method_request(self, customer_id: str, payment_method_id: str) -> StripeRequest:
        params: CustomerUpdateParams = {"invoice_settings": {"default_payment_method": payment_method_id}}
        key = f"default-pm:{customer_id}:{payment_method_id}"
        return StripeRequest("post", f"/v1/customers/{segment(customer_id)}", params, key)

    # -- calls ------------------------------------------------------------------------------------
    def find_customer(self, tenant_id: str) -> str | None:
        """The customer whose metadata names this tenant (search API; eventually consistent, so a
        customer created seconds ago may be missing: creation is idempotent by key for that)."""
        result = self._send(self.find_customer_request(tenant_id), stripe.SearchResultObject)
        live = [c for c in result.data if not getattr(c, "deleted", False)]
        return min(live, key=lambda c: c.created).id if live else None

    def create_customer(self, draft: CustomerDraft) -> CreatedCustomer:
        recovered: list[stripe.Customer] = []

        def recover() -> stripe.Customer | None:
            found = self._lost_customer(draft)
            recovered.extend([found] if found is not None else [])
            return found

        customer = self._send(self.customer_request(draft), stripe.Customer, recover=recover)
        return CreatedCustomer(customer.id, was_replayed(customer) or bool(recovered))

    def ensure_customer(self, draft: CustomerDraft) -> str:
        """Find the tenant's customer by metadata, else create it (idempotent by tenant id)."""
        return self.find_customer(draft.tenant_id) or self.create_customer(draft).id

    def _lost_customer(self, draft: CustomerDraft) -> stripe.Customer | None:
        """The tenant's customer made behind a replayed 5xx, by listing (strongly consistent) the
        customers with its email, or without one those created while the key's result is kept."""
        if draft.email:
            request = self.customers_by_email_request(draft.email)
        else:
            request = self.customers_created_since_request(int(time.time()) - KEY_LIFETIME_S - CLOCK_SKEW_S)
        mine = [
            c
            for c in self._each(request, stripe.Customer)
            if metadata_of(c.metadata).get("tenant_id") == draft.tenant_id
        ]
        return min(mine, key=lambda c: c.created) if mine else None

    def payment_method_on_file(self, customer_id: str) -> str | None:
        """The customer's invoices' default payment method (a retrieve: strongly consistent)."""
        customer = self._send(self.retrieve_customer_request(customer_id), stripe.Customer)
        settings = customer.invoice_settings
        default = settings.default_payment_method if settings is not None else None
        return id_of(default) if default else None

    def set_default_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        """Make the saved card the one invoices charge (idempotent: the same value twice is one state)."""
        self._send(self.default_payment_method_request(customer_id, payment_method_id), stripe.Customer)


def _quote(value: str) -> str:
    """A value inside a search query's single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
