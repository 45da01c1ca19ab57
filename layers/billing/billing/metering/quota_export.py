"""What the usage dashboards need besides the rollups: each tenant's monthly query quota.

DynamoDB holds the tenant records (the source of truth); ClickHouse cannot read them, so the quota in
force is exported to the ClickHouse table ``tenant_quotas`` (migration 0003) whenever tenants or
plans change (``billing.adapters.clickhouse.tenant_quotas.export_tenant_quotas``). The limit is the one ingest
enforces: ``billing.metering.quotas.quota_limit`` (the plan in force, else the tenant's legacy quota).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import utc
from billing.metering.quotas import quota_limit
from billing.tenants.tenant import Tenant


@dataclass(frozen=True)
class QuotaRow:
    tenant_id: str
    plan: str  # "" before the tenant has a plan (legacy quota)
    query_quota: int | None  # None = unlimited
    updated_at: datetime


def quota_rows(tenants: Iterable[Tenant], catalog: PlanCatalog, at: datetime) -> list[QuotaRow]:
    at = utc(at)
    return [
        QuotaRow(t.id, t.plan_at(at) or "", quota_limit(t, catalog, at), at)
        for t in sorted(tenants, key=lambda t: t.id)
    ]
