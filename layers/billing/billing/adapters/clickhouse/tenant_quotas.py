"""Write tenants' quotas and time zones to ClickHouse ``tenant_quotas`` for the dashboards' "quota
used %" panels and the tenant dashboard's local days."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.plans import PlanCatalog
from billing.metering.quota_export import QuotaRow, quota_rows
from billing.tenants.tenant import Tenant

COLUMNS = ["tenant_id", "plan", "query_quota", "updated_at", "time_zone"]


def write_quotas(store: ClickHouseUsageStore, rows: Sequence[QuotaRow]) -> int:
    """Append one row per tenant; the newest updated_at wins in every dashboard query (argMax)."""
    if rows:
        store.client.insert(
            "tenant_quotas",
            [[r.tenant_id, r.plan, r.query_quota, r.updated_at, r.time_zone] for r in rows],
            column_names=COLUMNS,
        )
    return len(rows)


def export_tenant_quotas(
    tenants: Any, store: ClickHouseUsageStore, catalog: PlanCatalog, at: datetime | None = None
) -> int:
    """Export every tenant's quota in force at ``at`` (default now). ``tenants`` is a TenantRepository."""
    return write_quotas(store, quota_rows(tenants.list_all(), catalog, at or datetime.now(UTC)))


def export_tenant_quota(
    tenant: Tenant, store: ClickHouseUsageStore, catalog: PlanCatalog, at: datetime
) -> int:
    """Export one tenant's quota and time zone in force at ``at`` (after a change of its plan or
    calendar). Idempotent: the same row again changes nothing a dashboard reads."""
    return write_quotas(store, quota_rows([tenant], catalog, at))


def current_quotas(store: ClickHouseUsageStore) -> dict[str, int | None]:
    rows = store.query(
        "SELECT tenant_id, argMax(tuple(query_quota), updated_at).1 FROM tenant_quotas GROUP BY tenant_id"
    )
    return {r[0]: r[1] for r in rows}
