"""Charges on catalog metrics: each charge's units per pricing segment and group, from ClickHouse.

One query per charge id over the month's partition of ``usage_events FINAL`` (each event once),
limited to the tenants whose plans have that charge, rows stored after ``cutoff`` left out (late
data), each event placed in its pricing segment by its millisecond timestamp as
``rating_queries.segment_meters`` places it. The units of each segment follow
``billing.rating.measures``: only live rows are read (``metric_queries.live_rows``: no void, no
voided event, an amended event as amended), the trial part and the paid part of the period are aggregated apart,
a unique value counts in the segment of its first event, a max in the segment of the first event
reaching it, a latest in the segment of the last event. Property names are bound as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.metric_queries import (
    _FIELDS,
    _HAS_ANY,
    _HAS_PROPERTY,
    _PROPERTY,
    live_rows,
    metric_conditions,
)
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.catalog.metrics import MetricDefinition
from billing.kernel.periods import Month
from billing.rating.measures import Group, Measure, Measured
from billing.rating.segments import Segment


def exact(value: Any) -> Decimal:
    """A stored Decimal(.., 18) without its padding zeros (``3`` not ``3.000000000000000000``)."""
    number = Decimal(value)
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def _reads(metric: MetricDefinition) -> tuple[str, str, str, str]:
    """(the number read, whether the event has it, a unique value's key, whether it has any value)."""
    if metric.field is not None:
        number = _FIELDS[metric.field]
        return number, "1", f"(0, '', toDecimal256({number}, 18))", "1"
    key = f"(mapContains(string_properties, {{p:String}}), string_properties[{{p:String}}], {_PROPERTY})"
    return _PROPERTY, _HAS_PROPERTY, key, _HAS_ANY


def _outer(metric: MetricDefinition) -> str:
    """Rows (tenant_id, segment, group, units) from the ``src`` rows (one per event)."""
    number, has, key, any_value = _reads(metric)
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
    raise ValueError(f"metric {metric.id}: a {metric.aggregation} cannot be charged")


_COLUMNS = (
    "tenant_id, event_id, timestamp, type, model, input_tokens, output_tokens, bytes, queries, "
    "string_properties, number_properties, sign"
)


def _first_copies(stored: str) -> str:
    """Each event once, as its first stored copy, kept when that copy passes ``stored`` (a HAVING on
    ``first_stored``): what was billed by a watermark, however many copies came later."""
    picked = ", ".join(f"any({c}) AS {c}_" for c in _COLUMNS.split(", ")[2:])
    renamed = ", ".join(f"{c}_ AS {c}" for c in _COLUMNS.split(", ")[2:])
    return f"""(SELECT tenant_id, event_id, {renamed} FROM (
        SELECT tenant_id, event_id, {picked}, min(stored_at) AS first_stored FROM usage_events
        WHERE _partition_id = {{partition:String}} AND tenant_id IN {{ids:Array(String)}}
        GROUP BY tenant_id, event_id{stored}))"""


def measure_sql(
    measure: Measure, stored: str, first_copies: bool = False, voids_stored: str = ""
) -> tuple[str, dict[str, Any]]:
    """The query for one charge id; ``stored`` an extra condition on the rows (the usage cutoff), or
    with ``first_copies`` a HAVING on each event's first stored copy (``first_stored``);
    ``voids_stored`` the cutoff's condition on the voids that take rows out (``live_rows``)."""
    where, parameters = metric_conditions(measure.metric)
    where += live_rows(
        "tenant_id IN {ids:Array(String)} AND _partition_id = {partition:String}", voids_stored
    )
    groups = []
    for i, name in enumerate(measure.group_by):
        parameters[f"g{i}"] = name
        groups.append(f"string_properties[{{g{i}:String}}]")
    group = f"[{', '.join(groups)}]" if groups else "CAST([], 'Array(String)')"
    if first_copies:
        source, rows = _first_copies(stored), ""
    else:
        source, rows = "usage_events FINAL", f" AND _partition_id = {{partition:String}}{stored}"
    sql = f"""
        WITH src AS (
            SELECT tenant_id, seg, {{trials:Array(Array(UInt8))}}[idx][seg] AS trial, g, ts, event_id,
                   input_tokens, output_tokens, bytes, queries, string_properties, number_properties
            FROM (
                SELECT tenant_id, indexOf({{ids:Array(String)}}, toString(tenant_id)) AS idx,
                       toUnixTimestamp64Milli(timestamp) AS ts,
                       arrayCount(b -> b <= ts, {{bounds:Array(Array(Int64))}}[idx]) AS seg,
                       {group} AS g, event_id, input_tokens, output_tokens, bytes, queries,
                       string_properties, number_properties
                FROM {source}
                WHERE tenant_id IN {{ids:Array(String)}}{rows}{where})
            WHERE seg >= 1 AND seg < length({{bounds:Array(Array(Int64))}}[idx]))
        {_outer(measure.metric)}
    """
    return sql, parameters


def segment_measures(
    store: ClickHouseUsageStore,
    segments: Mapping[str, Sequence[Segment]],
    measures: Mapping[str, Sequence[Measure]],
    month: Month,
    bounds: Mapping[str, Sequence[int]],
    cutoff_ms: int | None,
    *,
    first_copies: bool = False,
) -> dict[str, tuple[Measured, ...]]:
    """Per tenant (those of ``measures`` with segments), per segment: charge id -> group -> units,
    over the events stored by ``cutoff_ms`` (all when None); with ``first_copies``, over the events
    whose first copy was stored by then (what a statement with that watermark billed). ``bounds``:
    each tenant's segment starts and last end in epoch milliseconds (rating_queries.ms)."""
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
        params: dict[str, Any] = {
            "partition": f"{month.year:04d}{month.month:02d}",
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
        sql, fixed = measure_sql(measure, stored, first_copies, voids_stored)
        for tenant_id, seg, group, units in store.query(sql, {**params, **fixed}):
            cell = out[str(tenant_id)][int(seg) - 1].setdefault(charge_id, {})
            key = tuple(str(v) for v in group)
            cell[key] = cell.get(key, Decimal(0)) + exact(units)
    return {t: tuple(per_segment) for t, per_segment in out.items()}
