"""ClickHouse reads of one tenant's calendar period (billing.kernel.calendar.Period), which may start
and end at any millisecond and span two monthly partitions: exact sums over ``usage_events FINAL``
(each event once) for the period's UTC range, per pricing segment.

Invariant: an event belongs to the segment holding its timestamp (``start <= timestamp < end``); the
per-segment usage counts only rows stored by ``cutoff`` (when given), the total every stored event of
the period (as ``month_usage`` does for a month). A count of events is ``sum(sign)`` (a void takes
its event off). With charges, the per-segment meters and catalog-metric units are read by the month
reads' own queries (``ClickHouseRatingQueries.segment_meters``, ``measure_queries.segment_measures``)
over the period's UTC range instead of a month's partition, under the same cutoff and late rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.measure_queries import segment_measures
from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries, _bounds, _ts, ms
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import RatedPeriod
from billing.rating import LateUsage, MonthUsage, Segment, Usage
from billing.rating.measures import Measure
from billing.rating.usage import Meter


def period_usage(
    store: ClickHouseUsageStore,
    tenant_id: str,
    segments: Sequence[Segment],
    period: RatedPeriod,
    cutoff: datetime | None = None,
    *,
    metered: bool = False,
    measures: Sequence[Measure] = (),
) -> MonthUsage:
    """The tenant's usage of ``period``: one Usage per segment (their order) and the period's total;
    with ``metered`` (a plan of the period has charges) also the meters per segment, and with
    ``measures`` (its catalog-metric charges) their units per segment and group, both over the rows
    stored by ``cutoff``, as ``month_usage`` reads them for a month."""
    bounds = [ms(s.start) for s in segments] + ([ms(segments[-1].end)] if segments else [])
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "start": ms(period.start),
        "end": ms(period.end),
        "bounds": bounds,
        "cutoff": ms(cutoff) if cutoff is not None else 0,
    }
    billed = f"stored_at <= {_ts('cutoff')}" if cutoff is not None else "true"
    # Segment of an event: how many segment starts (and the last end) are at or before it, so
    # 1..n inside a segment, 0 before the first, n + 1 after the last.
    rows = store.query(
        f"""
        SELECT arrayCount(b -> b <= toUnixTimestamp64Milli(timestamp), {{bounds:Array(Int64)}}) AS segment,
               {billed} AS billed, sum(sign), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
        FROM usage_events FINAL
        WHERE tenant_id = {{tenant:String}} AND timestamp >= {_ts("start")} AND timestamp < {_ts("end")}
        GROUP BY segment, billed
        """,
        params,
    )
    per_segment = [Usage() for _ in segments]
    total = billed_total = Usage()
    for segment, is_billed, events, queries, tokens, cost in rows:
        use = Usage(int(events), int(queries), int(tokens), Decimal(cost))
        total += use
        if is_billed:
            billed_total += use
            if 1 <= segment <= len(segments):
                per_segment[segment - 1] += use
    usage = MonthUsage(tuple(per_segment), total)
    if not segments or not (metered or measures):
        return usage
    one = {tenant_id: segments}
    meters = ClickHouseRatingQueries(store).segment_meters(one, period, cutoff, {tenant_id: billed_total})
    measured: tuple[Any, ...] = ()
    if measures:
        cutoff_ms = None if cutoff is None else ms(cutoff)
        asked = {tenant_id: list(measures)}
        measured = segment_measures(store, one, asked, period, _bounds(one), cutoff_ms)[tenant_id]
    return MonthUsage(usage.segments, total, meters[tenant_id], measured)


def period_late_usage(
    store: ClickHouseUsageStore,
    tenant_id: str,
    segments: Sequence[Segment],
    period: RatedPeriod,
    *,
    lower: datetime,
    upper: datetime,
    metered: bool = False,
    measures: Sequence[Measure] = (),
) -> LateUsage | None:
    """Events of the tenant's closed ``period`` whose first copy was stored in (lower, upper]: late
    for the statement that billed everything stored by ``lower``; None when there is none. An event
    is checked against every stored copy of its id, so a duplicate written after the close is not
    late. ``billed_queries`` is the period's non-trial queries stored by ``lower`` (tier position).

    With ``metered``, as ``late_usage`` for a month: the late events' meters and those of the events
    already billed (first copy stored by ``lower``), per segment; with ``measures``, their units
    per segment over the billed events and over the billed and late ones (first copies stored by
    ``upper``)."""
    bounds = [ms(s.start) for s in segments] + ([ms(segments[-1].end)] if segments else [])
    rows = store.query(
        f"""
        SELECT arrayCount(b -> b <= toUnixTimestamp64Milli(ts), {{bounds:Array(Int64)}}) AS segment, type, model,
               sum(sign), sum(q), sum(i), sum(o), sum(by), sum(cost)
        FROM (
            SELECT event_id, any(timestamp) AS ts, any(type) AS type, any(model) AS model, any(sign) AS sign,
                   any(queries) AS q, any(input_tokens) AS i, any(output_tokens) AS o, any(bytes) AS by,
                   any(cost_usd) AS cost, min(stored_at) AS first
            FROM usage_events
            WHERE tenant_id = {{tenant:String}} AND timestamp >= {_ts("start")} AND timestamp < {_ts("end")}
            GROUP BY event_id)
        WHERE first > {_ts("lower")} AND first <= {_ts("upper")}
        GROUP BY segment, type, model
        ORDER BY segment, type, model
        """,
        {
            "tenant": tenant_id,
            "start": ms(period.start),
            "end": ms(period.end),
            "bounds": bounds,
            "lower": ms(lower),
            "upper": ms(upper),
        },
    )
    per_segment = [Usage() for _ in segments]
    late_meters: list[list[Meter]] = [[] for _ in segments]
    found = False
    for segment, kind, model, sign, queries, i, o, by, cost in rows:
        if 1 <= segment <= len(segments):
            found = True
            per_segment[segment - 1] += Usage(int(sign), int(queries), int(i) + int(o), Decimal(cost))
            late_meters[segment - 1].append(
                Meter(str(kind), str(model), int(sign), int(queries), int(i), int(o), int(by))
            )
    if not found:
        return None
    reads = ClickHouseRatingQueries(store)
    billed = reads.billed_queries(tenant_id, segments, period, lower)
    month: Any = period  # LateUsage names the rated period it adjusts (a Month or a tenant period)
    if not (metered or measures):
        return LateUsage(month, billed, tuple(per_segment))
    billed_measured: tuple[Any, ...] = ()
    with_late: tuple[Any, ...] = ()
    if measures:
        one, asked = {tenant_id: segments}, {tenant_id: list(measures)}
        edges = _bounds(one)
        billed_measured = segment_measures(store, one, asked, period, edges, ms(lower), first_copies=True)[
            tenant_id
        ]
        with_late = segment_measures(store, one, asked, period, edges, ms(upper), first_copies=True)[
            tenant_id
        ]
    return LateUsage(
        month,
        billed,
        tuple(per_segment),
        tuple(tuple(m) for m in late_meters),
        reads.billed_meters(tenant_id, segments, period, lower),
        billed_measured,
        with_late,
    )


class ClickHousePeriodReads:
    """billing.statements.period_close.PeriodUsageReads over the usage store."""

    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def usage(
        self,
        tenant_id: str,
        segments: Sequence[Segment],
        period: RatedPeriod,
        cutoff: datetime | None,
        *,
        metered: bool = False,
        measures: Sequence[Measure] = (),
    ) -> MonthUsage:
        return period_usage(
            self.store, tenant_id, segments, period, cutoff, metered=metered, measures=measures
        )

    def late(
        self,
        tenant_id: str,
        segments: Sequence[Segment],
        period: RatedPeriod,
        *,
        lower: datetime,
        upper: datetime,
        metered: bool = False,
        measures: Sequence[Measure] = (),
    ) -> LateUsage | None:
        return period_late_usage(
            self.store,
            tenant_id,
            segments,
            period,
            lower=lower,
            upper=upper,
            metered=metered,
            measures=measures,
        )
