"""The usage page's keyed reads in one BatchGetItem (``billing.portal.page_reads.PageReads``): the
tenant record (TenantsTable), the quota counter (LedgerTable ``QUOTA#{tenant}#{window}``), and from
BillingTable the period's stored statement (``MONTH#{period}`` / ``STMT#{tenant}``), the offered
periods' invoice records (``MONTH#{period}`` / ``INVOICE#{tenant}``) and the cached preview, metric
and usage figures (``PREVIEW#{tenant}`` / ``MONTH#``, ``METRICS#``, ``USAGE#{period}``).

Every table is read with ConsistentRead, as the single GetItems were; unprocessed keys (throttling)
are asked again until none is left (a bounded number of times, then an error: a page never shows a
partial read as "absent")."""

from __future__ import annotations

import json
from typing import Any

from billing.adapters.dynamodb.invoice_records import record_of
from billing.adapters.dynamodb.items import dynamodb_client
from billing.adapters.dynamodb.preview_cache import (
    DynamoMetricFiguresStore,
    DynamoPreviewStore,
    DynamoUsageFiguresStore,
)
from billing.adapters.dynamodb.tenants import tenant_of
from billing.portal.page_reads import PageItems, PageKeys
from billing.statements.statement import Statement

_ATTEMPTS = 10


class DynamoPageReads:
    def __init__(self, *, tenants_table: str, ledger_table: str, billing_table: str, client: Any = None):
        self.tenants_table, self.ledger_table, self.billing_table = tenants_table, ledger_table, billing_table
        self.client = client or dynamodb_client()

    def read(self, tenant_id: str, keys: PageKeys, *, tenant: bool = True) -> PageItems:
        billing: list[dict[str, Any]] = []
        if keys.period:
            billing += [
                {"pk": {"S": f"MONTH#{keys.period}"}, "sk": {"S": f"STMT#{tenant_id}"}},
                DynamoPreviewStore.key(tenant_id, keys.period),
                DynamoMetricFiguresStore.key(tenant_id, keys.period),
                DynamoUsageFiguresStore.key(tenant_id, keys.period),
            ]
        billing += [
            {"pk": {"S": f"MONTH#{m}"}, "sk": {"S": f"INVOICE#{tenant_id}"}}
            for m in dict.fromkeys(keys.invoice_months)
        ]
        request: dict[str, Any] = {}
        if tenant:
            request[self.tenants_table] = {"Keys": [{"tenant_id": {"S": tenant_id}}], "ConsistentRead": True}
        if keys.quota:
            request[self.ledger_table] = {
                "Keys": [{"pk": {"S": f"QUOTA#{tenant_id}#{keys.quota}"}}],
                "ConsistentRead": True,
            }
        if billing:
            request[self.billing_table] = {"Keys": billing, "ConsistentRead": True}
        found = self._get(request)
        items = PageItems()
        for item in found.get(self.tenants_table, []):
            items.tenant = tenant_of(item)
        for item in found.get(self.ledger_table, []):
            items.quota_used[keys.quota] = int(item["used"]["N"])
        for item in found.get(self.billing_table, []):
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if sk == f"STMT#{tenant_id}":
                items.stored[pk.removeprefix("MONTH#")] = Statement.model_validate(
                    json.loads(item["body"]["S"])
                )
            elif sk == f"INVOICE#{tenant_id}":
                items.invoices[pk.removeprefix("MONTH#")] = record_of(item)
            elif sk.startswith("MONTH#"):
                items.previews[sk.removeprefix("MONTH#")] = DynamoPreviewStore.parse(item)
            elif sk.startswith("METRICS#"):
                items.metrics[sk.removeprefix("METRICS#")] = DynamoMetricFiguresStore.parse(item)
            elif sk.startswith("USAGE#"):
                items.usage[sk.removeprefix("USAGE#")] = DynamoUsageFiguresStore.parse(item)
        return items

    def _get(self, request: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Every item of ``request`` (at most 100 keys: a page asks for about 20)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for _ in range(_ATTEMPTS):
            if not request:
                return found
            answer = self.client.batch_get_item(RequestItems=request)
            for table, table_items in answer.get("Responses", {}).items():
                found.setdefault(table, []).extend(table_items)
            request = answer.get("UnprocessedKeys") or {}
        if request:
            raise RuntimeError(f"BatchGetItem left keys unprocessed after {_ATTEMPTS} attempts")
        return found
