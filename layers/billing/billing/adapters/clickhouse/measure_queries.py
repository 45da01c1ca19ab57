"""Charges on catalog metrics: each charge's units per pricing segment and group, from ClickHouse.

One query per charge id over the period's stored rows of ``usage_events FINAL`` (each event once):
a UTC month's partition, or any other period's UTC range (a tenant calendar's period, which may
start at any millisecond and span two partitions),
limited to the tenants whose plans have that charge, rows stored after ``cutoff`` left out (late
data), each event placed in its pricing segment by its millisecond timestamp as
``rating_queries.segment_meters`` places it. The units of each segment follow
``billing.rating.measures``: only live rows are read (``metric_queries.live_rows``: no void, no
voided event, an amended event as amended), the trial part and the paid part of the period are aggregated apart,
a unique value counts in the segment of its first event, a max in the segment of the first event
reaching it, a latest in the segment of the last event, a time-weighted sum split at the segments'
bounds (the value held when the first segment opens carried in from the last earlier event, read
from any earlier partition). Property names are bound as parameters.

A group value is the grouping property's text, or, for a number, its exact decimal's canonical text
(ClickHouse prints a Decimal without trailing zeros: 1.50 and 1.5 are the group ``1.5``, 3.0 is
``3``), or "" when the event has neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.metric_queries import (
    _EXPRESS,
    _FIELDS,
    _HAS_ANY,
    _HAS_PROPERTY,
    _PLACES,
    _PROPERTY,
    live_rows,
    metric_conditions,
)
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.metrics import MILLISECONDS_PER, MetricDefinition
from billing.kernel.periods import Month, RatedPeriod
from billing.rating.measures import Group, Measure, Measured
from billing.rating.segments import Segment


def exact(value: Any) -> Decimal:
    """A stored Decimal(.., 18) without its padding zeros (``3`` not ``3.000000000000000000``)."""
    number = Decimal(value)
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def _reads(metric: MetricDefinition) -> tuple[str, str, str, str]:
    """(the number read, whether the event has it, a unique value's key, whether it has any value):
    computed from the event's maps before its rows meet the join, as ``n``, ``n_has``, ``v_key``
    and ``v_any`` (carrying the maps through the join would cost more than the join)."""
    if metric.aggregation == "count":
        return "0", "1", "(0, '', toDecimal256(0, 18))", "1"
    if metric.field is not None:
        number = _FIELDS[metric.field]
        return number, "1", f"(0, '', toDecimal256({number}, 18))", "1"
    key = f"(mapContains(string_properties, {{p:String}}), string_properties[{{p:String}}], {_PROPERTY})"
    return _PROPERTY, _HAS_PROPERTY, key, _HAS_ANY


def _outer(metric: MetricDefinition) -> str:
    """Rows (tenant_id, segment, group, units) from the ``src`` rows (one per event)."""
    number, has, key, any_value = "n", "n_has", "v_key", "v_any"
    if metric.aggregation == "count":
        return "SELECT tenant_id, seg, g, toDecimal256(count(), 18) FROM src GROUP BY tenant_id, seg, g"
    if metric.aggregation == "sum":
        return (
            f"SELECT tenant_id, seg, g, sumIf(toDecimal256({number}, 18), {has}) FROM src "
            f"GROUP BY tenant_id, seg, g HAVING countIf({has}) > 0"
        )
    if metric.aggregation == "unique_count":
        return (
            "SELECT tenant_id, first_seg, g, toDecimal256(count(), 18) FROM ("
            f"SELECT tenant_id, trial, g, {key} AS value, min(seg) AS first_seg FROM src WHERE {any_value} "
            "GROUP BY tenant_id, trial, g, value) GROUP BY tenant_id, first_seg, g"
        )
    if metric.aggregation == "max":
        # the first event holding the part's maximum: greatest value, then earliest instant
        return (
            f"SELECT tenant_id, argMaxIf(seg, ({number}, -ts, event_id), {has}), g, "
            f"toDecimal256(maxIf({number}, {has}), 18) FROM src "
            f"GROUP BY tenant_id, trial, g HAVING countIf({has}) > 0"
        )
    if metric.aggregation == "latest":
        return (
            f"SELECT tenant_id, argMaxIf(seg, (ts, event_id), {has}), g, "
            f"toDecimal256(argMaxIf({number}, (ts, event_id), {has}), 18) FROM src "
            f"GROUP BY tenant_id, trial, g HAVING countIf({has}) > 0"
        )
    raise ValueError(f"metric {metric.id}: a {metric.aggregation} is measured by _time_weighted")


_COLUMNS = (
    "tenant_id, event_id, timestamp, type, model, input_tokens, output_tokens, bytes, queries, "
    "string_properties, number_properties, sign"
)
_MONTH = "_partition_id = {partition:String}"
_RANGE = (
    "timestamp >= fromUnixTimestamp64Milli({span_start:Int64}, 'UTC') "
    "AND timestamp < fromUnixTimestamp64Milli({span_end:Int64}, 'UTC')"
)


def span(period: RatedPeriod, start_ms: int, end_ms: int) -> tuple[str, dict[str, Any]]:
    """The condition selecting a period's stored rows, and its parameters: a UTC month's partition
    (``_partition_id``), any other period's ``[start, end)`` on ``timestamp`` given in epoch
    milliseconds (``rating_queries.ms``). Both select the same rows for a month; the partition is
    what the month's reads have always named."""
    if isinstance(period, Month):
        return _MONTH, {"partition": f"{period.year:04d}{period.month:02d}"}
    return _RANGE, {"span_start": start_ms, "span_end": end_ms}


_IDS = "{ids:Array(String)}"
# Each tenant's segment bounds ``b`` and trial flags ``tr``, joined to its rows: a hash join of 1,000
# keys is an order of magnitude faster than indexing the parameter arrays row by row.
_KEYS = """keys AS (
            SELECT k.1 AS tenant_id, k.2 AS b, k.3 AS tr FROM (SELECT arrayJoin(arrayZip(
                {ids:Array(String)}, {bounds:Array(Array(Int64))}, {trials:Array(Array(UInt8))})) AS k))"""


def _first_copies(stored: str, rows: str = _MONTH) -> str:
    """Each event once, as its first stored copy, kept when that copy passes ``stored`` (a HAVING on
    ``first_stored``): what was billed by a watermark, however many copies came later. ``rows``: the
    stored rows read (the period's: ``span``)."""
    picked = ", ".join(f"any({c}) AS {c}_" for c in _COLUMNS.split(", ")[2:])
    renamed = ", ".join(f"{c}_ AS {c}" for c in _COLUMNS.split(", ")[2:])
    return f"""(SELECT tenant_id, event_id, {renamed} FROM (
        SELECT tenant_id, event_id, {picked}, min(stored_at) AS first_stored FROM usage_events
        WHERE {rows} AND tenant_id IN {_IDS}
        GROUP BY tenant_id, event_id{stored}))"""


def _group(group_by: Sequence[str], parameters: dict[str, Any]) -> str:
    """The group value array: each grouping property's text, a number's canonical text, or ""."""
    values = []
    for i, name in enumerate(group_by):
        parameters[f"g{i}"] = name
        text, number = f"string_properties[{{g{i}:String}}]", f"number_properties[{{g{i}:String}}]"
        values.append(
            f"if(mapContains(string_properties, {{g{i}:String}}), {text}, "
            f"if(mapContains(number_properties, {{g{i}:String}}), toString({number}), ''))"
        )
    return f"[{', '.join(values)}]" if values else "CAST([], 'Array(String)')"


def _time_weighted(group: str, where: str, stored: str, first_copies: bool) -> tuple[str, str]:
    """(more CTEs, the outer query) of a time-weighted sum: rows (tenant_id, segment, group, the
    exact sum of value x milliseconds held in the segment).

    Per tenant and group, the events of the period (``src``) and the last event before its first
    segment opens (``carried``, from any earlier partition, under the same watermark), ordered by
    (timestamp, event_id); each holds from its timestamp (the carried one from the period's start)
    until the next one's, the last until the period's end, and each holding is cut at the segments'
    bounds. Ties hold for 0 ms: of events at one instant, the greatest event_id holds."""
    opens = "timestamp < fromUnixTimestamp64Milli({opens:Int64}, 'UTC')"
    if first_copies:
        before, rows = _first_copies(stored, opens), ""
    else:
        before, rows = "usage_events FINAL", f" AND {opens}{stored}"
    ctes = f""",
        carried AS (
            SELECT tenant_id, b, g, argMax(v, (ts, event_id)) AS v FROM (
                SELECT tenant_id, toUnixTimestamp64Milli(timestamp) AS ts, {group} AS g, event_id,
                       toDecimal256({_PROPERTY}, 18) AS v
                FROM {before}
                WHERE tenant_id IN {_IDS}{rows}{where} AND {_HAS_PROPERTY}) AS earlier
            INNER JOIN keys USING (tenant_id)
            WHERE ts < b[1]
            GROUP BY tenant_id, b, g),
        held AS (
            SELECT tenant_id, b, g, toDecimal256(n, 18) AS v, ts, event_id
            FROM src WHERE n_has
            UNION ALL
            SELECT tenant_id, b, g, v, b[1] AS ts, '' AS event_id FROM carried)"""
    outer = """
        SELECT tenant_id, seg, g, sum(v * (least(until, b[seg + 1]) - greatest(ts, b[seg]))) FROM (
            SELECT tenant_id, g, v, ts, b, ifNull(next, b[-1]) AS until,
                   arrayJoin(arrayFilter(i -> b[i] < until AND b[i + 1] > ts, range(1, length(b)))) AS seg
            FROM (
                SELECT tenant_id, g, v, ts, b,
                       leadInFrame(toNullable(ts), 1) OVER (PARTITION BY tenant_id, g ORDER BY ts, event_id
                           ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next
                FROM held))
        GROUP BY tenant_id, seg, g"""
    return ctes, outer


def measure_sql(
    measure: Measure,
    stored: str,
    first_copies: bool = False,
    voids_stored: str = "",
    *,
    one_tenant: bool = False,
    rows_of: str = _MONTH,
) -> tuple[str, dict[str, Any]]:
    """The query for one charge id; ``stored`` an extra condition on the rows (the usage cutoff), or
    with ``first_copies`` a HAVING on each event's first stored copy (``first_stored``);
    ``voids_stored`` the cutoff's condition on the voids that take rows out (``live_rows``);
    ``one_tenant``: ``ids`` names one tenant, whose bounds are read as constants (no join);
    ``rows_of``: the condition selecting the period's stored rows (``span``)."""
    where, parameters = metric_conditions(measure.metric)
    group = _group(measure.group_by, parameters)
    conditions = where
    where += live_rows(f"tenant_id IN {_IDS} AND {rows_of}", voids_stored)
    if first_copies:
        source, rows = _first_copies(stored, rows_of), ""
    else:
        source, rows = "usage_events FINAL", f" AND {rows_of}{stored}"
    number, has, key, any_value = _reads(measure.metric)
    ctes, outer = "", ""
    if measure.metric.aggregation == "time_weighted_sum":
        carried = conditions + live_rows(f"tenant_id IN {_IDS}", voids_stored)
        ctes, outer = _time_weighted(group, carried, stored, first_copies)
    else:
        outer = _outer(measure.metric)
    # one tenant's bounds and trial flags (a preview, the usage page) as constants: the join is
    # the same rows' bounds at a cost of its own
    bounds, joined = "b, tr", "\n                INNER JOIN keys USING (tenant_id)"
    if one_tenant:
        bounds = "{bounds:Array(Array(Int64))}[1] AS b, {trials:Array(Array(UInt8))}[1] AS tr"
        joined = ""
    sql = f"""
        WITH {_KEYS},
        src AS (
            SELECT tenant_id, b, seg, tr[seg] AS trial, g, ts, event_id, n, n_has, v_key, v_any
            FROM (
                SELECT tenant_id, {bounds}, ts, arrayCount(x -> x <= ts, b) AS seg, g, event_id, n, n_has,
                       v_key, v_any
                FROM (
                    SELECT tenant_id, toUnixTimestamp64Milli(timestamp) AS ts, {group} AS g, event_id,
                           {number} AS n, {has} AS n_has, {key} AS v_key, {any_value} AS v_any
                    FROM {source}
                    WHERE tenant_id IN {_IDS}{rows}{where}) AS events{joined})
            WHERE seg >= 1 AND seg < length(b)){ctes}
        {outer}
    """
    return sql, parameters


def segment_measures(
    store: ClickHouseUsageStore,
    segments: Mapping[str, Sequence[Segment]],
    measures: Mapping[str, Sequence[Measure]],
    month: RatedPeriod,
    bounds: Mapping[str, Sequence[int]],
    cutoff_ms: int | None,
    *,
    first_copies: bool = False,
) -> dict[str, tuple[Measured, ...]]:
    """Per tenant (those of ``measures`` with segments), per segment: charge id -> group -> units,
    over the events stored by ``cutoff_ms`` (all when None); with ``first_copies``, over the events
    whose first copy was stored by then (what a statement with that watermark billed). ``bounds``:
    each tenant's segment starts and last end in epoch milliseconds (rating_queries.ms); ``month``:
    the period they fall in, a UTC month or a tenant's calendar period (``span``)."""
    out: dict[str, list[dict[str, dict[Group, Decimal]]]] = {
        t: [{} for _ in segments[t]] for t in measures if segments.get(t)
    }
    by_charge: dict[str, tuple[Measure, list[str]]] = {}
    for tenant_id in out:
        for measure in measures[tenant_id]:
            by_charge.setdefault(measure.charge_id, (measure, []))[1].append(tenant_id)
    for charge_id, (measure, ids) in sorted(by_charge.items()):
        ids = sorted(ids)
        stored = voids_stored = ""
        rows_of, spanned = span(month, min(bounds[t][0] for t in ids), max(bounds[t][-1] for t in ids))
        params: dict[str, Any] = {
            **spanned,
            "ids": ids,
            "bounds": [list(bounds[t]) for t in ids],
            "trials": [[int(s.trial) for s in segments[t]] for t in ids],
        }
        if cutoff_ms is not None:
            column = "first_stored" if first_copies else "stored_at"
            cutoff = "fromUnixTimestamp64Milli({cutoff:Int64}, 'UTC')"
            stored = f"{' HAVING' if first_copies else ' AND'} {column} <= {cutoff}"
            voids_stored = f" AND stored_at <= {cutoff}"
            params["cutoff"] = cutoff_ms
        per = measure.metric.per
        if per is not None:
            params["opens"] = max(bounds[t][0] for t in ids)
        sql, fixed = measure_sql(
            measure, stored, first_copies, voids_stored, one_tenant=len(ids) == 1, rows_of=rows_of
        )
        rows = [
            (str(tenant_id), int(seg) - 1, tuple(str(v) for v in group), units)
            for tenant_id, seg, group, units in store.query(sql, {**params, **fixed})
        ]
        if per is not None:
            rows = _in_time_units(rows, segments, MILLISECONDS_PER[per])
        for tenant_id, index, key, units in rows:
            cell = out[tenant_id][index].setdefault(charge_id, {})
            cell[key] = cell.get(key, Decimal(0)) + exact(units)
    return {t: tuple(per_segment) for t, per_segment in out.items()}


Row = tuple[str, int, Group, Any]  # tenant, segment index, group, units


def _in_time_units(rows: list[Row], segments: Mapping[str, Sequence[Segment]], unit_ms: int) -> list[Row]:
    """Segments' value x milliseconds in the metric's time unit, rounded so that the segments of a
    part (trial or paid) add up exactly to its total rounded once: each segment gets the rounded
    running total at its end minus that at its start (so a month split by a plan change to an
    identical plan bills the same units as the whole month)."""
    raw = {(t, i, g): Decimal(units) for t, i, g, units in rows}
    running: dict[tuple[str, bool, Group], tuple[Decimal, Decimal]] = {}
    out: list[Row] = []
    for t, i, g in sorted(raw):
        part = (t, segments[t][i].trial, g)
        exact_total, rounded = running.get(part, (Decimal(0), Decimal(0)))
        exact_total += raw[(t, i, g)]
        now = _EXPRESS.quantize(_EXPRESS.divide(exact_total, unit_ms), _PLACES)
        running[part] = (exact_total, now)
        out.append((t, i, g, now - rounded))
    return out
