"""ClickHouse reads for the tenant's usage page: one query over the ``usage_daily`` rollup.

The rollup is a SummingMergeTree whose parts may not be merged yet, so every figure is a ``sum()``
(never a bare row). ``ORDER BY (tenant_id, day, model)`` makes the read touch one tenant's month only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import Month
from billing.portal.view import DayUsage, ModelUsage, MonthRollup


class ClickHouseUsageRollups:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def month(self, tenant_id: str, month: Month, until: date) -> MonthRollup:
        """Per day from the month's first day to ``until`` (days without usage as zeros), and per model."""
        rows = self.store.query(
            """
            SELECT day, model, sum(events), sum(queries), sum(input_tokens), sum(output_tokens), sum(cost_usd)
            FROM usage_daily
            WHERE tenant_id = {t:String} AND day >= {start:Date} AND day <= {until:Date}
            GROUP BY day, model
            """,
            {"t": tenant_id, "start": month.start.date(), "until": until},
        )
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
        days = []
        day = month.start.date()
        while day <= until:
            days.append(DayUsage(day, day_queries.get(day, 0), day_cost.get(day, Decimal(0))))
            day += timedelta(days=1)
        models = [
            ModelUsage(
                name, counts[name][0], counts[name][1], counts[name][2], counts[name][3], model_cost[name]
            )
            for name in sorted(counts, key=lambda n: (-model_cost[n], n))
        ]
        return MonthRollup(days, models)
