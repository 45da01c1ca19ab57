"""Generate the Grafana dashboard JSON files of this folder (run: python dashboards/build.py).

The JSON files are committed (Grafana provisioning reads them as they are); this script is the one
place their SQL is written, so tests/dashboards checks the files and that they match this script.

Every panel reads the rollups (usage_hourly, usage_daily: SummingMergeTree, so always sum() with
GROUP BY, never a bare SELECT) and tenant_quotas (newest row per tenant via argMax). Cost is
sum(cost_usd), the same Decimal(38, 9) figures billing sums from usage_events.

The catalog-metric panels read the metric chosen in the ``metric`` variable from the newest export
of ``metric_definitions`` and compute it as billing.adapters.clickhouse.metric_rollups does: from
the per-metric rollup usage_metrics_daily (AggregatingMergeTree: merged with sum/max/-Merge), and
from usage_events FINAL for what the rollup cannot hold (a time-weighted sum; a max, latest or
unique count of an event counter; on the tenant dashboard, a max, latest or unique count of a
property once a correction voided an event in the range: the rollup keeps those over sign-1 rows).

Days. The tenant dashboard's figures per day and over the days of the range are the tenant's local
days: the hidden ``time_zone`` variable reads the tenant's zone from tenant_quotas (exported from its
billing calendar; 'UTC' without one), and those panels read the quarter-hour rollups
(usage_quarter_hourly, usage_metrics_quarter_hourly), grouped by ``toDate(quarter, zone)``. Every UTC
offset is a whole number of quarter hours, so a local day is exactly a set of quarters. The days of
the range are every local day the range touches (``toDate($__fromTime, zone)`` to
``toDate($__toTime, zone)``, whole days, as ``$__dateFilter`` does for UTC days); a day's bar is
drawn at that local date's 00:00 UTC, so the dashboard's UTC axis reads the local date. The month
panels (this month's cost and quota) stay UTC calendar months, the month ingest counts a quota in, and
the operator dashboard, which spans tenants of many zones, stays in UTC days.
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


# The chosen metric's definition (the newest export), as constants every row of a query can read.
METRIC_DEFINITION = """
    (SELECT tuple(aggregation, event_types, models, filters, property, field, per_ms)
     FROM metric_definitions
     WHERE id = ${metric:singlequote} AND exported_at = (SELECT max(exported_at) FROM metric_definitions)
     LIMIT 1) AS def,
    def.1 AS agg, def.2 AS types, def.3 AS models, def.4 AS filters, def.5 AS prop, def.6 AS fld,
    def.7 AS per_ms"""
# The events (or rollup rows) the metric reads: its types, models and text-property filters.
METRIC_READS = (
    "has(types, type) AND (empty(models) OR has(models, model))\n"
    "      AND arrayAll(f -> (mapContains(string_properties, f.1) AND has(f.3, string_properties[f.1])) = (f.2 = 1), filters)"
)
FIELD = (
    "multiIf(fld = 'queries', queries, fld = 'input_tokens', input_tokens, fld = 'output_tokens', output_tokens,\n"
    "                fld = 'bytes', bytes, input_tokens + output_tokens)"
)
# The local days of the range as instants, for the raw-event reads.
DAY_START = f"toDateTime64(toDate($__fromTime, {TIME_ZONE}), 3, {TIME_ZONE})"
DAY_END = f"toDateTime64(toDate($__toTime, {TIME_ZONE}) + 1, 3, {TIME_ZONE})"


def day_ms(d: str) -> str:
    """Local day number ``d`` (days since 1970-01-01) as its first instant, in ms."""
    return f"toInt64(toUnixTimestamp(toDateTime(addDays(toDate('1970-01-01'), {d}), {TIME_ZONE}))) * 1000"


def metric_sql(key: str, *, tenant: str, raw: bool) -> str:
    """The chosen metric per ``key`` over the days of the range: ``time`` (a local day of the
    tenant's ``time_zone``, one tenant: the quarter-hour rollup) or ``tenant`` (every tenant, UTC
    days: the daily rollup). ``raw``: also the aggregations the rollup cannot hold, read from
    usage_events FINAL (one tenant's rows only: across every tenant they are a full scan).

    With ``raw``, a max, latest value or distinct count of a property is read from the rollup only
    while no void row (a correction's sign -1) lies in the range: the rollup keeps those over the
    rows stored with sign 1 (migration 0008), which equal the live events exactly when nothing was
    voided. Otherwise it is read from the live rows of usage_events FINAL, as billing reads it."""
    local = key == "time"
    rollup_key = LOCAL_DAY if local else "tenant_id"
    raw_key = f"toDateTime(toDate(timestamp, {TIME_ZONE}), 'UTC')" if local else "tenant_id"
    exact = " AND voids = 0" if raw else ""
    table, days = (
        ("usage_metrics_quarter_hourly", LOCAL_DAYS)
        if local
        else ("usage_metrics_daily", "$__dateFilter(day)")
    )
    # One branch per aggregation, each reading only the rows and columns it needs: the branches of
    # the other aggregations have a constant false condition (the definition is a scalar), so
    # ClickHouse reads nothing for them.
    branches = [
        ("agg = 'count' AND property = ''", "toDecimal256(sum(events), 18)"),
        ("agg = 'sum' AND fld != '' AND property = ''", f"toDecimal256(sum({FIELD}), 18)"),
        ("agg = 'sum' AND fld = '' AND property = prop", "sum(total)"),
        (f"agg = 'max' AND fld = '' AND property = prop{exact}", "toDecimal256(max(peak), 18)"),
        (f"agg = 'latest' AND fld = '' AND property = prop{exact}", "toDecimal256(argMaxMerge(last), 18)"),
        (
            f"agg = 'unique_count' AND fld = '' AND property IN ('', prop){exact}",
            "toDecimal256(uniqExactIf(string_properties[prop], property = '' AND mapContains(string_properties, prop))\n"
            "                            + uniqExactMergeIf(numbers, property = prop), 18)",
        ),
    ]
    rollup = "\n        UNION ALL".join(
        f"""
        SELECT {rollup_key} AS {key}, {value} AS value
        FROM {table}
        WHERE {tenant}{days} AND {condition}
          AND {METRIC_READS}
        GROUP BY {key}"""
        for condition, value in branches
    )
    if not raw:
        # a tenant whose events of the metric's types gave it nothing (0 distinct users) is not listed
        return f"WITH {METRIC_DEFINITION}\nSELECT {key}, value FROM ({rollup}\n)\nWHERE value != 0\nORDER BY {key}"
    assert local, "raw events are read per local day of one tenant"
    # The live rows (billing.adapters.clickhouse.metric_queries.live_rows): not a void, not voided.
    live = (
        f"AND sign = 1 AND (tenant_id, event_id) NOT IN (SELECT tenant_id, corrects FROM usage_events\n"
        f"                                                   WHERE {tenant}sign = -1 AND timestamp < {DAY_END})"
    )
    # A counter's (or, after a void, a property's) max, latest or distinct values; a value is
    # (is text, text, number), so the text "3" and the number 3 are two distinct values.
    values = f"""
        SELECT {raw_key} AS {key},
               multiIf(agg = 'max', maxIf(number, has),
                       agg = 'latest', argMaxIf(number, (timestamp, event_id), has),
                       toDecimal256(uniqExactIf((is_text, text, number), has OR is_text), 18)) AS value
        FROM (SELECT tenant_id, timestamp, event_id,
                     if(fld != '', toDecimal256({FIELD.replace(chr(10), chr(10) + "    ")}, 18),
                        toDecimal256(number_properties[prop], 18)) AS number,
                     fld != '' OR mapContains(number_properties, prop) AS has,
                     fld = '' AND mapContains(string_properties, prop) AS is_text,
                     if(is_text, string_properties[prop], '') AS text
              FROM usage_events FINAL
              WHERE {tenant}timestamp >= {DAY_START} AND timestamp < {DAY_END}
                AND agg IN ('max', 'latest', 'unique_count') AND (fld != '' OR voids > 0)
                AND {METRIC_READS}
                {live})
        GROUP BY {key}
        HAVING agg = 'unique_count' OR countIf(has) > 0"""
    gauge_rows = f"""SELECT tenant_id, toDecimal256(number_properties[prop], 18) AS v,
                         toUnixTimestamp64Milli(timestamp) AS ms, event_id
                  FROM usage_events FINAL
                  WHERE {tenant}agg = 'time_weighted_sum' AND mapContains(number_properties, prop)
                    AND {METRIC_READS}
                    {live}"""
    # Each held value is split over the local days it spans (a day of a DST change is 23 or 25 hours).
    first_day = f"toUInt32(toDate(fromUnixTimestamp64Milli(held_from), {TIME_ZONE}))"
    last_day = (
        f"toUInt32(toDate(fromUnixTimestamp64Milli(greatest(held_to, held_from + 1) - 1), {TIME_ZONE}))"
    )
    held = f"""
        SELECT toDateTime(addDays(toDate('1970-01-01'), d), 'UTC') AS {key},
               roundBankers(toDecimal256(sum(v * ms), 30) / per_ms, 18) AS value
        FROM (
            SELECT tenant_id, v, d,
                   greatest(toInt64(0), least(held_to, {day_ms("d + 1")}) - greatest(held_from, {day_ms("d")})) AS ms
            FROM (
                SELECT tenant_id, v, greatest(ms, toUnixTimestamp64Milli({DAY_START})) AS held_from,
                       leadInFrame(ms, 1, toUnixTimestamp64Milli({DAY_END})) OVER (
                           PARTITION BY tenant_id ORDER BY ms, event_id ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS held_to
                FROM (
                    {gauge_rows}
                      AND timestamp >= {DAY_START} AND timestamp < {DAY_END}
                    UNION ALL
                    SELECT * FROM ({gauge_rows}
                      AND timestamp < {DAY_START}
                    ORDER BY timestamp DESC, event_id DESC LIMIT 1 BY tenant_id)))
            ARRAY JOIN range({first_day}, {last_day} + 1) AS d)
        WHERE ms > 0
        GROUP BY {key}"""
    voids = (
        f"(SELECT count() FROM usage_events WHERE {tenant}timestamp >= {DAY_START} AND timestamp < {DAY_END}"
        " AND sign = -1) AS voids"
    )
    return (
        f"WITH {METRIC_DEFINITION},\n    {voids}\nSELECT {key}, value FROM ({rollup}\n        UNION ALL{values}\n"
        f"        UNION ALL{held}\n)\nORDER BY {key}"
    )


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
        FROM usage_quarter_hourly
        WHERE tenant_id = {TENANT} AND {LOCAL_DAYS}
    """,
        fmt=TABLE,
        unit="short",
        options=stat_options(),
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
    b.add(
        "timeseries",
        "Tokens per day",
        (0, 13, 12, 8),
        f"""
        SELECT {LOCAL_DAY} AS time, sum(input_tokens) AS input_tokens,
               sum(output_tokens) AS output_tokens
        FROM usage_quarter_hourly
        WHERE tenant_id = {TENANT} AND {LOCAL_DAYS}
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="short",
        defaults=bars(),
        description="Input and output tokens per day in the tenant's time zone (its billing calendar's; "
        "UTC without one), every model, from the quarter-hour rollup. Each bar is drawn at its local date.",
    )
    b.add(
        "timeseries",
        "Cost per day",
        (12, 13, 12, 8),
        f"""
        SELECT {LOCAL_DAY} AS time, sum(cost_usd) AS cost_usd
        FROM usage_quarter_hourly
        WHERE tenant_id = {TENANT} AND {LOCAL_DAYS}
        GROUP BY time
        ORDER BY time
    """,
        fmt=TIME_SERIES,
        unit="currencyUSD",
        decimals=4,
        defaults=bars(),
        description="Cost per day in the tenant's time zone (UTC without a calendar): the sum of the "
        "event-time cost_usd of that local day's events. Each bar is drawn at its local date.",
    )
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
        metric_sql("time", tenant=f"tenant_id = {TENANT} AND ", raw=True),
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
        [tenant_variable(), time_zone_variable(), metric_variable()],
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
    b.add(
        "table",
        "Top tenants by catalog metric ${metric}",
        (0, 23, 24, 8),
        metric_sql("tenant", tenant="", raw=False).replace(
            "ORDER BY tenant", "ORDER BY value DESC, tenant\nLIMIT 10"
        ),
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
