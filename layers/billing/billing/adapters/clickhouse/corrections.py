"""ClickHouse side of corrections (billing.metering.corrections): read an event as stored, and insert
correction rows (migration 0007: ``sign``, ``corrects``) in one block with a dedup token of their own."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from billing.adapters.clickhouse.usage_store import (
    _PERMANENT,
    EVENT_COLUMNS,
    PROPERTY_COLUMNS,
    ClickHouseUsageStore,
)
from billing.kernel.errors import StoreRejected, StoreUnavailable
from billing.kernel.periods import utc
from billing.metering.events import StoredEvent

CORRECTION_COLUMNS = [*EVENT_COLUMNS, *PROPERTY_COLUMNS, "sign", "corrects"]


class ClickHouseCorrectionRows:
    def __init__(self, store: ClickHouseUsageStore):
        self.store = store

    def stored_event(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        """The event as ingest stored it (its first copy: FINAL), or None if it was never stored."""
        rows = self.store.query(
            f"""SELECT {", ".join(EVENT_COLUMNS)}, string_properties,
                       number_properties
                FROM usage_events FINAL
                WHERE tenant_id = {{t:String}} AND event_id = {{e:String}} AND sign = 1 AND corrects = ''
                LIMIT 1""",
            {"t": tenant_id, "e": event_id},
        )
        if not rows:
            return None
        row = rows[0]
        base = dict(zip(EVENT_COLUMNS, row[: len(EVENT_COLUMNS)], strict=True))
        properties: dict[str, str | Decimal] = {**row[-2], **{k: Decimal(v) for k, v in row[-1].items()}}
        return StoredEvent(
            tenant_id=str(base["tenant_id"]),
            event_id=str(base["event_id"]),
            timestamp=utc(base["timestamp"]),
            type=str(base["type"]),
            model=str(base["model"]),
            queries=int(base["queries"]),
            input_tokens=int(base["input_tokens"]),
            output_tokens=int(base["output_tokens"]),
            bytes=int(base["bytes"]),
            cost_usd=Decimal(base["cost_usd"]),
            price_version=str(base["price_version"]),
            accepted_at=utc(base["accepted_at"]),
            properties=properties,
        )

    def insert(self, rows: Sequence[tuple[StoredEvent, int, str]], token: str) -> None:
        """One block; the same ``token`` again is dropped by ClickHouse (and by the rollups)."""
        data = [
            [*(getattr(row, c) for c in EVENT_COLUMNS), *row.split_properties(), sign, corrects]
            for row, sign, corrects in rows
        ]
        try:
            self.store.client.insert(
                "usage_events",
                data,
                column_names=CORRECTION_COLUMNS,
                settings={
                    "insert_deduplication_token": token,
                    "deduplicate_blocks_in_dependent_materialized_views": 1,
                },
            )
        except _PERMANENT as exc:
            raise StoreRejected(f"ClickHouse refused the correction rows: {exc}") from exc
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse insert failed: {exc}") from exc
