"""Write the catalog's metric definitions to ClickHouse ``metric_definitions`` (migration 0006), so
the Grafana dashboards can chart any catalog metric, and keep ``metric_points`` (migration 0011) in
step with them.

One export is one batch of rows with the same ``exported_at``; the dashboards read the newest batch
only, so the list is always the catalog of the last export (``billing db migrate`` exports it).

``metric_points`` is filled by a view that applies the definitions newest when each event is stored,
so an export whose newest batch adds, changes or removes a metric rebuilds that metric's rows: the
rows stored before the export are deleted and read again from ``usage_events`` through the view's
own query (``system.tables.as_select``: the one place the metric's types, models, filters and
values are written), after the new batch is visible. An event stored while the export runs may be
read twice (harmless: the same key, FINAL keeps one) or, in the same millisecond as the switch, with
the old definition, so export while ingest is quiet, as migration 0006's backfill asks.
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
    before = newest_definitions(store)
    store.client.insert("metric_definitions", rows or empty, column_names=COLUMNS)
    after = newest_definitions(store)
    changed = sorted(m for m in before.keys() | after.keys() if before.get(m) != after.get(m))
    if changed:
        rebuild_metric_points(store, changed)
    return len(rows)


def newest_definitions(store: ClickHouseUsageStore) -> dict[str, tuple[object, ...]]:
    """The metrics of the newest export, by id, as the points view reads them."""
    rows = store.query(
        "SELECT id, aggregation, event_types, models, filters, property, field FROM metric_definitions "
        "WHERE id != '' AND exported_at = (SELECT max(exported_at) FROM metric_definitions)"
    )
    return {str(row[0]): tuple(map(repr, row[1:])) for row in rows}


def rebuild_metric_points(store: ClickHouseUsageStore, metric_ids: list[str]) -> None:
    """Replace these metrics' rows stored until now by the rows the newest definitions make of the
    events stored until now (none for a metric no longer defined). The insert is not deduplicated:
    a rebuilt block may equal one built before."""
    [(cutoff, view)] = store.query(
        "SELECT now64(3, 'UTC'), as_select FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'metric_points_mv'"
    )
    parameters = {"ids": metric_ids, "cutoff": cutoff}
    store.client.command(
        "DELETE FROM metric_points WHERE metric_id IN {ids:Array(String)} "
        "AND stored_at < {cutoff:DateTime64(3, 'UTC')}",
        parameters=parameters,
    )
    store.client.command(
        f"INSERT INTO metric_points SETTINGS insert_deduplicate = 0 SELECT * FROM ({view}) "
        "WHERE metric_id IN {ids:Array(String)} AND stored_at < {cutoff:DateTime64(3, 'UTC')}",
        parameters=parameters,
    )
