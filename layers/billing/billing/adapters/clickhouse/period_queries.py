"""ClickHouse reads of one tenant's calendar period (billing.kernel.calendar.Period), which may start
and end at any millisecond and span two monthly partitions: exact sums over ``usage_events FINAL``
(each event once) for the period's UTC range, per pricing segment.

Invariant: an event belongs to the segment holding its timestamp (``start <= timestamp < end``); the
per-segment usage counts only rows stored by ``cutoff`` (when given), the total every stored event of
the period (as ``month_usage`` does for a month)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.rating_queries import ClickHouseRatingQueries, _ts, ms
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import RatedPeriod
from billing.rating import LateUsage, MonthUsage, Segment, Usage


def period_usage(
    store: ClickHouseUsageStore,
    tenant_id: str,
    segments: Sequence[Segment],
    period: RatedPeriod,
    cutoff: datetime | None = None,
) -> MonthUsage:
    """The tenant's usage of ``period``: one Usage per segment (their order) and the period's total."""
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
               {billed} AS billed, count(), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
        FROM usage_events FINAL
        WHERE tenant_id = {{tenant:String}} AND timestamp >= {_ts("start")} AND timestamp < {_ts("end")}
        GROUP BY segment, billed
        """,
        params,
    )
    per_segment = [Usage() for _ in segments]
    total = Usage()
    for segment, is_billed, events, queries, tokens, cost in rows:
        use = Usage(int(events), int(queries), int(tokens), Decimal(cost))
        total += use
        if is_billed and 1 <= segment <= len(segments):
            per_segment[segment - 1] += use
    return MonthUsage(tuple(per_segment), total)


def period_late_usage(
    store: ClickHouseUsageStore,
    tenant_id: str,
    segments: Sequence[Segment],
    period: RatedPeriod,
    *,
    lower: datetime,
    upper: datetime,
) -> LateUsage | None:
    """Events of the tenant's closed ``period`` whose first copy was stored in (lower, upper]: late
    for the statement that billed everything stored by ``lower``; None when there is none. An event
    is checked against every stored copy of its id, so a duplicate written after the close is not
    late. ``billed_queries`` is the period's non-trial queries stored by ``lower`` (tier position)."""
    bounds = [ms(s.start) for s in segments] + ([ms(segments[-1].end)] if segments else [])
    rows = store.query(
        f"""
        SELECT arrayCount(b -> b <= toUnixTimestamp64Milli(ts), {{bounds:Array(Int64)}}) AS segment,
               count(), sum(q), sum(tokens), sum(cost)
        FROM (
            SELECT event_id, any(timestamp) AS ts, any(queries) AS q,
                   any(input_tokens + output_tokens) AS tokens, any(cost_usd) AS cost, min(stored_at) AS first
            FROM usage_events
            WHERE tenant_id = {{tenant:String}} AND timestamp >= {_ts("start")} AND timestamp < {_ts("end")}
            GROUP BY event_id)
        WHERE first > {_ts("lower")} AND first <= {_ts("upper")}
        GROUP BY segment
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
    for segment, events, queries, tokens, cost in rows:
        if 1 <= segment <= len(segments):
            per_segment[segment - 1] += Usage(int(events), int(queries), int(tokens), Decimal(cost))
    if not any(u.events for u in per_segment):
        return None
    billed = ClickHouseRatingQueries(store).billed_queries(tenant_id, segments, period, lower)  # type: ignore[arg-type]
    return LateUsage(period, billed, tuple(per_segment))  # type: ignore[arg-type]


class ClickHousePeriodReads:
    """billing.statements.period_close.PeriodUsageReads over the usage store."""

    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def usage(
        self, tenant_id: str, segments: Sequence[Segment], period: RatedPeriod, cutoff: datetime | None
    ) -> MonthUsage:
        return period_usage(self.store, tenant_id, segments, period, cutoff)

    def late(
        self,
        tenant_id: str,
        segments: Sequence[Segment],
        period: RatedPeriod,
        *,
        lower: datetime,
        upper: datetime,
    ) -> LateUsage | None:
        return period_late_usage(self.store, tenant_id, segments, period, lower=lower, upper=upper)
