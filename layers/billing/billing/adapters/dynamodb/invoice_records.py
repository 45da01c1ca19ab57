"""BillingTable access for the per-statement Stripe invoicing state machine.

pk "MONTH#{YYYY-MM}"  sk "INVOICE#{tenant_id}"   one record per statement (billing.invoicing.InvoiceRecord),
                                                  versioned: every write is conditional on the version read.
gsi1pk "STRIPEINV#{invoice_id}"  gsi1sk "INVOICE" set once the Stripe invoice id is known, so webhook
                                                  handlers find (tenant_id, month) from a Stripe invoice id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from billing.adapters.dynamodb.items import (
    dynamodb_client,
    from_item,
    items,
    put_versioned,
    to_item,
)
from billing.adapters.dynamodb.statements import invoice_statement
from billing.invoicing import InvoiceRecord


class DynamoInvoiceRecords:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    @staticmethod
    def _key(month: str, tenant_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"MONTH#{month}"}, "sk": {"S": f"INVOICE#{tenant_id}"}}

    def get(self, tenant_id: str, month: str) -> InvoiceRecord | None:
        item = self.client.get_item(
            TableName=self.table, Key=self._key(month, tenant_id), ConsistentRead=True
        ).get("Item")
        return record_of(item) if item else None

    def find_by_invoice_id(self, invoice_id: str) -> InvoiceRecord | None:
        found = invoice_statement(self.client, self.table, invoice_id)
        return self.get(*found) if found else None

    def list_month(self, month: str) -> list[InvoiceRecord]:
        records = [
            record_of(i)
            for i in items(
                self.client.query,
                TableName=self.table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                ExpressionAttributeValues={":pk": {"S": f"MONTH#{month}"}, ":p": {"S": "INVOICE#"}},
            )
        ]
        return sorted(records, key=lambda r: r.tenant_id)

    def for_tenant(self, tenant_id: str, months: Sequence[str]) -> list[InvoiceRecord]:
        """One tenant's records of these months (those that exist), in one consistent BatchGetItem."""
        keys = [self._key(m, tenant_id) for m in dict.fromkeys(months)]
        found: list[InvoiceRecord] = []
        for start in range(0, len(keys), 100):
            request = {self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            for _ in range(10):  # unprocessed keys are retried (throttling); a handful of keys at most
                answer = self.client.batch_get_item(RequestItems=request)
                found.extend(record_of(i) for i in answer.get("Responses", {}).get(self.table, []))
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def save(self, record: InvoiceRecord) -> InvoiceRecord | None:
        """Write ``record`` if nobody wrote since it was read (version 0 = must not exist yet).
        Returns the stored record (version + 1), or None when another writer got there first."""
        stored = record.model_copy(update={"version": record.version + 1})
        data = stored.model_dump(mode="json")
        item = to_item(data)
        item.update(self._key(record.month, record.tenant_id))
        if record.invoice_id:
            item["gsi1pk"] = {"S": f"STRIPEINV#{record.invoice_id}"}
            item["gsi1sk"] = {"S": "INVOICE"}
        if not put_versioned(self.client, self.table, item, None if record.version == 0 else record.version):
            return None
        return stored

    def delete(self, tenant_id: str, month: str) -> None:
        """Operators only (and the tests that simulate a lost record)."""
        self.client.delete_item(TableName=self.table, Key=self._key(month, tenant_id))


def record_of(item: dict[str, Any]) -> InvoiceRecord:
    data = {k: v for k, v in from_item(item).items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}
    return InvoiceRecord.model_validate(data)
