"""ClickHouse reads for rating: per-segment aggregates of a month and late (after-close) events.

Exactly-once: ``usage_events FINAL`` collapses duplicate rows of one (tenant_id, timestamp, event_id).
Usage cutoff: a statement of a closed month M counts only rows with ``stored_at <= closed_at(M)``;
rows of M stored later are late data, billed as adjustments on a later statement.
Boundaries are passed as epoch milliseconds (``timestamp`` is DateTime64(3)); an instant with
sub-millisecond digits is rounded up, so an event at or after a boundary is on its later side.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse import UsageStore
from billing.periods import Month, utc
from billing.rating import LateUsage, MonthUsage, Segment, Usage

LATE_LOOKBACK_MONTHS = 3  # late events are looked for in the months before the one being rated


def ms(instant: datetime) -> int:
    """Epoch milliseconds, rounded up (an event at ms t is at/after the instant iff t >= ms(instant))."""
    micros = (utc(instant) - datetime(1970, 1, 1, tzinfo=utc(instant).tzinfo)) // timedelta(microseconds=1)
    return -((-micros) // 1000)


def _ts(name: str) -> str:
    return f"fromUnixTimestamp64Milli({{{name}:Int64}}, 'UTC')"


class RatingQueries:
    def __init__(self, store: UsageStore):
        self.store = store

    # ------------------------------------------------------------------------------------------
    def month_usage(self, segments: Mapping[str, Sequence[Segment]], month: Month, cutoff: datetime | None
                    ) -> dict[str, MonthUsage]:
        """Usage per pricing segment for every tenant in ``segments`` (tenant_id -> its segments).

        One GROUP BY tenant over the month gives every tenant's totals, and the segment usage of
        tenants whose single segment spans the whole month; other tenants get one countIf/sumIf
        query each (one scan of that tenant's rows)."""
        params: dict[str, Any] = {"start": ms(month.start), "end": ms(month.end)}
        stored = ""
        if cutoff is not None:
            stored = f" AND stored_at <= {_ts('cutoff')}"
            params["cutoff"] = ms(cutoff)
        rows = self.store.query(
            f"""
            SELECT tenant_id, count(), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
            FROM usage_events FINAL
            WHERE timestamp >= {_ts('start')} AND timestamp < {_ts('end')}{stored}
            GROUP BY tenant_id
            """, params)
        totals = {r[0]: Usage(int(r[1]), int(r[2]), int(r[3]), Decimal(r[4])) for r in rows}
        result: dict[str, MonthUsage] = {}
        for tenant_id, segs in segments.items():
            total = totals.get(tenant_id, Usage())
            if not segs:
                result[tenant_id] = MonthUsage((), total)
            elif total.events == 0:
                result[tenant_id] = MonthUsage(tuple(Usage() for _ in segs), total)
            elif len(segs) == 1 and segs[0].start == month.start and segs[0].end == month.end:
                result[tenant_id] = MonthUsage((total,), total)
            else:
                result[tenant_id] = MonthUsage(self.segment_usage(tenant_id, segs, month, cutoff), total)
        return result

    def segment_usage(self, tenant_id: str, segments: Sequence[Segment], month: Month,
                      cutoff: datetime | None, *, stored_after: datetime | None = None) -> tuple[Usage, ...]:
        params: dict[str, Any] = {"t": tenant_id, "start": ms(month.start), "end": ms(month.end)}
        where = [f"tenant_id = {{t:String}}", f"timestamp >= {_ts('start')}", f"timestamp < {_ts('end')}"]
        if cutoff is not None:
            where.append(f"stored_at <= {_ts('cutoff')}")
            params["cutoff"] = ms(cutoff)
        if stored_after is not None:
            where.append(f"stored_at > {_ts('after')}")
            params["after"] = ms(stored_after)
        columns = []
        for i, seg in enumerate(segments):
            params[f"s{i}"], params[f"e{i}"] = ms(seg.start), ms(seg.end)
            cond = f"timestamp >= {_ts(f's{i}')} AND timestamp < {_ts(f'e{i}')}"
            columns += [f"countIf({cond})", f"sumIf(queries, {cond})",
                        f"sumIf(input_tokens + output_tokens, {cond})", f"sumIf(cost_usd, {cond})"]
        row = self.store.query(
            f"SELECT {', '.join(columns)} FROM usage_events FINAL WHERE {' AND '.join(where)}", params)[0]
        return tuple(Usage(int(row[4 * i]), int(row[4 * i + 1]), int(row[4 * i + 2]), Decimal(row[4 * i + 3]))
                     for i in range(len(segments)))

    # ------------------------------------------------------------------------------------------
    def late_usage(self, month: Month, *, lower: datetime, upper: datetime | None,
                   closed: Mapping[Month, datetime], segments_of: Callable[[str, Month], Sequence[Segment]]
                   ) -> dict[str, list[LateUsage]]:
        """Events of closed months before ``month`` whose first copy was stored in (lower, upper].

        ``lower`` is the latest close before ``month`` (everything stored up to it was billed by an
        earlier statement); ``closed`` maps closed months to their close instants. Late events are
        rare, so they are read row by row; each one is checked against every stored copy of its id,
        so an event never becomes "late" because a duplicate copy was written after the close."""
        first = month
        for _ in range(LATE_LOOKBACK_MONTHS):
            first = first.previous()
        params: dict[str, Any] = {"first": ms(first.start), "start": ms(month.start), "lower": ms(lower)}
        upper_sql = ""
        if upper is not None:
            upper_sql = f" AND stored_at <= {_ts('upper')}"
            params["upper"] = ms(upper)
        candidates = self.store.query(
            f"""
            SELECT tenant_id, event_id, any(timestamp), min(stored_at), any(queries),
                   any(input_tokens + output_tokens), any(cost_usd)
            FROM usage_events
            WHERE timestamp >= {_ts('first')} AND timestamp < {_ts('start')}
              AND (tenant_id, event_id) IN (
                  SELECT tenant_id, event_id FROM usage_events
                  WHERE timestamp >= {_ts('first')} AND timestamp < {_ts('start')}
                    AND stored_at > {_ts('lower')}{upper_sql})
            GROUP BY tenant_id, event_id
            HAVING min(stored_at) > {_ts('lower')}
            ORDER BY tenant_id, event_id
            """, params)
        grouped: dict[tuple[str, Month], list[tuple[Any, ...]]] = defaultdict(list)
        for row in candidates:
            m = Month.of(utc(row[2]))
            if m in closed and utc(row[3]) > closed[m]:
                grouped[(row[0], m)].append(row)
        result: dict[str, list[LateUsage]] = defaultdict(list)
        for (tenant_id, m), rows in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            segs = list(segments_of(tenant_id, m))
            if not segs:
                continue
            per_segment = [Usage() for _ in segs]
            for row in rows:
                at = utc(row[2])
                for i, seg in enumerate(segs):
                    if seg.start <= at < seg.end:
                        per_segment[i] = per_segment[i] + Usage(1, int(row[4]), int(row[5]), Decimal(row[6]))
                        break
            billed_queries = self.billed_queries(tenant_id, segs, m, lower)
            result[tenant_id].append(LateUsage(m, billed_queries, tuple(per_segment)))
        return dict(result)

    def billed_queries(self, tenant_id: str, segments: Sequence[Segment], month: Month, lower: datetime) -> int:
        """Non-trial queries of ``month`` whose first copy was stored by ``lower`` (already billed)."""
        params: dict[str, Any] = {"t": tenant_id, "start": ms(month.start), "end": ms(month.end), "lower": ms(lower)}
        conds = []
        for i, seg in enumerate(s for s in segments if not s.trial):
            params[f"s{i}"], params[f"e{i}"] = ms(seg.start), ms(seg.end)
            conds.append(f"(ts >= {_ts(f's{i}')} AND ts < {_ts(f'e{i}')})")
        if not conds:
            return 0
        row = self.store.query(
            f"""
            SELECT countIf(q = 1 AND ({' OR '.join(conds)})) FROM (
                SELECT event_id, any(timestamp) AS ts, any(queries) AS q, min(stored_at) AS first_stored
                FROM usage_events
                WHERE tenant_id = {{t:String}} AND timestamp >= {_ts('start')} AND timestamp < {_ts('end')}
                GROUP BY event_id)
            WHERE first_stored <= {_ts('lower')}
            """, params)
        return int(row[0][0])

    def month_totals_scan(self, month: Month) -> list[tuple[Any, ...]]:
        """A plain GROUP BY scan of the month (the bench's reference point)."""
        return self.store.query(
            f"""SELECT tenant_id, count(), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
                FROM usage_events WHERE timestamp >= {_ts('start')} AND timestamp < {_ts('end')}
                GROUP BY tenant_id""", {"start": ms(month.start), "end": ms(month.end)})
