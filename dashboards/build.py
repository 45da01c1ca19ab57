"""Generate the Grafana dashboard JSON files of this folder (run: python dashboards/build.py).

The JSON files are committed (Grafana provisioning reads them as they are); this script is the one
place their SQL is written, so tests/dashboards checks the files and that they match this script.

Every panel reads the rollups (usage_hourly, usage_daily: SummingMergeTree, so always sum() with
GROUP BY, never a bare SELECT) and tenant_quotas (newest row per tenant via argMax). Cost is
sum(cost_usd), the same Decimal(38, 9) figures billing sums from usage_events.

Panels showing the same rows share one query (Grafana's Dashboard data source, ``SHARED``): the
source panel's query returns every field they show, each panel keeps its own (a stat's fields, or a
transformation), so each shows what its own query showed, and the dashboard sends fewer queries.

The catalog-metric panels read the metric chosen in the ``metric`` variable (its aggregation and
time unit from the newest export of ``metric_definitions``) from ``metric_points`` FINAL (migration
0011): one row per live event per metric, so a panel reads only that metric's sorted rows of the
tenant (or every tenant) and days, and computes what billing.adapters.clickhouse.metric_queries
computes from usage_events FINAL, every aggregation included (voids, amends and a copy stored twice
are resolved by FINAL; which events a metric reads is written once, in the view filling the table).
The tenant dashboard's panel reads only the aggregation the hidden ``metric_aggregation`` variable
names (one named subquery each, so ClickHouse plans that one alone); the operator's table, with no
such variable, plans both of its branches (``metric_sql``).

Days. The tenant dashboard's figures per day and over the days of the range are the tenant's local
days: the hidden ``time_zone`` variable reads the tenant's zone from tenant_quotas (exported from its
billing calendar; 'UTC' without one), and those panels read the quarter-hour rollup
(usage_quarter_hourly), grouped by ``toDate(quarter, zone)``, and the metric's points grouped by
``toDate(timestamp, zone)``. Every UTC offset is a whole number of quarter hours, so a local day is
exactly a set of quarters. The days of the range are every local day the range touches
(``toDate($__fromTime, zone)`` to ``toDate($__toTime, zone)``, whole days, as ``$__dateFilter`` does
for UTC days); a day's bar is drawn at that local date's 00:00 UTC, so the dashboard's UTC axis reads
the local date. The month panels (this month's cost and quota) stay UTC calendar months, the month
ingest counts a quota in, and the operator dashboard, which spans tenants of many zones, stays in
UTC days.

Length: one module because it is the single place the dashboards' SQL is written; the panels of
both dashboards share the constants and helpers above, and the JSON files are checked against it.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "billing-clickhouse"}
# Grafana's built-in Dashboard data source: a panel shows another panel's query results (no query of
# its own), reshaped by its transformations. Every query reading a table costs ClickHouse a few ms of
# CPU however little it reads, so panels showing the same rows share one query.
SHARED = {"type": "datasource", "uid": "-- Dashboard --"}
TIME_SERIES, TABLE = 0, 1  # the plugin's "format" (grafana-plugin-sdk sqlutil.FormatQueryOption)

TENANT = "${tenant:singlequote}"
TIME_ZONE = "${time_zone:singlequote}"
# "This month" is the calendar month (UTC) holding the end of the dashboard's time range, up to it.
MONTH_DAYS = "day >= toStartOfMonth(toDate($__toTime, 'UTC')) AND day <= toDate($__toTime, 'UTC')"


# The tenant's local days the time range touches, as a filter on a quarter-hour rollup (its sort key
# after tenant_id), and each row's local date drawn at that date's 00:00 UTC.
LOCAL_DAYS = (
    f"quarter >= toDateTime(toDate($__fromTime, {TIME_ZONE}), {TIME_ZONE})"
    f" AND quarter < toDateTime(toDate($__toTime, {TIME_ZONE}) + 1, {TIME_ZONE})"
)
LOCAL_DAY = f"toDateTime(toDate(quarter, {TIME_ZONE}), 'UTC')"


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


def fields(*names: str) -> dict[str, Any]:
    """Grafana's transformation keeping only these fields (of a shared query's rows)."""
    return {"id": "filterFieldsByName", "options": {"include": {"names": list(names)}}}


# Grafana's transformation summing each field over the rows: one row (a sum of no rows is 0).
SUM_ROWS = {
    "id": "reduce",
    "options": {"mode": "reduceFields", "reducers": ["sum"], "includeTimeField": False},
}


class Board:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []

    def add(
        self,
        kind: str,
        title: str,
        grid: tuple[int, int, int, int],
        query: str | int,
        *,
        fmt: int,
        description: str,
        transformations: list[dict[str, Any]] | None = None,
        unit: str | None = None,
        decimals: int | None = None,
        options: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> int:
        """``query`` is the panel's SQL, or the id of the panel whose query results it shows."""
        x, y, w, h = grid
        field_defaults: dict[str, Any] = dict(defaults or {})
        if unit:
            field_defaults["unit"] = unit
        if decimals is not None:
            field_defaults["decimals"] = decimals
        shared = isinstance(query, int)
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": SHARED if shared else DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "targets": [{"datasource": SHARED, "panelId": query, "refId": "A"}]
            if isinstance(query, int)
            else [target(query, fmt)],
            "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
            "options": options or {},
        }
        if transformations:
            panel["transformations"] = transformations
        self.panels.append(panel)
        return int(panel["id"])


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


def time_zone_variable() -> dict[str, Any]:
    """Hidden: the selected tenant's time zone (its newest export; 'UTC' when it has none), read by
    every panel that groups by local day. It follows ``tenant`` (it reads it)."""
    query = sql(f"""
        SELECT if(count() = 0, 'UTC', argMax(time_zone, updated_at)) AS time_zone
        FROM tenant_quotas
        WHERE tenant_id = {TENANT}
    """)
    return {
        **tenant_variable(),
        "name": "time_zone",
        "label": "Time zone",
        "query": query,
        "definition": query,
        "hide": 2,
        "sort": 0,
    }


# The chosen metric's aggregation and time unit (the newest export), as constants every row reads.
METRIC_DEFINITION = """
    (SELECT tuple(aggregation, per_ms)
     FROM metric_definitions
     WHERE id = ${metric:singlequote} AND exported_at = (SELECT max(exported_at) FROM metric_definitions)
     LIMIT 1) AS def,
    def.1 AS agg, def.2 AS per_ms"""
# The metric's live points (migration 0011: FINAL drops a second copy of an event, a voided event
# and the void itself); which events they are is written once, in the view that fills the table.
POINTS = "metric_points FINAL\n        WHERE metric_id = ${metric:singlequote}"


def metric_sql(key: str, *, tenant: str, by_variable: bool = False) -> str:
    """The chosen metric per ``key`` over the days of the range, from ``metric_points``: ``time``
    (a local day of the tenant's ``time_zone``, one tenant) or ``tenant`` (every tenant, UTC days).

    Two branches, each reading only the metric's (and tenant's) sorted rows of the days: the
    aggregation chosen over them in one pass, or a time-weighted sum over them in order; the branch
    not chosen has a constant false condition once the definition is read (a scalar), so ClickHouse
    reads nothing for it, but still plans it (about 20 ms of CPU for the time-weighted one). With
    ``by_variable`` the query is one named subquery per aggregation and selects the one the hidden
    ``metric_aggregation`` variable names: ClickHouse plans only a subquery the query reads, so the
    panel costs one aggregation's plan (the variable's own query costs less than the plan saved).
    Every figure is billing's (billing.catalog.metrics):
    count, sum, max, the last value (latest timestamp, then greatest event_id), distinct keys, and a
    time-weighted sum: each value held from its point to the next (the last point before the days
    holds from their start), split at each local midnight (a DST day is 23 or 25 hours), summed as
    value x milliseconds and divided once, half-even at 18 places."""
    local = key == "time"
    zone = TIME_ZONE if local else "'UTC'"
    start = f"toDateTime64(toDate($__fromTime, {zone}), 3, {zone})"
    end = f"toDateTime64(toDate($__toTime, {zone}) + 1, 3, {zone})"
    group = f"toDateTime(toDate(timestamp, {zone}), 'UTC')" if local else "tenant_id"
    days = f"timestamp >= {start} AND timestamp < {end}"
    # One pass over the metric's points computes the aggregation chosen (the others' -If
    # condition is a constant false: the definition is a scalar, so they cost nothing per row).
    value = (
        "multiIf(agg = 'count', toDecimal256(count(), 18), agg = 'sum', sumIf(toDecimal256(value, 18), agg = 'sum'),\n"
        "                       agg = 'max', toDecimal256(maxIf(value, agg = 'max'), 18),\n"
        "                       agg = 'latest', toDecimal256(argMaxIf(value, (timestamp, event_id), agg = 'latest'), 18),\n"
        "                       toDecimal256(uniqExactIf(key, agg = 'unique_count'), 18))"
    )
    figures = f"""
        SELECT {group} AS {key}, {value} AS value
        FROM {POINTS} AND {tenant}{days} AND agg != 'time_weighted_sum'
        GROUP BY {key}"""
    points = f"""SELECT tenant_id, toDecimal256(value, 18) AS v, toUnixTimestamp64Milli(timestamp) AS ms, event_id
                    FROM {POINTS.replace(chr(10), chr(10) + "            ")} AND {tenant}agg = 'time_weighted_sum'"""

    def day_ms(d: str) -> str:
        """Day number ``d`` (days since 1970-01-01) of the zone as its first instant, in ms."""
        return f"toInt64(toUnixTimestamp(toDateTime(addDays(toDate('1970-01-01'), {d}), {zone}))) * 1000"

    first_day = f"toUInt32(toDate(fromUnixTimestamp64Milli(held_from), {zone}))"
    last_day = f"toUInt32(toDate(fromUnixTimestamp64Milli(greatest(held_to, held_from + 1) - 1), {zone}))"
    held_key = "toDateTime(addDays(toDate('1970-01-01'), d), 'UTC')" if local else "tenant_id"
    held = f"""
        SELECT {held_key} AS {key}, roundBankers(toDecimal256(sum(v * ms), 30) / per_ms, 18) AS value
        FROM (
            SELECT tenant_id, v, d,
                   greatest(toInt64(0), least(held_to, {day_ms("d + 1")}) - greatest(held_from, {day_ms("d")})) AS ms
            FROM (
                SELECT tenant_id, v, greatest(ms, toUnixTimestamp64Milli({start})) AS held_from,
                       leadInFrame(ms, 1, toUnixTimestamp64Milli({end})) OVER (
                           PARTITION BY tenant_id ORDER BY ms, event_id ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS held_to
                FROM (
                    {points}
                      AND {days}
                    UNION ALL
                    SELECT * FROM ({points}
                      AND timestamp < {start}
                    ORDER BY timestamp DESC, event_id DESC LIMIT 1 BY tenant_id)))
            ARRAY JOIN range({first_day}, {last_day} + 1) AS d)
        WHERE ms > 0
        GROUP BY {key}"""
    if by_variable:
        # The same figures as the one-pass branch, one aggregation each (no -If state for the others).
        single = {
            "count": "toDecimal256(count(), 18)",
            "sum": "sum(toDecimal256(value, 18))",
            "max": "toDecimal256(max(value), 18)",
            "latest": "toDecimal256(argMax(value, (timestamp, event_id)), 18)",
            "unique_count": "toDecimal256(uniqExact(key), 18)",
        }
        named = [
            f"""agg_{name} AS (
    SELECT {group} AS {key}, {expr} AS value
    FROM {POINTS.replace(chr(10) + "    ", chr(10))} AND {tenant}{days}
    GROUP BY {key})"""
            for name, expr in single.items()
        ]
        # Read only when the variable names it, so the metric is in the newest export: its newest row.
        per_ms = (
            "(SELECT per_ms FROM metric_definitions WHERE id = ${metric:singlequote}\n"
            "     ORDER BY exported_at DESC LIMIT 1) AS per_ms"
        )
        held_only = held.replace(" AND agg = 'time_weighted_sum'", "")
        named.append(f"agg_time_weighted_sum AS (\n    WITH {per_ms}{held_only})")
        return (
            "WITH "
            + ",\n".join(named)
            + f"\nSELECT {key}, value FROM ${{metric_aggregation:doublequote}}\nORDER BY {key}"
        )
    # the operator's table leaves out a tenant whose events gave the metric nothing (0 distinct users)
    nonzero = "" if local else "\nWHERE value != 0"
    return f"WITH {METRIC_DEFINITION}\nSELECT {key}, value FROM ({figures}\n        UNION ALL{held}\n){nonzero}\nORDER BY {key}"


def metric_variable() -> dict[str, Any]:
    query = sql("""
        SELECT id FROM metric_definitions
        WHERE id != '' AND exported_at = (SELECT max(exported_at) FROM metric_definitions)
        ORDER BY id
    """)
    return {
        **tenant_variable(),
        "name": "metric",
        "label": "Catalog metric",
        "query": query,
        "definition": query,
    }


def aggregation_variable() -> dict[str, Any]:
    """Hidden: ``agg_`` and the aggregation of the metric chosen in ``metric`` (its newest export;
    'count' when there is none, whose figures are then empty): the name of the subquery the tenant
    dashboard's metric panel reads. It follows ``metric`` (it reads it). The panel quotes it as an
    identifier (``:doublequote``), so a value set in the URL can name a table at most, never add SQL."""
    query = sql("""
        SELECT concat('agg_', if(count() = 0, 'count', any(aggregation))) AS aggregation
        FROM metric_definitions
        WHERE id = ${metric:singlequote} AND exported_at = (SELECT max(exported_at) FROM metric_definitions)
    """)
    return {
        **metric_variable(),
        "name": "metric_aggregation",
        "label": "Aggregation",
        "query": query,
        "definition": query,
        "hide": 2,
        "sort": 0,
    }


def tenant_usage() -> dict[str, Any]:
    b = Board()
    # One query for the month's three panels: the cost, the queries and the quota (the gauge and the
    # stat show its rows through the Dashboard data source).
    month = b.add(
        "stat",
        "Month-to-date cost",
        (0, 0, 6, 5),
        f"""
        SELECT cost_usd, used, quota, if(quota > 0, round(100 * used / quota, 2), NULL) AS used_pct
        FROM (
            SELECT sum(cost_usd) AS cost_usd, sum(queries) AS used,
                   (SELECT argMax(tuple(query_quota), updated_at).1 FROM tenant_quotas WHERE tenant_id = {TENANT}) AS quota
            FROM usage_daily
            WHERE tenant_id = {TENANT} AND {MONTH_DAYS}
        )
    """,
        fmt=TABLE,
        unit="currencyUSD",
        decimals=2,
        options=stat_options("/^cost_usd$/"),
        description="Cost of this calendar month (UTC) up to the end of the time range: the sum of the "
        "event-time cost_usd billing invoices (before the invoice rounds each line to cents).",
    )
    b.add(
        "gauge",
        "Quota used %",
        (6, 0, 6, 5),
        month,
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
        month,
        fmt=TABLE,
        unit="short",
        options=stat_options("/^(used|quota)$/"),
        description="Accepted queries this month and the monthly quota. Queries rejected with 429 are "
        "never stored, so they never appear here.",
    )
    # The days' tokens and cost: one query ("Tokens per day", panel 6), shown per day by two panels and
    # summed over the days by "Tokens in range" (every local day of the range, as the panel's own sum).
    daily = 6
    b.add(
        "stat",
        "Tokens in range",
        (18, 0, 6, 5),
        daily,
        fmt=TABLE,
        unit="short",
        options=stat_options(),
        defaults={"noValue": "0"},
        transformations=[fields("input_tokens", "output_tokens"), SUM_ROWS],
        description="Input and output tokens over the days of the time range, in the tenant's time zone.",
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
        description="Accepted queries per hour (UTC hours, drawn at their instant), from the usage_hourly rollup.",
    )
    tokens_per_day = b.add(
        "timeseries",
        "Tokens per day",
        (0, 13, 12, 8),
        f"""
        SELECT {LOCAL_DAY} AS time, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens, sum(cost_usd) AS cost_usd
        FROM usage_quarter_hourly
        WHERE tenant_id = {TENANT} AND {LOCAL_DAYS}
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        transformations=[fields("time", "input_tokens", "output_tokens")],
        description="Input and output tokens per day in the tenant's time zone (its billing calendar's; "
        "UTC without one), every model, from the quarter-hour rollup. Each bar is drawn at its local date.",
    )
    b.add(
        "timeseries",
        "Cost per day",
        (12, 13, 12, 8),
        daily,
        fmt=TIME_SERIES,
        unit="currencyUSD",
        decimals=4,
        defaults=bars(),
        transformations=[fields("time", "cost_usd")],
        description="Cost per day in the tenant's time zone (UTC without a calendar): the sum of the "
        "event-time cost_usd of that local day's events. Each bar is drawn at its local date.",
    )
    if tokens_per_day != daily:
        raise ValueError(f"the shared day panels read panel {daily}, not the tokens per day")
    b.add(
        "table",
        "Usage and cost by model",
        (0, 21, 24, 8),
        f"""
        SELECT if(model = '', '(storage)', model) AS model, sum(events) AS events, sum(queries) AS queries,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(bytes) AS bytes, sum(cost_usd) AS cost_usd
        FROM usage_quarter_hourly
        WHERE tenant_id = {TENANT} AND {LOCAL_DAYS}
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
        description="Per-model totals over the days of the time range in the tenant's time zone; the "
        "cost column is what the invoice's usage lines are built from.",
    )
    b.add(
        "timeseries",
        "Catalog metric ${metric} per day",
        (0, 29, 24, 8),
        metric_sql("time", tenant=f"tenant_id = {TENANT} AND ", by_variable=True),
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        description="The catalog metric chosen in the `metric` variable, per day in the tenant's time "
        "zone (UTC without a calendar; each bar drawn at its local date): each day's "
        "count, sum, max, latest value, distinct values or time-weighted sum of that day's events, "
        "exactly as billing computes the metric (per-metric rollup; usage_events for a gauge or a "
        "counter's max, latest or distinct values). A max or latest has no bar on a day without a value.",
    )
    return dashboard(
        "billing-tenant-usage",
        "Billing / Tenant usage and cost",
        "One tenant's usage, cost and quota from the ClickHouse rollups. Days are the tenant's local "
        "days (its billing calendar's time zone, UTC without one); this month and the quota are the "
        "UTC calendar month, and hours are UTC hours.",
        b.panels,
        [tenant_variable(), time_zone_variable(), metric_variable(), aggregation_variable()],
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
    # One query for the days' cost and queries (the queries panel shows its rows).
    days = b.add(
        "timeseries",
        "Cost per day, all tenants",
        (8, 0, 16, 5),
        """
        SELECT toDateTime(day, 'UTC') AS time, sum(cost_usd) AS cost_usd, sum(queries) AS queries
        FROM usage_daily
        WHERE $__dateFilter(day)
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="currencyUSD",
        defaults=bars(),
        transformations=[fields("time", "cost_usd")],
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
        days,
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        transformations=[fields("time", "queries")],
        description="Accepted queries per day (UTC), every tenant (daily: the hourly rollup of every tenant "
        "is too many rows for a sub-second dashboard at 10M events a month).",
    )
    b.add(
        "table",
        "Top tenants by catalog metric ${metric}",
        (0, 23, 24, 8),
        metric_sql("tenant", tenant="").replace("ORDER BY tenant", "ORDER BY value DESC, tenant\nLIMIT 10"),
        fmt=TABLE,
        options={"showHeader": True},
        overrides=[
            {
                "matcher": {"id": "byName", "options": "tenant"},
                "properties": [
                    {
                        "id": "links",
                        "value": [
                            {
                                "title": "Tenant usage",
                                "url": "/d/billing-tenant-usage?var-tenant=${__value.raw}&var-metric=${metric}&${__url_time_range}",
                            }
                        ],
                    }
                ],
            }
        ],
        description="The ten tenants with the highest value of the catalog metric chosen in `metric` over "
        "the days of the time range (per-metric rollup). A time-weighted sum, and a counter's max, latest "
        "or distinct values, are read from raw events, one tenant at a time: see the tenant dashboard.",
    )
    return dashboard(
        "billing-operator-overview",
        "Billing / Operator overview",
        "Every tenant: cost, top tenants and quota pressure, from the ClickHouse rollups. Days are UTC "
        "days (tenants have different time zones); a tenant's own dashboard shows its local days.",
        b.panels,
        [metric_variable()],
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
