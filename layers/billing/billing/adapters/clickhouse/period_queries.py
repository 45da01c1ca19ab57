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

from billing.adapters.clickhouse.rating_queries import _ts, ms
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import RatedPeriod
from billing.rating import MonthUsage, Segment, Usage


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
