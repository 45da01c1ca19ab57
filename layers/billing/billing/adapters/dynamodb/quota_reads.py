"""The quota gate's read: a tenant record and its month's counter in one consistent BatchGetItem
(TenantsTable + LedgerTable ``QUOTA#{tenant}#{YYYY-MM}``, the counter ingest moves per claim)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client
from billing.adapters.dynamodb.tenants import tenant_of
from billing.adapters.dynamodb.usage_ledger import metric_counters
from billing.tenants.tenant import Tenant


class DynamoQuotaReads:
    def __init__(self, tenants_table: str, ledger_table: str, client: Any = None):
        self.tenants_table = tenants_table
        self.ledger_table = ledger_table
        self.client = client or dynamodb_client()

    def read(self, tenant_id: str, month: str) -> tuple[Tenant | None, int]:
        """(tenant or None, queries counted in ``month``): one round trip, both strongly consistent."""
        tenant, used, _ = self.read_counters(tenant_id, month)
        return tenant, used

    def read_counters(self, tenant_id: str, month: str) -> tuple[Tenant | None, int, dict[str, Decimal]]:
        """``read``, with the month's hard-limited metric counters (the same item)."""
        request: dict[str, Any] = {
            self.tenants_table: {"Keys": [{"tenant_id": {"S": tenant_id}}], "ConsistentRead": True},
            self.ledger_table: {
                "Keys": [{"pk": {"S": f"QUOTA#{tenant_id}#{month}"}}],
                "ConsistentRead": True,
            },
        }
        found: dict[str, list[dict[str, Any]]] = {}
        while request:
            response = self.client.batch_get_item(RequestItems=request)
            for table, rows in response["Responses"].items():
                found.setdefault(table, []).extend(rows)
            request = response.get("UnprocessedKeys") or {}
        tenant_rows = found.get(self.tenants_table, [])
        counter_rows = found.get(self.ledger_table, [])
        used = int(Decimal(counter_rows[0].get("used", {}).get("N", "0"))) if counter_rows else 0
        counters = metric_counters(counter_rows[0]) if counter_rows else {}
        return (tenant_of(tenant_rows[0]) if tenant_rows else None), used, counters
