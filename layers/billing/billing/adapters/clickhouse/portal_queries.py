"""ClickHouse reads for the tenant's usage page: its per-day and per-model figures, per local day of
the tenant's time zone, from the ``usage_quarter_hourly`` rollup (migration 0009).

Every UTC offset in use is a whole number of quarter hours, so a local day is a whole number of the
rollup's quarters, and its figures are the sums of those rows grouped by ``toDate(quarter, zone)``
(``tests/portal/test_quarter_hour_rollups.py`` proves they equal usage_events FINAL per local day).
The rollup is a SummingMergeTree whose parts may not be merged yet, so every figure is a ``sum()``
(never a bare row); ``ORDER BY (tenant_id, quarter, model)`` makes the read touch one tenant's
period only. A span that does not start or end at a quarter hour (an anniversary period's start
at its signup's second) reads its partial first and last quarters from usage_events FINAL's rows
(``sum(sign)`` counts an event, a void's row takes it back off), the whole quarters between from
the rollup.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.portal.metrics import epoch_ms, local_days
from billing.portal.view import DayUsage, ModelUsage, MonthRollup

_QUARTER_MS = 15 * 60 * 1000

_SQL = """
SELECT day, model, sum(e), sum(q), sum(i), sum(o), sum(c) FROM (
    SELECT toDate(quarter, {z:String}) AS day, model, events AS e, queries AS q, input_tokens AS i,
           output_tokens AS o, cost_usd AS c
    FROM usage_quarter_hourly
    WHERE tenant_id = {t:String} AND quarter >= {a:DateTime64(3, 'UTC')} AND quarter < {b:DateTime64(3, 'UTC')}
    UNION ALL
    SELECT toDate(timestamp, {z:String}) AS day, model, toInt128(sign), toInt128(queries), toInt128(input_tokens),
           toInt128(output_tokens), toDecimal128(cost_usd, 9)
    FROM usage_events FINAL
    WHERE tenant_id = {t:String}
      AND ((timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {a:DateTime64(3, 'UTC')})
           OR (timestamp >= {b:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}))
)
GROUP BY day, model
"""


def quarters_within(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[a, b)``: the whole quarter hours within ``[start, end)`` (``a == b == end`` when none)."""
    a = start + timedelta(milliseconds=-epoch_ms(start) % _QUARTER_MS)
    b = end - timedelta(milliseconds=epoch_ms(end) % _QUARTER_MS)
    return (a, b) if a < b else (end, end)


class ClickHouseUsageRollups:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def period(self, tenant_id: str, start: datetime, end: datetime, zone: str) -> MonthRollup:
        """Per local day of ``zone`` overlapping ``[start, end)`` (days without usage as zeros), and
        per model."""
        a, b = quarters_within(start, end)
        rows = self.store.query(_SQL, {"t": tenant_id, "z": zone, "start": start, "end": end, "a": a, "b": b})
        day_queries: dict[date, int] = defaultdict(int)
        day_cost: dict[date, Decimal] = defaultdict(Decimal)
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        model_cost: dict[str, Decimal] = defaultdict(Decimal)
        for day, model, events, queries, input_tokens, output_tokens, cost in rows:
            day_queries[day] += int(queries)
            day_cost[day] += Decimal(cost)
            c = counts[model]
            for i, value in enumerate((events, queries, input_tokens, output_tokens)):
                c[i] += int(value)
            model_cost[model] += Decimal(cost)
        days = [
            DayUsage(d.day, day_queries.get(d.day, 0), day_cost.get(d.day, Decimal(0)))
            for d in local_days(start, end, zone)
        ]
        models = [
            ModelUsage(
                name, counts[name][0], counts[name][1], counts[name][2], counts[name][3], model_cost[name]
            )
            for name in sorted(counts, key=lambda n: (-model_cost[n], n))
        ]
        return MonthRollup(days, models)
