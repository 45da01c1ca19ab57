"""Per-metric figures for the usage page: any catalog metric, per group and per local day of a
time zone (UTC by default), and over the period so far, from the per-metric quarter-hour rollup
``usage_metrics_quarter_hourly`` (migration 0009) or from ``usage_events FINAL``.

Which source each metric reads, and why the figure is the one ``metric_queries`` computes from
``usage_events`` (the rule, tested per aggregation in ``tests/portal/test_metric_figures.py``):

- Every UTC offset in use is a whole number of quarter hours, so a local day is a whole number of
  the rollup's quarters (``toDate(quarter, zone)``), and a period that starts at a quarter hour and
  ends at one (or now) is exactly the quarters starting within it. A period starting off a quarter
  hour (an anniversary at its signup's second) reads every metric from the raw rows.
- ``count`` and ``sum`` (of a property or a field): the rollup. Its rows keep each event's type,
  model and whole ``string_properties`` map in the key, so the metric's filters and the groups are
  the very conditions ``metric_conditions`` puts on ``usage_events``; counts and sums are added, and
  a correction's void row (migration 0008) takes its event and its quantities back off them.
- ``max``, ``latest`` and ``unique_count`` of a property: the rollup's ``peak``, ``last``
  (``argMaxMerge`` by timestamp, then event id) and ``numbers`` (``uniqExactMerge``; a text
  property's distinct values are the distinct values of its key in the rows' text map, a property
  being text or a number, never both) **when no row of the tenant in the period read is a void**
  (``sign = -1``; one ``LIMIT 1`` query, run only when such a metric is asked). The rollup keeps
  these over inserted (``sign = 1``) rows only, and a merged max or distinct-value state cannot
  give a voided value back; with no void, every inserted row is live, so they are the live rows'.
  With a void in the period, and for a counter's max, latest or distinct values (no rollup column
  holds them), ``usage_events FINAL``'s live rows for the tenant's period (its sort key;
  ``metric_queries.live_rows``: a voided event holds no maximum, last value or distinct value; an
  amended one holds its new values), the same expressions per local day.
- ``time_weighted_sum``: the raw rows. Each value is held from its event to the next (per group),
  the period's first value carried in from the last event before it; per day each hold is split at
  the local midnights (passed as milliseconds), and a figure is value x ms summed exactly, then
  divided once into the metric's unit (half-even, 18 places) as ``ClickHouseMetrics``.

The rollup counts an event in each block that stores it, as ``usage_daily`` does: a replayed block
is dropped by its dedup token, and the ledger admits an event once. Parameter names are bound, never
spliced; all metrics asked go in one round trip (after the void check).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.measure_queries import exact
from billing.adapters.clickhouse.metric_queries import (
    _EXPRESS,
    _FIELDS,
    _PLACES,
    _aggregate,
    live_rows,
    metric_conditions,
)
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.metrics import MILLISECONDS_PER, MetricDefinition
from billing.kernel.calendar import DEFAULT_TIME_ZONE
from billing.portal.metrics import Group, GroupUsage, MetricAsk, MetricUsage, epoch_ms, local_days

_START = "{start:DateTime64(3, 'UTC')}"
_END = "{end:DateTime64(3, 'UTC')}"
_NO_DAY = "toDate('1970-01-01')"  # the day column of a period row
_LIVE = live_rows("tenant_id = {t:String}")
QUARTER_MS = 15 * 60 * 1000


def reads_rollup(metric: MetricDefinition) -> bool:
    """Whether the metric's figures always come from the quarter-hour rollup (a count or a sum)."""
    return metric.aggregation in ("count", "sum")


def rollup_exact_without_voids(metric: MetricDefinition) -> bool:
    """Whether the rollup's max, last value or distinct values give the metric when no row of the
    period read is a void (a max, latest or unique count of a number or text property)."""
    return metric.aggregation in ("max", "latest", "unique_count") and metric.field is None


def _rollup_value(metric: MetricDefinition) -> tuple[str, str, str]:
    """(value, events carrying what it reads, the rows read) over ``usage_metrics_quarter_hourly``."""
    if metric.aggregation == "count":
        return "toDecimal256(sum(events), 18)", "sum(events)", "property = ''"
    if metric.aggregation == "max":
        return "toDecimal256(max(peak), 18)", "sum(events)", "property = {p:String}"
    if metric.aggregation == "latest":
        return "toDecimal256(argMaxMerge(last), 18)", "sum(events)", "property = {p:String}"
    if metric.aggregation == "unique_count":
        # a value is (is text, text, number): the distinct numbers, plus the distinct texts of the
        # events carrying the property as text (a property is text or a number, never both)
        text = "property = '' AND mapContains(string_properties, {p:String})"
        return (
            f"toDecimal256(uniqExactMergeIf(numbers, property = {{p:String}}) "
            f"+ uniqExactIf(string_properties[{{p:String}}], {text}), 18)",
            f"sumIf(events, property = {{p:String}}) + sumIf(events, {text})",
            "property IN ('', {p:String})",
        )
    if metric.field is not None:  # a sum of a counter every event has
        number = _FIELDS[metric.field]
        return f"toDecimal256(sum({number}), 18)", "sum(events)", "property = ''"
    return "sum(total)", "sum(events)", "property = {p:String}"  # a sum of a number property


def _groups(group_by: Sequence[str], parameters: dict[str, Any]) -> str:
    names = []
    for i, name in enumerate(group_by):
        parameters[f"g{i}"] = name
        names.append(f"string_properties[{{g{i}:String}}]")
    return f"[{', '.join(names)}]" if names else "CAST([], 'Array(String)')"


def _both(per_day: str, period: str, daily: bool) -> str:
    return f"{per_day}\nUNION ALL\n{period}" if daily else period


def rollup_sql(ask: MetricAsk, daily: bool = True) -> tuple[str, dict[str, Any]]:
    """Rows (day, group, value, carried): per local day (in zone ``z``, if ``daily``), and the
    period (day 1970-01-01), from the quarters starting in ``[start, end)``."""
    where, parameters = metric_conditions(ask.metric)
    group = _groups(ask.group_by, parameters)
    value, carried, rows = _rollup_value(ask.metric)
    source = (
        "FROM usage_metrics_quarter_hourly\nWHERE tenant_id = {t:String}\n"
        f"  AND quarter >= {_START} AND quarter < {_END}\n  AND {rows}{where}\n"
    )
    sql = _both(
        f"SELECT toDate(quarter, {{z:String}}) AS day, {group} AS g, {value}, {carried}\n{source}GROUP BY day, g",
        f"SELECT {_NO_DAY}, {group} AS g, {value}, {carried}\n{source}GROUP BY g",
        daily,
    )
    return sql, parameters


def raw_sql(ask: MetricAsk, daily: bool = True) -> tuple[str, dict[str, Any]]:
    """As ``rollup_sql``, from usage_events FINAL's live rows (a max, a latest, a unique count)."""
    where, parameters = metric_conditions(ask.metric)
    where += _LIVE
    group = _groups(ask.group_by, parameters)
    value, carried = _aggregate(ask.metric)
    source = (
        "FROM usage_events FINAL\nWHERE tenant_id = {t:String}\n"
        f"  AND timestamp >= {_START} AND timestamp < {_END}{where}\n"
    )
    sql = _both(
        f"SELECT toDate(timestamp, {{z:String}}) AS day, {group} AS g, toDecimal256({value}, 18), {carried}\n"
        f"{source}GROUP BY day, g",
        f"SELECT {_NO_DAY}, {group} AS g, toDecimal256({value}, 18), {carried}\n{source}GROUP BY g",
        daily,
    )
    return sql, parameters


def held_sql(ask: MetricAsk, daily: bool = True) -> tuple[str, dict[str, Any]]:
    """A time-weighted sum's rows (day, group, value x ms held that day, events read), then the
    period's (day 1970-01-01). Each event holds from its instant (the period's start for the one
    carried in) to the next event of its group or the period's end; ties hold for 0 ms. Per day,
    each hold is split at the local midnights ``cuts`` (ms: the period's start, each local midnight
    within it, its end), ``days[i]`` being the local day from ``cuts[i]``."""
    where, parameters = metric_conditions(ask.metric)
    where += "\n  AND mapContains(number_properties, {p:String})" + _LIVE
    group = _groups(ask.group_by, parameters)
    read = (
        "SELECT toDecimal256(number_properties[{p:String}], 18) AS v, "
        f"toUnixTimestamp64Milli(timestamp) AS ms, event_id, {group} AS g\n"
        "FROM usage_events FINAL\nWHERE tenant_id = {t:String}\n"
    )
    holds = (
        f"SELECT v, g, greatest(ms, toUnixTimestamp64Milli({_START})) AS held_from,\n"
        f"  leadInFrame(ms, 1, toUnixTimestamp64Milli({_END})) OVER (\n"
        "    PARTITION BY g ORDER BY ms, event_id ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS held_to\n"
        "FROM (\n"
        f"{read}  AND timestamp >= {_START} AND timestamp < {_END}{where}\n"
        "UNION ALL\n"
        f"SELECT * FROM ({read}  AND timestamp < {_START}{where}\n"
        "  ORDER BY timestamp DESC, event_id DESC LIMIT 1 BY g)\n)"
    )
    period = f"SELECT {_NO_DAY}, g, sum(v * (held_to - held_from)), count() FROM holds GROUP BY g"
    if not daily:
        return f"WITH holds AS ({holds})\n{period}", parameters
    # one row per (hold, local day it overlaps): the milliseconds of the hold within that day
    split = (
        "SELECT v, g, {days:Array(Date)}[i] AS day,\n"
        "  least(held_to, {cuts:Array(Int64)}[i + 1]) - greatest(held_from, {cuts:Array(Int64)}[i]) AS ms\n"
        "FROM holds\nARRAY JOIN arrayFilter(i -> {cuts:Array(Int64)}[i] < held_to "
        "AND {cuts:Array(Int64)}[i + 1] > held_from, range(1, length({cuts:Array(Int64)}))) AS i"
    )
    sql = f"WITH holds AS ({holds}), split AS ({split})\n" + _both(
        "SELECT day, g, sum(v * ms), count() FROM split GROUP BY day, g", period, daily
    )
    return sql, parameters


def figures_sql(
    ask: MetricAsk, daily: bool = True, *, aligned: bool = True, no_voids: bool = False
) -> tuple[str, dict[str, Any]]:
    """The rows of one metric: from the rollup when it holds the figure exactly (``aligned``: the
    period starts at a quarter hour; a max, latest or unique count also needs ``no_voids``: no
    void row in the period read), else from the live raw rows."""
    if ask.metric.aggregation == "time_weighted_sum":
        return held_sql(ask, daily)
    if aligned and (reads_rollup(ask.metric) or (no_voids and rollup_exact_without_voids(ask.metric))):
        return rollup_sql(ask, daily)
    return raw_sql(ask, daily)


def local_cuts(start: datetime, end: datetime, zone: str) -> tuple[list[int], list[date]]:
    """The local-day boundaries of ``[start, end)`` in ms (its start, each local midnight within
    it, its end) and the local day each segment between two of them is."""
    days = local_days(start, end, zone)
    return [epoch_ms(start), *(epoch_ms(d.end) for d in days)], [d.day for d in days]


_NO_VOID = (
    "SELECT count() FROM (SELECT 1 FROM usage_events WHERE tenant_id = {t:String} AND sign = -1\n"
    f"  AND timestamp >= {_START} AND timestamp < {_END} + toIntervalMinute(15) LIMIT 1)"
)


_PLACEHOLDER = re.compile(r"\{(\w+):")


class ClickHouseMetricRollups:
    """``billing.portal.metrics.MetricFigures`` over ClickHouse."""

    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def month(
        self,
        tenant_id: str,
        asked: Sequence[MetricAsk],
        start: datetime,
        end: datetime,
        *,
        daily: bool = False,
        zone: str = DEFAULT_TIME_ZONE,
    ) -> list[MetricUsage]:
        """Each asked metric over ``[start, end)``: per group, the period's quantity, and with
        ``daily`` each local day's in ``zone`` (the rollup reads whole quarter hours: ``end`` at
        one, or ``end`` now)."""
        if not asked:
            return []
        parameters: dict[str, Any] = {"t": tenant_id, "start": start, "end": end, "z": zone}
        shared = ["t", "start", "end", "z"]
        if daily:
            parameters["cuts"], parameters["days"] = local_cuts(start, end, zone)
            shared += ["cuts", "days"]
        aligned = epoch_ms(start) % QUARTER_MS == 0
        no_voids = False
        if aligned and any(rollup_exact_without_voids(a.metric) for a in asked):
            [(voids,)] = self.store.query(_NO_VOID, {"t": tenant_id, "start": start, "end": end})
            no_voids = not voids
        parts = []
        for i, ask in enumerate(asked):
            sql, fixed = figures_sql(ask, daily, aligned=aligned, no_voids=no_voids)
            # each metric's parameters under its own prefix, so all go in one query
            renamed = _PLACEHOLDER.sub(f"{{m{i}_\\1:", sql)
            parts.append(f"SELECT {i} AS m, * FROM (\n{renamed}\n)")
            parameters.update({f"m{i}_{k}": v for k, v in fixed.items()})
            parameters.update({f"m{i}_{k}": parameters[k] for k in shared})
        rows = self.store.query("\nUNION ALL\n".join(parts), parameters)
        period: list[dict[Group, Decimal | None]] = [{} for _ in asked]
        days: list[dict[Group, dict[date, Decimal | None]]] = [defaultdict(dict) for _ in asked]
        for m, day, group, value, carried in rows:
            ask = asked[int(m)]
            key = tuple(str(v) for v in group)
            figure = _figure(ask.metric, value, int(carried))
            if day == date(1970, 1, 1):
                period[m][key] = figure
            else:
                days[m][key][day] = figure
        return [
            MetricUsage(
                ask.metric,
                ask.group_by,
                [GroupUsage(k, period[i][k], days[i].get(k, {})) for k in sorted(period[i], key=_by_value)]
                if ask.group_by
                else [GroupUsage((), period[i].get((), _empty(ask.metric)), days[i].get((), {}))],
            )
            for i, ask in enumerate(asked)
        ]


def _by_value(group: Group) -> tuple[tuple[bool, str], ...]:
    """Groups in the order of their values, a missing value (worded "none") after the others."""
    return tuple((value == "", value) for value in group)


def _figure(metric: MetricDefinition, value: Any, carried: int) -> Decimal | None:
    if metric.aggregation == "time_weighted_sum":
        assert metric.per is not None  # the catalog's validation requires it
        return _EXPRESS.quantize(_EXPRESS.divide(Decimal(value), MILLISECONDS_PER[metric.per]), _PLACES)
    if metric.aggregation in ("max", "latest") and not carried:
        return None
    return exact(value)


def _empty(metric: MetricDefinition) -> Decimal | None:
    """The figure of a period with no event read: nothing to take a max or latest of; else 0."""
    return None if metric.aggregation in ("max", "latest") else Decimal(0)
