"""ClickHouse reads for rating: per-segment aggregates of a month and late (after-close) events.

Exactly-once: ``usage_events FINAL`` collapses duplicate rows of one (tenant_id, timestamp, event_id).
Usage cutoff: a statement of a closed month M counts only rows with ``stored_at <= closed_at(M)``;
rows of M stored later are late data, billed as adjustments on a later statement.
Corrections are rows too (migration 0007): a void negates its event's quantities and cost, so every
sum here is the corrected sum, an event count is ``sum(sign)``, and a correction stored after a close
is late data, billed as an adjustment like any late event.
Boundaries are passed as epoch milliseconds (``timestamp`` is DateTime64(3)); an instant with
sub-millisecond digits is rounded up, so an event at or after a boundary is on its later side.

Length: one class whose every read shares the same exactly-once rules (``FINAL``, the segment bounds,
the late-data watermark); each SQL text sits next to the method that reads its answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.adapters.clickhouse.measure_queries import segment_measures, span
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import Month, RatedPeriod, utc
from billing.rating import LateUsage, MonthUsage, Segment, Usage
from billing.rating.measures import Measure
from billing.rating.usage import Meter, Meters

LATE_LOOKBACK_MONTHS = 3  # late events are looked for in the months before the one being rated
# Rating at most this many tenants (a preview, a final statement, the usage page) reads only their
# rows (the primary key starts with tenant_id); more (the close) scans the month's partition once.
FEW_TENANTS = 100


def ms(instant: datetime) -> int:
    """Epoch milliseconds, rounded up (an event at ms t is at/after the instant iff t >= ms(instant))."""
    micros = (utc(instant) - datetime(1970, 1, 1, tzinfo=utc(instant).tzinfo)) // timedelta(microseconds=1)
    return -((-micros) // 1000)


def _segment_index(bounds: Sequence[tuple[int, int]], at_ms: int) -> int | None:
    for index, (start, end) in enumerate(bounds):
        if start <= at_ms < end:
            return index
    return None


def _bounds(segments: Mapping[str, Sequence[Segment]]) -> dict[str, list[int]]:
    """Each tenant's segment starts and last end, in epoch milliseconds."""
    return {t: [ms(s.start) for s in segs] + [ms(segs[-1].end)] for t, segs in segments.items() if segs}


def _ts(name: str) -> str:
    return f"fromUnixTimestamp64Milli({{{name}:Int64}}, 'UTC')"


class ClickHouseRatingQueries:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    # ------------------------------------------------------------------------------------------
    def month_usage(
        self,
        segments: Mapping[str, Sequence[Segment]],
        month: Month,
        cutoff: datetime | None,
        *,
        metered: Collection[str] = (),
        measures: Mapping[str, Sequence[Measure]] | None = None,
    ) -> dict[str, MonthUsage]:
        """Usage per pricing segment for every tenant in ``segments`` (tenant_id -> its segments);
        for the tenants in ``metered`` (a plan of theirs has charges) also their meters per segment,
        and for those in ``measures`` (a plan of theirs charges a catalog metric) the units of each
        such charge per segment and group (billing.adapters.clickhouse.measure_queries).

        Two scans: one GROUP BY tenant over the month's partition gives every tenant's totals (and the
        usage of tenants whose single segment spans the month); one GROUP BY (tenant, segment) over
        the hourly rollup of the other tenants (exact rows for the hours that hold a boundary) gives
        their segments."""
        params: dict[str, Any] = {"partition": f"{month.year:04d}{month.month:02d}"}
        only = ""
        if len(segments) <= FEW_TENANTS:
            only = " AND tenant_id IN {tenants:Array(String)}"
            params["tenants"] = sorted(segments)
        stored = ""
        if cutoff is not None:
            stored = f" AND stored_at <= {_ts('cutoff')}"
            params["cutoff"] = ms(cutoff)
        rows = self.store.query(
            f"""
            SELECT tenant_id, sumIf(sign, billed), sumIf(queries, billed), sumIf(input_tokens + output_tokens, billed),
                   sumIf(cost_usd, billed), countIf(NOT billed)
            FROM (SELECT tenant_id, sign, queries, input_tokens, output_tokens, cost_usd,
                         {"stored_at <= " + _ts("cutoff") if cutoff is not None else "true"} AS billed
                  FROM usage_events FINAL WHERE _partition_id = {{partition:String}}{only})
            GROUP BY tenant_id
            """,
            params,
        )
        stored_later = {r[0] for r in rows if r[5]}
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
            per_segment = self._split_usage(split, params, stored, month, cutoff, totals, stored_later)
            for tenant_id in split:
                result[tenant_id] = MonthUsage(per_segment[tenant_id], totals[tenant_id])
        wanted = {t: segments[t] for t in metered if segments.get(t)}
        if wanted:
            meters = self.segment_meters(wanted, month, cutoff, totals)
            for tenant_id, per_segment_meters in meters.items():
                use = result[tenant_id]
                result[tenant_id] = MonthUsage(use.segments, use.total, per_segment_meters)
        if measures:
            measured = segment_measures(
                self.store,
                segments,
                measures,
                month,
                _bounds(segments),
                None if cutoff is None else ms(cutoff),
            )
            for tenant_id, per_segment_units in measured.items():
                use = result[tenant_id]
                result[tenant_id] = MonthUsage(use.segments, use.total, use.metered, per_segment_units)
        return result

    def segment_meters(
        self,
        segments: Mapping[str, Sequence[Segment]],
        month: RatedPeriod,
        cutoff: datetime | None,
        totals: Mapping[str, Usage],
    ) -> dict[str, tuple[Meters, ...]]:
        """Per segment, the counters of every (type, model) of each tenant's month, exactly once.

        One GROUP BY (tenant, segment, type, model) over the month's partition of ``usage_events
        FINAL`` (or a tenant calendar period's UTC range: measure_queries.span), limited to these
        tenants (tenants with no event of the period are not read); the rollups hold no event type,
        so they cannot answer it."""
        out: dict[str, tuple[Meters, ...]] = {}
        ids = sorted(t for t in segments if totals.get(t, Usage()).events)
        for tenant_id in segments:
            if tenant_id not in ids:
                out[tenant_id] = tuple(() for _ in segments[tenant_id])
        if not ids:
            return out
        rows_of, spanned = span(month, ms(month.start), ms(month.end))
        params: dict[str, Any] = {
            **spanned,
            "ids": ids,
            "bounds": [[ms(s.start) for s in segments[t]] + [ms(segments[t][-1].end)] for t in ids],
        }
        stored = ""
        if cutoff is not None:
            stored = f" AND stored_at <= {_ts('cutoff')}"
            params["cutoff"] = ms(cutoff)
        # each tenant's bounds by a hash join (indexing the parameter arrays row by row costs 10x the
        # CPU); one tenant's (a preview, the usage page) as constants, which spares the join's cost
        bounds, joined = (
            "b",
            """
            INNER JOIN (SELECT k.1 AS tenant_id, k.2 AS b FROM (
                SELECT arrayJoin(arrayZip({ids:Array(String)}, {bounds:Array(Array(Int64))})) AS k)) AS keys
              USING (tenant_id)""",
        )
        if len(ids) == 1:
            bounds, joined = "{bounds:Array(Array(Int64))}[1]", ""
        rows = self.store.query(
            f"""
            SELECT tenant_id, arrayCount(x -> x <= ts, {bounds}) AS segment, type, model,
                   sum(sign), sum(queries), sum(input_tokens), sum(output_tokens), sum(bytes)
            FROM (SELECT tenant_id, toUnixTimestamp64Milli(timestamp) AS ts, type, model, sign, queries, input_tokens,
                         output_tokens, bytes
                  FROM usage_events FINAL
                  WHERE {rows_of} AND tenant_id IN {{ids:Array(String)}}{stored}) AS events{joined}
            GROUP BY tenant_id, segment, type, model
            ORDER BY tenant_id, segment, type, model
            """,
            params,
        )
        collected: dict[str, list[list[Meter]]] = {t: [[] for _ in segments[t]] for t in ids}
        for r in rows:
            index = int(r[1])
            if 1 <= index <= len(segments[r[0]]):
                collected[r[0]][index - 1].append(
                    Meter(str(r[2]), str(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8]))
                )
        for tenant_id in ids:
            out[tenant_id] = tuple(tuple(m) for m in collected[tenant_id])
        return out

    def _split_usage(
        self,
        split: Mapping[str, Sequence[Segment]],
        params: dict[str, Any],
        stored: str,
        month: Month,
        cutoff: datetime | None,
        totals: Mapping[str, Usage],
        stored_later: set[str],
    ) -> dict[str, tuple[Usage, ...]]:
        """Per-segment usage of tenants with several segments, from the hourly rollup.

        Hours wholly inside one segment come from ``usage_hourly``; hours that hold a segment
        boundary are read exactly from ``usage_events FINAL``; rows stored after the cutoff are taken
        back out of the rollup. The rollup counts every stored row, FINAL every event once, so a
        tenant whose rollup month total differs from its FINAL total (a duplicate row slipped in)
        is recomputed exactly from ``usage_events FINAL`` instead."""
        ids = sorted(split)
        hour_ms = 3_600_000
        boundary_hours: dict[str, set[int]] = {}
        bounds = {t: [(ms(seg.start), ms(seg.end)) for seg in split[t]] for t in ids}
        for tenant_id in ids:
            edges = {ms(seg.start) for seg in split[tenant_id]} | {ms(split[tenant_id][-1].end)}
            boundary_hours[tenant_id] = {e // hour_ms * hour_ms for e in edges if e % hour_ms}
        pairs = [(t, h) for t in ids for h in sorted(boundary_hours[t])]
        # Segment of an hour: the number of segment starts (and the last end) at or before it, so
        # 1..n inside a segment, 0 before the first, n + 1 after the last; boundary hours get 0.
        seg_of_hour = (
            "if((tenant_id, hour_ms) IN {pairs:Array(Tuple(String, Int64))}, 0, arrayCount(b -> b <= hour_ms, "
            "{bounds:Array(Array(Int64))}[indexOf({ids:Array(String)}, toString(tenant_id))]))"
        )
        args = {
            **params,
            "ids": ids,
            "pairs": pairs,
            "bounds": [[b[0] for b in bounds[t]] + [bounds[t][-1][1]] for t in ids],
            "start": ms(month.start),
            "end": ms(month.end),
        }
        groups = self.store.query(
            f"""
            SELECT tenant_id, {seg_of_hour} AS segment, sum(events), sum(queries), sum(tokens), sum(cost)
            FROM (
                SELECT tenant_id, toInt64(toUnixTimestamp(hour)) * 1000 AS hour_ms, sum(events) AS events,
                       sum(queries) AS queries, sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost
                FROM usage_hourly
                WHERE tenant_id IN {{ids:Array(String)}} AND hour >= {_ts("start")} AND hour < {_ts("end")}
                GROUP BY tenant_id, hour_ms)
            GROUP BY tenant_id, segment
            """,
            args,
        )
        late: list[tuple[Any, ...]] = []
        if cutoff is not None and stored_later & set(ids):
            late = self.store.query(
                f"""
                SELECT tenant_id, {seg_of_hour} AS segment, sum(sign), sum(queries), sum(tokens), sum(cost)
                FROM (
                    SELECT tenant_id, intDiv(toUnixTimestamp64Milli(timestamp), {hour_ms}) * {hour_ms} AS hour_ms,
                           sign, queries, input_tokens + output_tokens AS tokens, cost_usd AS cost
                    FROM usage_events
                    WHERE _partition_id = {{partition:String}} AND tenant_id IN {{ids:Array(String)}}
                      AND stored_at > {_ts("cutoff")})
                GROUP BY tenant_id, segment
                """,
                args,
            )
        exact: list[tuple[Any, ...]] = []
        if pairs:
            exact = self.store.query(
                f"""
                SELECT tenant_id, toUnixTimestamp64Milli(timestamp), queries, input_tokens + output_tokens, cost_usd,
                       sign
                FROM usage_events FINAL
                WHERE _partition_id = {{partition:String}} AND tenant_id IN {{ids:Array(String)}}
                  AND (tenant_id, intDiv(toUnixTimestamp64Milli(timestamp), {hour_ms}) * {hour_ms})
                      IN {{pairs:Array(Tuple(String, Int64))}}{stored}
                """,
                {**params, "ids": sorted({t for t, _ in pairs}), "pairs": pairs},
            )

        result: dict[str, list[Usage]] = {t: [Usage() for _ in split[t]] for t in ids}
        rollup_total: dict[str, Usage] = defaultdict(Usage)
        for r, sign in [(r, 1) for r in groups] + [(r, -1) for r in late]:
            use = Usage(sign * int(r[2]), sign * int(r[3]), sign * int(r[4]), sign * Decimal(r[5]))
            rollup_total[r[0]] += use
            if 1 <= int(r[1]) <= len(split[r[0]]):
                result[r[0]][int(r[1]) - 1] += use
        for r in exact:
            index = _segment_index(bounds[r[0]], int(r[1]))
            if index is not None:
                result[r[0]][index] += Usage(int(r[5]), int(r[2]), int(r[3]), Decimal(r[4]))
        out: dict[str, tuple[Usage, ...]] = {}
        for tenant_id in ids:
            if rollup_total.get(tenant_id, Usage()) == totals[tenant_id]:
                out[tenant_id] = tuple(result[tenant_id])
            else:
                out[tenant_id] = self.segment_usage(tenant_id, split[tenant_id], params, stored)
        return out

    def segment_usage(
        self, tenant_id: str, segments: Sequence[Segment], params: dict[str, Any], stored: str
    ) -> tuple[Usage, ...]:
        """One tenant's usage per segment, exactly, from ``usage_events FINAL`` (countIf/sumIf)."""
        params = {**params, "t": tenant_id}
        columns = []
        for i, seg in enumerate(segments):
            params[f"s{i}"], params[f"e{i}"] = ms(seg.start), ms(seg.end)
            cond = f"timestamp >= {_ts(f's{i}')} AND timestamp < {_ts(f'e{i}')}"
            columns += [
                f"sumIf(sign, {cond})",
                f"sumIf(queries, {cond})",
                f"sumIf(input_tokens + output_tokens, {cond})",
                f"sumIf(cost_usd, {cond})",
            ]
        row = self.store.query(
            f"""SELECT {", ".join(columns)} FROM usage_events FINAL
                WHERE _partition_id = {{partition:String}} AND tenant_id = {{t:String}}{stored}""",
            params,
        )[0]
        return tuple(
            Usage(int(row[4 * i]), int(row[4 * i + 1]), int(row[4 * i + 2]), Decimal(row[4 * i + 3]))
            for i in range(len(segments))
        )

    # ------------------------------------------------------------------------------------------
    def late_usage(
        self,
        month: Month,
        *,
        lower: datetime,
        upper: datetime | None,
        closed: Mapping[Month, datetime],
        segments_of: Callable[[str, Month], Sequence[Segment]],
        billed_until: Mapping[tuple[str, Month], datetime] | None = None,
        tenant_ids: Sequence[str] | None = None,
        needs_meters: Callable[[Sequence[Segment]], bool] | None = None,
        measures: Callable[[Sequence[Segment]], Sequence[Measure]] | None = None,
    ) -> dict[str, list[LateUsage]]:
        """Events of closed months before ``month`` whose first copy was stored in (lower, upper]
        (of ``tenant_ids`` only, when given and few; of every tenant otherwise).

        When ``needs_meters(segments)`` (a plan of that month has charges), each LateUsage also
        carries the late events' meters and those of the events already billed, per segment; when
        ``measures(segments)`` names catalog-metric charges, their units per segment over the events
        already billed and over those plus the late ones (first copies stored by ``upper``).

        ``lower`` is the latest close before ``month`` (everything stored up to it was billed by an
        earlier statement); ``closed`` maps closed months to their close instants; ``billed_until``
        lowers that bound for a (tenant, month) whose statement used an earlier cutoff (a final
        statement issued at the cancellation). Late events are rare, so they are read row by row;
        each one is checked against every stored copy of its id, so an event never becomes "late"
        because a duplicate copy was written after the close."""
        billed_until = billed_until or {}
        latest, lower = lower, min([lower, *billed_until.values()])
        first = month
        for _ in range(LATE_LOOKBACK_MONTHS):
            first = first.previous()
        params: dict[str, Any] = {"first": ms(first.start), "start": ms(month.start), "lower": ms(lower)}
        upper_sql = ""
        if tenant_ids is not None and len(tenant_ids) <= FEW_TENANTS:
            upper_sql = " AND tenant_id IN {only:Array(String)}"
            params["only"] = sorted(tenant_ids)
        if upper is not None:
            upper_sql += f" AND stored_at <= {_ts('upper')}"
            params["upper"] = ms(upper)
        late_rows = self.store.query(
            f"""
            SELECT DISTINCT tenant_id, event_id FROM usage_events
            WHERE timestamp >= {_ts("first")} AND timestamp < {_ts("start")} AND stored_at > {_ts("lower")}{upper_sql}
            """,
            params,
        )
        if not late_rows:
            return {}
        candidates = self.store.query(
            f"""
            SELECT tenant_id, event_id, any(timestamp), min(stored_at), any(queries),
                   any(input_tokens + output_tokens), any(cost_usd), any(type), any(model), any(input_tokens),
                   any(output_tokens), any(bytes), any(sign)
            FROM usage_events
            WHERE timestamp >= {_ts("first")} AND timestamp < {_ts("start")}
              AND tenant_id IN {{tenants:Array(String)}} AND (tenant_id, event_id) IN {{pairs:Array(Tuple(String, String))}}
            GROUP BY tenant_id, event_id
            HAVING min(stored_at) > {_ts("lower")}
            ORDER BY tenant_id, event_id
            """,
            {**params, "tenants": sorted({r[0] for r in late_rows}), "pairs": [tuple(r) for r in late_rows]},
        )
        grouped: dict[tuple[str, Month], list[tuple[Any, ...]]] = defaultdict(list)
        for row in candidates:
            m = Month.of(utc(row[2]))
            if m in closed and utc(row[3]) > billed_until.get((row[0], m), latest):
                grouped[(row[0], m)].append(row)
        result: dict[str, list[LateUsage]] = defaultdict(list)
        for (tenant_id, m), rows in sorted(grouped.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            segs = list(segments_of(tenant_id, m))
            if not segs:
                continue
            per_segment = [Usage() for _ in segs]
            late_meters: list[list[Meter]] = [[] for _ in segs]
            for row in rows:
                at = utc(row[2])
                for i, seg in enumerate(segs):
                    if seg.start <= at < seg.end:
                        per_segment[i] = per_segment[i] + Usage(
                            int(row[12]), int(row[4]), int(row[5]), Decimal(row[6])
                        )
                        late_meters[i].append(
                            Meter(
                                str(row[7]),
                                str(row[8]),
                                int(row[12]),
                                int(row[4]),
                                int(row[9]),
                                int(row[10]),
                                int(row[11]),
                            )
                        )
                        break
            bound = billed_until.get((tenant_id, m), latest)
            billed_queries = self.billed_queries(tenant_id, segs, m, bound)
            if needs_meters is not None and needs_meters(segs):
                wanted = list(measures(segs)) if measures is not None else []
                billed_measured: tuple[Any, ...] = ()
                with_late: tuple[Any, ...] = ()
                if wanted:
                    one, asked = {tenant_id: segs}, {tenant_id: wanted}
                    edges, upper_ms = _bounds(one), None if upper is None else ms(upper)
                    billed_measured = segment_measures(
                        self.store, one, asked, m, edges, ms(bound), first_copies=True
                    )[tenant_id]
                    with_late = segment_measures(
                        self.store, one, asked, m, edges, upper_ms, first_copies=True
                    )[tenant_id]
                result[tenant_id].append(
                    LateUsage(
                        m,
                        billed_queries,
                        tuple(per_segment),
                        tuple(tuple(x) for x in late_meters),
                        self.billed_meters(tenant_id, segs, m, bound),
                        billed_measured,
                        with_late,
                    )
                )
            else:
                result[tenant_id].append(LateUsage(m, billed_queries, tuple(per_segment)))
        return dict(result)

    def billed_queries(
        self, tenant_id: str, segments: Sequence[Segment], month: RatedPeriod, lower: datetime
    ) -> int:
        """Non-trial queries of ``month`` whose first copy was stored by ``lower`` (already billed)."""
        params: dict[str, Any] = {
            "t": tenant_id,
            "start": ms(month.start),
            "end": ms(month.end),
            "lower": ms(lower),
        }
        conds = []
        for i, seg in enumerate(s for s in segments if not s.trial):
            params[f"s{i}"], params[f"e{i}"] = ms(seg.start), ms(seg.end)
            conds.append(f"(ts >= {_ts(f's{i}')} AND ts < {_ts(f'e{i}')})")
        if not conds:
            return 0
        row = self.store.query(
            f"""
            SELECT sumIf(q, {" OR ".join(conds)}) FROM (
                SELECT event_id, any(timestamp) AS ts, any(queries) AS q, min(stored_at) AS first_stored
                FROM usage_events
                WHERE tenant_id = {{t:String}} AND timestamp >= {_ts("start")} AND timestamp < {_ts("end")}
                GROUP BY event_id)
            WHERE first_stored <= {_ts("lower")}
            """,
            params,
        )
        return int(row[0][0])

    def billed_meters(
        self, tenant_id: str, segments: Sequence[Segment], month: RatedPeriod, lower: datetime
    ) -> tuple[Meters, ...]:
        """Per segment, the meters of the events of ``month`` whose first copy was stored by ``lower``."""
        params: dict[str, Any] = {
            "t": tenant_id,
            "start": ms(month.start),
            "end": ms(month.end),
            "lower": ms(lower),
            "bounds": [ms(s.start) for s in segments] + [ms(segments[-1].end)],
        }
        rows = self.store.query(
            f"""
            SELECT arrayCount(b -> b <= toUnixTimestamp64Milli(ts), {{bounds:Array(Int64)}}) AS segment, type, model,
                   sum(sign), sum(q), sum(i), sum(o), sum(by) FROM (
                SELECT event_id, any(timestamp) AS ts, any(type) AS type, any(model) AS model, any(queries) AS q,
                       any(sign) AS sign,
                       any(input_tokens) AS i, any(output_tokens) AS o, any(bytes) AS by,
                       min(stored_at) AS first_stored
                FROM usage_events
                WHERE tenant_id = {{t:String}} AND timestamp >= {_ts("start")} AND timestamp < {_ts("end")}
                GROUP BY event_id)
            WHERE first_stored <= {_ts("lower")}
            GROUP BY segment, type, model
            ORDER BY segment, type, model
            """,
            params,
        )
        collected: list[list[Meter]] = [[] for _ in segments]
        for r in rows:
            if 1 <= int(r[0]) <= len(segments):
                collected[int(r[0]) - 1].append(
                    Meter(str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]))
                )
        return tuple(tuple(m) for m in collected)

    def month_totals_scan(self, month: Month) -> list[tuple[Any, ...]]:
        """A plain GROUP BY scan of the month (the bench's reference point)."""
        return self.store.query(
            """SELECT tenant_id, sum(sign), sum(queries), sum(input_tokens + output_tokens), sum(cost_usd)
                FROM usage_events WHERE _partition_id = {partition:String}
                GROUP BY tenant_id""",
            {"partition": f"{month.year:04d}{month.month:02d}"},
        )
