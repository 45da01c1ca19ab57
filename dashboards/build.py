"""Generate the Grafana dashboard JSON files of this folder (run: python dashboards/build.py).

The JSON files are committed (Grafana provisioning reads them as they are); this script is the one
place their SQL is written, so tests/dashboards checks the files and that they match this script.

Every panel reads the rollups (usage_hourly, usage_daily: SummingMergeTree, so always sum() with
GROUP BY, never a bare SELECT) and tenant_quotas (newest row per tenant via argMax). Cost is
sum(cost_usd), the same Decimal(38, 9) figures billing sums from usage_events.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "billing-clickhouse"}
TIME_SERIES, TABLE = 0, 1  # the plugin's "format" (grafana-plugin-sdk sqlutil.FormatQueryOption)

TENANT = "${tenant:singlequote}"
# "This month" is the calendar month (UTC) holding the end of the dashboard's time range, up to it.
MONTH_DAYS = "day >= toStartOfMonth(toDate($__toTime, 'UTC')) AND day <= toDate($__toTime, 'UTC')"


def sql(text: str) -> str:
    return "\n".join(line.rstrip() for line in textwrap.dedent(text).strip().splitlines())


def target(query: str, fmt: int, ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "editorType": "sql",
        "format": fmt,
        "queryType": "timeSeries" if fmt == TIME_SERIES else "table",  # the plugin's QueryType values
        "rawSql": sql(query),
        "refId": ref,
    }


class Board:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        title: str,
        grid: tuple[int, int, int, int],
        query: str,
        *,
        fmt: int,
        description: str,
        unit: str | None = None,
        decimals: int | None = None,
        options: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> None:
        x, y, w, h = grid
        field_defaults: dict[str, Any] = dict(defaults or {})
        if unit:
            field_defaults["unit"] = unit
        if decimals is not None:
            field_defaults["decimals"] = decimals
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": {"x": x, "y": y, "w": w, "h": h},
                "targets": [target(query, fmt)],
                "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
                "options": options or {},
            }
        )


def stat_options(fields: str = "") -> dict[str, Any]:
    return {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": fields, "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "textMode": "value_and_name",
    }


def bars() -> dict[str, Any]:
    return {"custom": {"drawStyle": "bars", "fillOpacity": 80, "lineWidth": 1, "stacking": {"mode": "none"}}}


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    tags: list[str],
) -> dict[str, Any]:
    return {
        "__requires": [
            {
                "type": "datasource",
                "id": "grafana-clickhouse-datasource",
                "name": "ClickHouse",
                "version": "4.0.0",
            },
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
        ],
        "annotations": {"list": []},
        "description": description,
        "editable": False,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {"title": "Billing dashboards", "type": "dashboards", "tags": ["billing"], "asDropdown": False}
        ],
        "panels": panels,
        "refresh": "",
        "schemaVersion": 39,
        "tags": tags,
        "templating": {"list": variables},
        "time": {"from": "now/M", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def tenant_variable() -> dict[str, Any]:
    query = sql("""
        SELECT tenant_id FROM (
            SELECT DISTINCT tenant_id FROM usage_daily
            UNION DISTINCT
            SELECT DISTINCT tenant_id FROM tenant_quotas
        )
        ORDER BY tenant_id
    """)
    return {
        "name": "tenant",
        "label": "Tenant",
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 1,
        "includeAll": False,
        "multi": False,
        "sort": 1,
        "hide": 0,
        "current": {},
        "options": [],
        "regex": "",
        "skipUrlSync": False,
    }


def tenant_usage() -> dict[str, Any]:
    b = Board()
    b.add(
        "stat",
        "Month-to-date cost",
        (0, 0, 6, 5),
        f"""
        SELECT sum(cost_usd) AS cost_usd
        FROM usage_daily
        WHERE tenant_id = {TENANT} AND {MONTH_DAYS}
    """,
        fmt=TABLE,
        unit="currencyUSD",
        decimals=2,
        options=stat_options(),
        description="Cost of this calendar month (UTC) up to the end of the time range: the sum of the "
        "event-time cost_usd billing invoices (before the invoice rounds each line to cents).",
    )
    quota_sql = f"""
        SELECT used, quota, if(quota > 0, round(100 * used / quota, 2), NULL) AS used_pct
        FROM (
            SELECT
                (SELECT sum(queries) FROM usage_daily WHERE tenant_id = {TENANT} AND {MONTH_DAYS}) AS used,
                (SELECT argMax(tuple(query_quota), updated_at).1 FROM tenant_quotas WHERE tenant_id = {TENANT}) AS quota
        )
    """
    b.add(
        "gauge",
        "Quota used %",
        (6, 0, 6, 5),
        quota_sql,
        fmt=TABLE,
        unit="percent",
        decimals=1,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^used_pct$/", "values": False},
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        },
        defaults={
            "min": 0,
            "max": 100,
            "thresholds": {
                "mode": "absolute",
                "steps": [
                    {"color": "green", "value": None},
                    {"color": "orange", "value": 80},
                    {"color": "red", "value": 100},
                ],
            },
        },
        description="Queries stored this month / the plan's monthly query quota (tenant_quotas). "
        "Empty when the plan is unlimited.",
    )
    b.add(
        "stat",
        "Queries this month / quota",
        (12, 0, 6, 5),
        quota_sql,
        fmt=TABLE,
        unit="short",
        options=stat_options("/^(used|quota)$/"),
        description="Accepted queries this month and the monthly quota. Queries rejected with 429 are "
        "never stored, so they never appear here.",
    )
    b.add(
        "stat",
        "Tokens in range",
        (18, 0, 6, 5),
        f"""
        SELECT sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
        FROM usage_daily
        WHERE tenant_id = {TENANT} AND $__dateFilter(day)
    """,
        fmt=TABLE,
        unit="short",
        options=stat_options(),
        description="Input and output tokens over the days of the time range.",
    )
    b.add(
        "timeseries",
        "Queries per hour",
        (0, 5, 24, 8),
        f"""
        SELECT hour AS time, sum(queries) AS queries
        FROM usage_hourly
        WHERE tenant_id = {TENANT} AND hour >= toStartOfHour(toDateTime($__fromTime, 'UTC')) AND hour <= $__toTime
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        description="Accepted queries per hour (UTC), from the usage_hourly rollup.",
    )
    b.add(
        "timeseries",
        "Tokens per day",
        (0, 13, 12, 8),
        f"""
        SELECT toDateTime(day, 'UTC') AS time, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens
        FROM usage_daily
        WHERE tenant_id = {TENANT} AND $__dateFilter(day)
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        description="Input and output tokens per day (UTC), every model, from the usage_daily rollup.",
    )
    b.add(
        "timeseries",
        "Cost per day",
        (12, 13, 12, 8),
        f"""
        SELECT toDateTime(day, 'UTC') AS time, sum(cost_usd) AS cost_usd
        FROM usage_daily
        WHERE tenant_id = {TENANT} AND $__dateFilter(day)
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="currencyUSD",
        decimals=4,
        defaults=bars(),
        description="Cost per day (UTC): the sum of the event-time cost_usd of that day's events.",
    )
    b.add(
        "table",
        "Usage and cost by model",
        (0, 21, 24, 8),
        f"""
        SELECT if(model = '', '(storage)', model) AS model, sum(events) AS events, sum(queries) AS queries,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
        FROM usage_daily
        WHERE tenant_id = {TENANT} AND $__dateFilter(day)
        GROUP BY model
        ORDER BY cost_usd DESC, model
    """,
        fmt=TABLE,
        options={"showHeader": True, "footer": {"show": True, "reducer": ["sum"], "fields": ""}},
        overrides=[
            {
                "matcher": {"id": "byName", "options": "cost_usd"},
                "properties": [{"id": "unit", "value": "currencyUSD"}, {"id": "decimals", "value": 6}],
            },
            {
                "matcher": {"id": "byName", "options": "bytes"},
                "properties": [{"id": "unit", "value": "decbytes"}],
            },
        ],
        description="Per-model totals over the days of the time range; the cost column is what the "
        "invoice's usage lines are built from.",
    )
    return dashboard(
        "billing-tenant-usage",
        "Billing / Tenant usage and cost",
        "One tenant's usage, cost and quota from the ClickHouse rollups.",
        b.panels,
        [tenant_variable()],
        ["billing", "tenant"],
    )


def operator_overview() -> dict[str, Any]:
    b = Board()
    b.add(
        "stat",
        "Month-to-date cost, all tenants",
        (0, 0, 8, 5),
        f"""
        SELECT sum(cost_usd) AS cost_usd, uniqExact(tenant_id) AS tenants
        FROM usage_daily
        WHERE {MONTH_DAYS}
    """,
        fmt=TABLE,
        options=stat_options(),
        overrides=[
            {
                "matcher": {"id": "byName", "options": "cost_usd"},
                "properties": [{"id": "unit", "value": "currencyUSD"}, {"id": "decimals", "value": 2}],
            }
        ],
        description="This calendar month (UTC) up to the end of the time range, every tenant.",
    )
    b.add(
        "timeseries",
        "Cost per day, all tenants",
        (8, 0, 16, 5),
        """
        SELECT toDateTime(day, 'UTC') AS time, sum(cost_usd) AS cost_usd
        FROM usage_daily
        WHERE $__dateFilter(day)
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="currencyUSD",
        defaults=bars(),
        description="Cost per day (UTC), every tenant.",
    )
    b.add(
        "table",
        "Top tenants by cost",
        (0, 5, 14, 10),
        """
        SELECT u.tenant_id AS tenant, u.queries AS queries, u.tokens AS tokens, u.cost_usd AS cost_usd,
               q.plan AS plan, q.quota AS quota
        FROM (
            SELECT tenant_id, sum(queries) AS queries, sum(input_tokens + output_tokens) AS tokens,
                   sum(cost_usd) AS cost_usd
            FROM usage_daily
            WHERE $__dateFilter(day)
            GROUP BY tenant_id
            ORDER BY cost_usd DESC, tenant_id
            LIMIT 10
        ) AS u
        LEFT JOIN (
            SELECT tenant_id, argMax(plan, updated_at) AS plan, argMax(tuple(query_quota), updated_at).1 AS quota
            FROM tenant_quotas
            GROUP BY tenant_id
        ) AS q ON q.tenant_id = u.tenant_id
        ORDER BY cost_usd DESC, tenant
    """,
        fmt=TABLE,
        options={"showHeader": True},
        overrides=[
            {
                "matcher": {"id": "byName", "options": "cost_usd"},
                "properties": [{"id": "unit", "value": "currencyUSD"}, {"id": "decimals", "value": 2}],
            },
            {
                "matcher": {"id": "byName", "options": "tenant"},
                "properties": [
                    {
                        "id": "links",
                        "value": [
                            {
                                "title": "Tenant usage",
                                "url": "/d/billing-tenant-usage?var-tenant=${__value.raw}&${__url_time_range}",
                            }
                        ],
                    }
                ],
            },
        ],
        description="The ten tenants with the highest cost over the days of the time range.",
    )
    b.add(
        "bargauge",
        "Top tenants by quota used % (this month)",
        (14, 5, 10, 10),
        f"""
        SELECT u.tenant_id AS tenant, round(100 * u.used / q.quota, 2) AS used_pct
        FROM (
            SELECT tenant_id, sum(queries) AS used FROM usage_daily WHERE {MONTH_DAYS} GROUP BY tenant_id
        ) AS u
        INNER JOIN (
            SELECT tenant_id, argMax(tuple(query_quota), updated_at).1 AS quota FROM tenant_quotas GROUP BY tenant_id
        ) AS q ON q.tenant_id = u.tenant_id
        WHERE q.quota > 0
        ORDER BY used_pct DESC, tenant
        LIMIT 10
    """,
        fmt=TABLE,
        unit="percent",
        options={
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/^used_pct$/", "values": True},
        },
        defaults={
            "min": 0,
            "max": 100,
            "thresholds": {
                "mode": "absolute",
                "steps": [
                    {"color": "green", "value": None},
                    {"color": "orange", "value": 80},
                    {"color": "red", "value": 100},
                ],
            },
        },
        description="Tenants closest to their monthly query quota (unlimited plans are left out).",
    )
    b.add(
        "timeseries",
        "Queries per day, all tenants",
        (0, 15, 24, 8),
        """
        SELECT toDateTime(day, 'UTC') AS time, sum(queries) AS queries
        FROM usage_daily
        WHERE $__dateFilter(day)
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        description="Accepted queries per day (UTC), every tenant (daily: the hourly rollup of every tenant "
        "is too many rows for a sub-second dashboard at 10M events a month).",
    )
    return dashboard(
        "billing-operator-overview",
        "Billing / Operator overview",
        "Every tenant: cost, top tenants and quota pressure, from the ClickHouse rollups.",
        b.panels,
        [],
        ["billing", "operator"],
    )


BOARDS = {"tenant-usage.json": tenant_usage, "operator-overview.json": operator_overview}


def render_all() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in BOARDS.items()}


def main() -> int:
    for name, text in render_all().items():
        (HERE / name).write_text(text)
        print(f"wrote dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
