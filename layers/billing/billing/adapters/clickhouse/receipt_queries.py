"""ClickHouse reads of receipts and the reconcile (billing.metering.receipts.StoredEvents).

Each event id's first stored copy: ``min(stored_at)`` is the copy FINAL keeps (``keep_first``), the
one whose ``stored_at`` decided the statement that bills it. ``ORDER BY (tenant_id, timestamp,
event_id)`` keeps both reads inside one tenant; the month read also inside one partition.

Events are the rows ingest wrote (``corrects = ''``); a correction's rows (migration 0007:
``<correction_id>#void``, ``<correction_id>#amend``) are read apart, by correction id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from billing.adapters.clickhouse.usage_store import ClickHouseUsageStore
from billing.kernel.periods import Month, utc
from billing.metering.receipt_views import CorrectionRow, StoredRow


class ClickHouseStoredEvents:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def rows(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, StoredRow]:
        if not event_ids:
            return {}
        found = self.store.query(
            "SELECT event_id, argMin(timestamp, stored_at), min(stored_at) FROM usage_events "
            "WHERE tenant_id = {t:String} AND event_id IN {ids:Array(String)} AND corrects = '' GROUP BY event_id",
            {"t": tenant_id, "ids": list(event_ids)},
        )
        return {str(r[0]): StoredRow(utc(r[1]), utc(r[2])) for r in found}

    def month_rows(self, tenant_id: str, month: Month) -> dict[str, StoredRow]:
        found = self.store.query(
            "SELECT event_id, argMin(timestamp, stored_at), min(stored_at) FROM usage_events "
            "WHERE tenant_id = {t:String} AND _partition_id = {partition:String} AND corrects = '' "
            "GROUP BY event_id",
            {"t": tenant_id, "partition": f"{month.year:04d}{month.month:02d}"},
        )
        return {str(r[0]): StoredRow(utc(r[1]), utc(r[2])) for r in found}

    def correction_rows(self, tenant_id: str, correction_ids: Sequence[str]) -> list[CorrectionRow]:
        """The rows of those corrections (each stored once: its own dedup token)."""
        if not correction_ids:
            return []
        ids = [f"{c}#{kind}" for c in correction_ids for kind in ("void", "amend")]
        return self._corrections(
            "tenant_id = {t:String} AND event_id IN {ids:Array(String)}", {"t": tenant_id, "ids": ids}
        )

    def month_corrections(self, tenant_id: str, month: Month) -> list[CorrectionRow]:
        """Every correction row of the tenant's month (corrections are rare next to events)."""
        return self._corrections(
            "tenant_id = {t:String} AND _partition_id = {partition:String}",
            {"t": tenant_id, "partition": f"{month.year:04d}{month.month:02d}"},
        )

    def period_corrections(self, tenant_id: str, start: datetime, end: datetime) -> list[CorrectionRow]:
        """Every correction row of the tenant dated in ``[start, end)`` (a tenant calendar's period)."""
        return self._corrections(
            "tenant_id = {t:String} AND timestamp >= {start:DateTime64(3, 'UTC')} "
            "AND timestamp < {end:DateTime64(3, 'UTC')}",
            {"t": tenant_id, "start": start, "end": end},
        )

    def _corrections(self, where: str, params: dict[str, object]) -> list[CorrectionRow]:
        found = self.store.query(
            f"SELECT event_id, any(sign), min(stored_at) FROM usage_events "
            f"WHERE {where} AND corrects != '' GROUP BY event_id",
            params,
        )
        out = []
        for event_id, sign, stored_at in found:
            correction_id, _, kind = str(event_id).rpartition("#")
            out.append(CorrectionRow(correction_id, kind, int(sign), utc(stored_at)))
        return out
