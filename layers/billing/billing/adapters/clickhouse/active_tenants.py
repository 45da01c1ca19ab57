"""Which tenants have used the service lately: one query over the ``usage_hourly`` rollup (its
``ORDER BY (tenant_id, hour, model)`` and monthly partitions keep it to the month's recent parts).

Hour buckets are by event time: an event stored now with a timestamp hours back does not make its
tenant "recent" (the warmer then leaves that tenant to a page request).
"""

from __future__ import annotations

from datetime import datetime

from billing.adapters.clickhouse.rating_queries import ms
from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import Month


class ClickHouseActiveTenants:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def since(self, start: datetime, month: Month) -> list[str]:
        """Tenants with usage in ``month`` in the hour buckets from ``start``'s hour on, the most
        events first (then by id)."""
        rows = self.store.query(
            """
            SELECT tenant_id, sum(events) AS n
            FROM usage_hourly
            WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli({since:Int64}, 'UTC'))
              AND hour >= fromUnixTimestamp64Milli({start:Int64}, 'UTC')
              AND hour < fromUnixTimestamp64Milli({end:Int64}, 'UTC')
            GROUP BY tenant_id
            HAVING n > 0
            ORDER BY n DESC, tenant_id
            """,
            {"since": ms(start), "start": ms(month.start), "end": ms(month.end)},
        )
        return [str(tenant_id) for tenant_id, _ in rows]
