"""LedgerTable reads of receipts and the reconcile (billing.metering.receipts.ReceiptLedger).

The ledger's claims are keyed by event id alone (``EVT#{tenant}#{event_id}``), so no query can list a
tenant's month from them, and a GSI on the claims would add a write to every claim (doubling
ingest's claim cost). Instead each batch writes, just before its commit record, one item per
(tenant, month) it committed, ``RCPT#{tenant}#{YYYY-MM}#{batch_id}`` naming those event ids, and
the sparse index ``receipts`` (partition ``period`` = ``RCPT#{tenant}#{YYYY-MM}``) lists a tenant's
month in one query. An item whose batch has no commit record (it died in between) is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, items
from billing.adapters.dynamodb.usage_ledger import DynamoUsageLedger, receipt_period
from billing.metering.exactly_once import Claim, ClaimState
from billing.metering.receipts import BatchCommit

RECEIPT_INDEX = "receipts"


class DynamoReceiptIndex:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()
        self._ledger = DynamoUsageLedger(table, self.client)

    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]:
        """Each claim and whether its batch committed (strongly consistent BatchGetItems)."""
        return self._ledger.lookup(claims)

    def batch_commits(self, batch_ids: Iterable[str]) -> dict[str, BatchCommit]:
        found = self._ledger._get_items([f"BATCH#{b}" for b in batch_ids])
        return {
            pk.removeprefix("BATCH#"): BatchCommit(
                pk.removeprefix("BATCH#"), bool(item.get("queued", {}).get("BOOL", False))
            )
            for pk, item in found.items()
        }

    def committed_ids(self, tenant_id: str, month: str) -> dict[str, str]:
        """event id -> batch id: one (paged) query of the index, then the commit records it names."""
        by_batch: dict[str, list[str]] = {}
        for item in items(
            self.client.query,
            TableName=self.table,
            IndexName=RECEIPT_INDEX,
            KeyConditionExpression="period = :p",
            ExpressionAttributeValues={":p": {"S": receipt_period(tenant_id, month)}},
        ):
            by_batch.setdefault(item["batch_id"]["S"], []).extend(item["event_ids"]["SS"])
        committed = self.batch_commits(by_batch)
        return {e: batch for batch, ids in by_batch.items() if batch in committed for e in ids}
