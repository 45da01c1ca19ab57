"""Stripe customer linking: each tenant has one Stripe customer, created at most once.

Signup, the card-on-file flow and the first invoice all reach the customer through ``CustomerLinker``.
Invariants:

- once the tenant record holds a ``stripe_customer_id``, that id is the answer and nothing is sent;
- before creating, the customer is looked up by the tenant id (Stripe metadata), so one made by an
  earlier call whose link was lost is found instead of made again; the lookup is a search, which can
  miss a customer created seconds ago, and the creation's idempotency key covers that window;
- the tenant record is linked with a write that only sets an absent id and returns the one stored:
  when two callers race, both return the first linked customer (the other one is never used);
- the creation key (``customer:{tenant}:{digest}``) changes with the name and email sent, because
  Stripe answers a reused key carrying different parameters with a 400 that no retry gets past.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from billing.payments.provider import CustomerDraft, PaymentGateway
from billing.runtime.observability import logger
from billing.tenants.tenant import Tenant, TenantStore, unknown_tenant


class CustomerLinker:
    def __init__(self, *, tenants: TenantStore, gateway: Callable[[], PaymentGateway]):
        """``gateway`` is called on each use that needs Stripe; the caller decides whether it is built
        once (a tenant already linked never calls it)."""
        self.tenants = tenants
        self._gateway = gateway

    def ensure(self, tenant_id: str) -> str:
        """The tenant's Stripe customer id, creating the customer once (signup, or the first invoice)."""
        return self.link(tenant_id)[0]

    def link(self, tenant_id: str) -> tuple[str, bool]:
        """(customer id, whether this call created the customer). A customer created just now holds
        nothing yet, so the caller may skip looking for its invoices or credits."""
        tenant = self.tenant(tenant_id)
        if tenant.stripe_customer_id:
            return tenant.stripe_customer_id, False
        draft = customer_draft(tenant)
        gateway = self._gateway()
        existing = gateway.find_customer(tenant.id)
        if existing is not None:
            customer_id, new = existing, False
        else:
            created = gateway.create_customer(draft)
            customer_id, new = created.id, not created.replayed
        linked = self.tenants.link_stripe_customer(tenant.id, customer_id)
        if linked is None:
            raise unknown_tenant([tenant_id])
        if linked != customer_id:
            return linked, False  # a concurrent job linked its customer first: that one is the tenant's
        logger.info("stripe customer linked", extra={"tenant_id": tenant.id, "customer_id": customer_id})
        return customer_id, new

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise unknown_tenant([tenant_id])
        return tenant


def customer_draft(tenant: Tenant) -> CustomerDraft:
    """The customer to create for ``tenant`` (its name, or its id when it has none)."""
    name = tenant.name or tenant.id
    # The key depends on what is sent: Stripe answers a changed name or email under a used key
    # with a 400 that no retry gets past. The lookup before creating finds an earlier one.
    digest = hashlib.sha256(f"{name}\n{tenant.email}".encode()).hexdigest()[:12]
    return CustomerDraft(
        tenant_id=tenant.id,
        name=name,
        email=tenant.email,
        idempotency_key=f"customer:{tenant.id}:{digest}",
    )
