"""ClickHouse reads of receipts and the reconcile (billing.metering.receipts.StoredEvents).

Each event id's first stored copy: ``min(stored_at)`` is the copy FINAL keeps (``keep_first``), the
one whose ``stored_at`` decided the statement that bills it. ``ORDER BY (tenant_id, timestamp,
event_id)`` keeps both reads inside one tenant; the month read also inside one partition.
"""

from __future__ import annotations

from collections.abc import Sequence

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import Month, utc
from billing.metering.receipt_views import StoredRow


class ClickHouseStoredEvents:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def rows(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, StoredRow]:
        if not event_ids:
            return {}
        found = self.store.query(
            "SELECT event_id, argMin(timestamp, stored_at), min(stored_at) FROM usage_events "
            "WHERE tenant_id = {t:String} AND event_id IN {ids:Array(String)} GROUP BY event_id",
            {"t": tenant_id, "ids": list(event_ids)},
        )
        return {str(r[0]): StoredRow(utc(r[1]), utc(r[2])) for r in found}

    def month_rows(self, tenant_id: str, month: Month) -> dict[str, StoredRow]:
        found = self.store.query(
            "SELECT event_id, argMin(timestamp, stored_at), min(stored_at) FROM usage_events "
            "WHERE tenant_id = {t:String} AND _partition_id = {partition:String} GROUP BY event_id",
            {"t": tenant_id, "partition": f"{month.year:04d}{month.month:02d}"},
        )
        return {str(r[0]): StoredRow(utc(r[1]), utc(r[2])) for r in found}
