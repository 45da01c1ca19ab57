"""Write the catalog's metric definitions to ClickHouse ``metric_definitions`` (migration 0006), so
the Grafana dashboards can chart any catalog metric from the per-metric rollup.

One export is one batch of rows with the same ``exported_at``; the dashboards read the newest batch
only, so the list is always the catalog of the last export (``billing db migrate`` exports it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.metrics import MILLISECONDS_PER, MetricDefinition
from billing.catalog.plans import PlanCatalog

COLUMNS = [
    "id", "name", "unit", "aggregation", "event_types", "models", "filters", "property", "field",
    "per_ms", "exported_at",
]  # fmt: skip


def definition_row(metric: MetricDefinition, at: datetime) -> list[object]:
    filters = [(f.property, int(f.in_ is not None), list(f.in_ or f.not_in or [])) for f in metric.filters]
    return [
        metric.id,
        metric.name,
        metric.unit,
        metric.aggregation,
        list(metric.event_types),
        list(metric.models or []),
        filters,
        metric.property or "",
        metric.field or "",
        MILLISECONDS_PER[metric.per] if metric.per else 0,
        at,
    ]


def export_metric_definitions(
    store: ClickHouseUsageStore, catalog: PlanCatalog, at: datetime | None = None
) -> int:
    """Export every catalog metric; a catalog without metrics exports one row of id '' (which the
    dashboards never list), so its batch still replaces the previous one."""
    at = at or datetime.now(UTC)
    rows = [definition_row(m, at) for m in catalog.metrics]
    empty = [["", "", "", "count", [], [], [], "", "", 0, at]]
    store.client.insert("metric_definitions", rows or empty, column_names=COLUMNS)
    return len(rows)
