"""What the usage dashboards need besides the rollups: each tenant's monthly query quota and time zone.

DynamoDB holds the tenant records (the source of truth); ClickHouse cannot read them, so the quota in
force is exported to the ClickHouse table ``tenant_quotas`` (migration 0003): one tenant's row after
each signup, plan change and calendar change the tenant service saves, every tenant's by each
scheduled alert evaluation (``billing.adapters.clickhouse.tenant_quotas``). The limit is the one ingest
enforces: ``billing.metering.quotas.quota_limit`` (the plan in force, else the tenant's legacy quota).
The time zone is the one of the tenant's billing calendar in force at the export (``UTC`` without a
calendar): the tenant dashboard groups its figures per day at that zone's midnight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import DEFAULT_TIME_ZONE
from billing.kernel.periods import utc
from billing.metering.quotas import quota_limit
from billing.tenants.tenant import Tenant


@dataclass(frozen=True)
class QuotaRow:
    tenant_id: str
    plan: str  # "" before the tenant has a plan (legacy quota)
    query_quota: int | None  # None = unlimited
    updated_at: datetime
    time_zone: str = DEFAULT_TIME_ZONE  # an IANA name (billing.kernel.calendar.time_zones)


def quota_rows(tenants: Iterable[Tenant], catalog: PlanCatalog, at: datetime) -> list[QuotaRow]:
    at = utc(at)
    return [
        QuotaRow(
            t.id,
            t.plan_at(at) or "",
            quota_limit(t, catalog, at),
            at,
            t.calendar_history().calendar_at(at).time_zone,
        )
        for t in sorted(tenants, key=lambda t: t.id)
    ]
