"""Wiring for rating, the monthly close and the tenant lifecycle (providers in the container style)."""
from __future__ import annotations

from functools import lru_cache

from billing import container
from billing.close import BillingCycle
from billing.rating import Rater
from billing.tenant_service import TenantService


@lru_cache(maxsize=1)
def rater() -> Rater:
    return Rater(container.plan_catalog())


@lru_cache(maxsize=1)
def billing_cycle() -> BillingCycle:
    from billing.adapters.close_io import InvoiceArchive, InvoicingJobs, QueueDepth
    from billing.adapters.rating_queries import RatingQueries

    s = container.settings()
    return BillingCycle(
        tenants=container.tenants(), periods=container.periods(), statements=container.statements(),
        queries=RatingQueries(container.usage_store()), rater=rater(),
        jobs=InvoicingJobs(s.invoicing_queue_url, s.billing_table), archive=InvoiceArchive(s.invoices_bucket),
        fallback_depth=QueueDepth(s.fallback_queue_url))


@lru_cache(maxsize=1)
def tenant_service() -> TenantService:
    from billing.adapters.dynamodb import is_conditional_failure

    def is_conflict(exc: Exception) -> bool:
        return hasattr(exc, "response") and is_conditional_failure(exc)  # type: ignore[arg-type]

    return TenantService(tenants=container.tenants(), catalog=container.plan_catalog(),
                         periods=container.periods(), cycle=billing_cycle(), is_conflict=is_conflict,
                         link_customer=_link_stripe_customer)


def _link_stripe_customer(tenant_id: str) -> None:
    from billing.invoicing import invoicing_service

    invoicing_service().ensure_customer(tenant_id)


def _reset() -> None:
    from billing.adapters import close_io

    close_io.reset_clients()
    for provider in (rater, billing_cycle, tenant_service):
        provider.cache_clear()


container.on_reset(_reset)
