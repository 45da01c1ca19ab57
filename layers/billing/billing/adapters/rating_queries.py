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

        Two scans: one GROUP BY tenant over the month's partition gives every tenant's totals (and the
        usage of tenants whose single segment spans the month); one GROUP BY (tenant, segment) over
        the rows of the other tenants only (primary key on tenant_id) gives their segments, each row's
        segment being the number of segment starts at or before its timestamp."""
        params: dict[str, Any] = {"partition": f"{month.year:04d}{month.month:02d}"}
        stored = ""
        if cutoff is not None:
            stored = f" AND stored_at <= {_ts('cutoff')}"
            params["cutoff"] = ms(cutoff)
        rows = self.store.query(
            f"""
            SELECT tenant_id, count(), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
            FROM usage_events FINAL
            WHERE _partition_id = {{partition:String}}{stored}
            GROUP BY tenant_id
            """, params)
        totals = {r[0]: Usage(int(r[1]), int(r[2]), int(r[3]), Decimal(r[4])) for r in rows}
        result: dict[str, MonthUsage] = {}
        split: dict[str, Sequence[Segment]] = {}
        for tenant_id, segs in segments.items():
            total = totals.get(tenant_id, Usage())
            if not segs:
                result[tenant_id] = MonthUsage((), total)
            elif total.events == 0:
                result[tenant_id] = MonthUsage(tuple(Usage() for _ in segs), total)
            elif len(segs) == 1 and segs[0].start == month.start and segs[0].end == month.end:
                result[tenant_id] = MonthUsage((total,), total)
            else:
                split[tenant_id] = segs
        if split:
            per_segment = self._split_usage(split, params, stored)
            for tenant_id, segs in split.items():
                found = per_segment.get(tenant_id, {})
                result[tenant_id] = MonthUsage(tuple(found.get(i + 1, Usage()) for i in range(len(segs))),
                                               totals[tenant_id])
        return result

    def _split_usage(self, split: Mapping[str, Sequence[Segment]], params: dict[str, Any], stored: str
                     ) -> dict[str, dict[int, Usage]]:
        """{tenant: {1-based segment index: usage}}; index 0 (before the first segment) and
        len(segments) + 1 (after the last one ends) are outside every segment and dropped."""
        ids = sorted(split)
        bounds = [[ms(s.start) for s in split[t]] + [ms(split[t][-1].end)] for t in ids]
        rows = self.store.query(
            f"""
            SELECT tenant_id,
                   arrayCount(b -> b <= toUnixTimestamp64Milli(timestamp),
                              {{bounds:Array(Array(Int64))}}[indexOf({{ids:Array(String)}}, tenant_id)]) AS segment,
                   count(), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
            FROM usage_events FINAL
            WHERE _partition_id = {{partition:String}} AND tenant_id IN {{ids:Array(String)}}{stored}
            GROUP BY tenant_id, segment
            """, {**params, "ids": ids, "bounds": bounds})
        out: dict[str, dict[int, Usage]] = defaultdict(dict)
        for r in rows:
            if 1 <= int(r[1]) <= len(split[r[0]]):
                out[r[0]][int(r[1])] = Usage(int(r[2]), int(r[3]), int(r[4]), Decimal(r[5]))
        return out

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
        late_rows = self.store.query(
            f"""
            SELECT DISTINCT tenant_id, event_id FROM usage_events
            WHERE timestamp >= {_ts('first')} AND timestamp < {_ts('start')} AND stored_at > {_ts('lower')}{upper_sql}
            """, params)
        if not late_rows:
            return {}
        candidates = self.store.query(
            f"""
            SELECT tenant_id, event_id, any(timestamp), min(stored_at), any(queries),
                   any(input_tokens + output_tokens), any(cost_usd)
            FROM usage_events
            WHERE timestamp >= {_ts('first')} AND timestamp < {_ts('start')}
              AND tenant_id IN {{tenants:Array(String)}} AND (tenant_id, event_id) IN {{pairs:Array(Tuple(String, String))}}
            GROUP BY tenant_id, event_id
            HAVING min(stored_at) > {_ts('lower')}
            ORDER BY tenant_id, event_id
            """, {**params, "tenants": sorted({r[0] for r in late_rows}), "pairs": [tuple(r) for r in late_rows]})
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
            """SELECT tenant_id, count(), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
                FROM usage_events WHERE _partition_id = {partition:String}
                GROUP BY tenant_id""", {"partition": f"{month.year:04d}{month.month:02d}"})
