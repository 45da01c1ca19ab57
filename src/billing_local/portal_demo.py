"""Demo data for the tenant usage page: one tenant with last month's and this month's usage (through
the real ingest service, so quota counters move), and an open invoice of last month."""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.invoicing import InvoiceRecord
from billing.kernel.periods import Month, iso, utc
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing.tenants.tenant import PlanAssignment, Tenant
from billing_local.usage_generator import month_of_usage


def seed_demo_tenant(tenant_id: str, now: datetime, *, events_per_month: int = 3000) -> Tenant:
    now = utc(now)
    current = Month.of(now)
    previous = current.previous()
    tenant = Tenant(
        id=tenant_id,
        name=tenant_id.replace("-", " ").title(),
        email=f"billing@{tenant_id}.example",
        plans=[PlanAssignment(plan="starter", effective_at=previous.start - timedelta(days=31))],
    )
    container.tenants().create(tenant)
    service = container.ingest_service()
    for month, seed in ((previous, 1), (current, 2)):
        events = [
            UsageEvent.model_validate(e)
            for e in month_of_usage(tenant_id, month, events_per_month, seed=seed, prefix=f"{month}-")
            if e["timestamp"] < iso(now)
        ]
        for start in range(0, len(events), 500):
            service.ingest(events[start : start + 500])
    statement, _ = container.billing_cycle().statement(tenant_id, previous)
    container.invoice_records().save(
        InvoiceRecord(
            tenant_id=tenant_id,
            month=str(previous),
            statement_id=statement.statement_id,
            state="finalized",
            total_cents=int(statement.total * 100),
            invoice_id=f"in_demo_{previous.year}{previous.month:02d}",
            invoice_status="open",
            invoice_number=f"DEMO-{previous.year}{previous.month:02d}",
            hosted_invoice_url="https://invoice.stripe.com/i/acct_demo/test_demo",
        )
    )
    return container.tenants().get(tenant_id) or tenant
