"""DynamoDB storage for webhooks and dunning.

BillingTable (pk/sk):
  pk "TENANT#{tenant_id}"  sk "DUNNING#{invoice_id}"   the invoice's dunning record (versioned)
                           gsi1pk "RETRY_DUE", gsi1sk "{next_retry_at}#{invoice_id}" only while a
                           retry is due (removed otherwise, so the index holds due work only)
  pk "TENANT#{tenant_id}"  sk "STANDING"               the tenant's standing + version (the
                                                       serialisation point of all dunning writes)
  pk "TENANT#{tenant_id}"  sk "AUDIT#{when}#{seq}"     audit trail: from, to, when, why, event id
  gsi1pk "STRIPEINV#{invoice_id}" gsi1sk "INVOICE"     the stripe engineer's invoice record (read only)
LedgerTable:
  pk "WEBHOOK#{stripe_event_id}"  status processing|done, lease_until, expires_at (TTL)
TenantsTable: ``payment_status`` mirrored from STANDING (version bumped, so a concurrent
  TenantRepository.save of a stale record fails its optimistic check instead of undoing it).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from billing.adapters.dynamodb import dynamodb_client, is_conditional_failure
from billing.dunning import (Attempt, AuditEntry, DueRetry, InvoiceDunning, Mark, ResolutionMark,
                             TenantStanding)
from billing.errors import NotFound
from billing.periods import iso, parse_instant, utc

RETRY_DUE = "RETRY_DUE"
MAX_TRANSACTION_ITEMS = 100


def due_key(at: datetime) -> str:
    """Fixed-width UTC seconds, so index keys sort as instants."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


class DunningStore:
    """Implements billing.dunning.DunningRepository on BillingTable (+ TenantsTable for the mirror)."""

    def __init__(self, billing_table: str, tenants_table: str, client: Any = None):
        self.table = billing_table
        self.tenants_table = tenants_table
        self.client = client or dynamodb_client()

    # -- invoice records ----------------------------------------------------------------------------
    def get_invoice(self, tenant_id: str, invoice_id: str) -> InvoiceDunning | None:
        item = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                    Key={"pk": _s(f"TENANT#{tenant_id}"), "sk": _s(f"DUNNING#{invoice_id}")}
                                    ).get("Item")
        return _record(item) if item else None

    def put_invoice(self, record: InvoiceDunning, next_retry_at: datetime | None) -> bool:
        """Compare-and-set on ``version``; False when another writer got there first."""
        body = {
            "tenant_id": record.tenant_id, "invoice_id": record.invoice_id, "month": record.month,
            "finalized": record.finalized.to_json() if record.finalized else None,
            "first_failure": record.first_failure.to_json() if record.first_failure else None,
            "failure_reason": record.failure_reason,
            "closed": record.closed.to_json() if record.closed else None,
            "resolution": record.resolution.to_json() if record.resolution else None,
            "attempts": [a.to_json() for a in sorted(record.attempts, key=lambda a: a.n)],
            "last_event_created": iso(record.last_event_created) if record.last_event_created else None,
        }
        item: dict[str, Any] = {
            "pk": _s(f"TENANT#{record.tenant_id}"), "sk": _s(f"DUNNING#{record.invoice_id}"),
            "tenant_id": _s(record.tenant_id), "invoice_id": _s(record.invoice_id),
            "state": _s(_state_label(record, next_retry_at)), "attempts": {"N": str(len(record.attempts))},
            "body": _s(json.dumps(body, sort_keys=True)), "version": {"N": str(record.version + 1)},
        }
        if record.month:
            item["month"] = _s(record.month)
        if record.first_failure:
            item["first_failed_at"] = _s(iso(record.first_failure.at))
        if record.last_event_created:
            item["last_event_created"] = _s(iso(record.last_event_created))
        if next_retry_at is not None:
            item["next_retry_at"] = _s(iso(next_retry_at))
            item["gsi1pk"] = _s(RETRY_DUE)
            item["gsi1sk"] = _s(f"{due_key(next_retry_at)}#{record.invoice_id}")
        if record.version == 0:
            condition, values = "attribute_not_exists(pk)", None
        else:
            condition, values = "version = :v", {":v": {"N": str(record.version)}}
        kwargs: dict[str, Any] = dict(TableName=self.table, Item=item, ConditionExpression=condition)
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self.client.put_item(**kwargs)
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise

    def list_invoices(self, tenant_id: str) -> list[InvoiceDunning]:
        return [_record(i) for i in self._query_prefix(tenant_id, "DUNNING#")]

    # -- standing and audit ---------------------------------------------------------------------------
    def standing(self, tenant_id: str) -> TenantStanding:
        item = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                    Key={"pk": _s(f"TENANT#{tenant_id}"), "sk": _s("STANDING")}).get("Item")
        if not item:
            return TenantStanding(tenant_id)
        deleted = json.loads(item["customer_deleted"]["S"]) if "customer_deleted" in item else None
        return TenantStanding(tenant_id, item["status"]["S"], Mark.from_json(deleted),  # type: ignore[arg-type]
                              int(item["version"]["N"]))

    def audit(self, tenant_id: str) -> list[AuditEntry]:
        return [_entry(i) for i in self._query_prefix(tenant_id, "AUDIT#")]

    def commit(self, before: TenantStanding, after: TenantStanding, *, tenant_status_changed: bool,
               put: Sequence[AuditEntry], delete: Sequence[AuditEntry]) -> bool:
        """One transaction: STANDING (version-checked), the tenant's payment_status, the audit delta."""
        pk = _s(f"TENANT#{after.tenant_id}")
        standing: dict[str, Any] = {"pk": pk, "sk": _s("STANDING"), "tenant_id": _s(after.tenant_id),
                                    "status": _s(after.status), "version": {"N": str(after.version)}}
        if after.customer_deleted:
            standing["customer_deleted"] = _s(json.dumps(after.customer_deleted.to_json()))
        put_standing: dict[str, Any] = {"TableName": self.table, "Item": standing}
        if before.version == 0:
            put_standing["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put_standing["ConditionExpression"] = "version = :v"
            put_standing["ExpressionAttributeValues"] = {":v": {"N": str(before.version)}}
        items: list[dict[str, Any]] = [{"Put": put_standing}]
        if tenant_status_changed:
            items.append({"Update": {
                "TableName": self.tenants_table, "Key": {"tenant_id": _s(after.tenant_id)},
                "UpdateExpression": "SET payment_status = :s ADD version :one",
                "ConditionExpression": "attribute_exists(tenant_id)",
                "ExpressionAttributeValues": {":s": _s(after.status), ":one": {"N": "1"}}}})
        audit_ops = [{"Put": {"TableName": self.table, "Item": _audit_item(pk, e)}} for e in put]
        audit_ops += [{"Delete": {"TableName": self.table, "Key": {"pk": pk, "sk": _s(e.key)}}} for e in delete]
        first, rest = audit_ops[:MAX_TRANSACTION_ITEMS - len(items)], audit_ops[MAX_TRANSACTION_ITEMS - len(items):]
        try:
            self.client.transact_write_items(TransactItems=items + first)
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            reasons = exc.response.get("CancellationReasons") or []
            if tenant_status_changed and len(reasons) > 1 and reasons[1].get("Code") == "ConditionalCheckFailed" \
                    and reasons[0].get("Code") in (None, "None"):
                raise NotFound(f"tenant {after.tenant_id} does not exist") from None
            return False
        for op in rest:  # only for an unusually long trail: the overflow follows the committed head
            if "Put" in op:
                self.client.put_item(**op["Put"])
            else:
                self.client.delete_item(**op["Delete"])
        return True

    # -- scheduling ---------------------------------------------------------------------------------
    def due(self, now: datetime, limit: int) -> list[DueRetry]:
        found: list[DueRetry] = []
        kwargs: dict[str, Any] = dict(
            TableName=self.table, IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk <= :upper",
            ExpressionAttributeValues={":p": _s(RETRY_DUE), ":upper": _s(f"{due_key(now)}#~")})
        while len(found) < limit:
            page = self.client.query(**kwargs)
            for item in page["Items"]:
                found.append(DueRetry(item["tenant_id"]["S"], item["invoice_id"]["S"],
                                      parse_instant(item["next_retry_at"]["S"])))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found[:limit]

    # -- our invoices (written by the invoicing engineer) --------------------------------------------
    def find_invoice(self, stripe_invoice_id: str) -> tuple[str, str] | None:
        """(tenant_id, month) of the invoice record we created for this Stripe invoice, if any."""
        page = self.client.query(
            TableName=self.table, IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk = :s",
            ExpressionAttributeValues={":p": _s(f"STRIPEINV#{stripe_invoice_id}"), ":s": _s("INVOICE")})
        for item in page["Items"]:
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            tenant = item.get("tenant_id", {}).get("S") or sk.removeprefix("INVOICE#")
            month = item.get("month", {}).get("S") or pk.removeprefix("MONTH#")
            return tenant, month
        return None

    def _query_prefix(self, tenant_id: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = dict(
            TableName=self.table, ConsistentRead=True,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _s(f"TENANT#{tenant_id}"), ":prefix": _s(prefix)})
        while True:
            page = self.client.query(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _state_label(record: InvoiceDunning, next_retry_at: datetime | None) -> str:
    if record.resolution:
        return record.resolution.kind
    if record.first_failure is None:
        return "open"
    return "exhausted" if next_retry_at is None and record.attempts else "past_due"


def _record(item: dict[str, Any]) -> InvoiceDunning:
    body = json.loads(item["body"]["S"])
    return InvoiceDunning(
        tenant_id=body["tenant_id"], invoice_id=body["invoice_id"], month=body.get("month"),
        finalized=Mark.from_json(body.get("finalized")), first_failure=Mark.from_json(body.get("first_failure")),
        failure_reason=body.get("failure_reason"), closed=ResolutionMark.from_json(body.get("closed")),
        resolution=ResolutionMark.from_json(body.get("resolution")),
        attempts=tuple(Attempt.from_json(a) for a in body.get("attempts", [])),
        last_event_created=parse_instant(body["last_event_created"]) if body.get("last_event_created") else None,
        version=int(item["version"]["N"]))


def _audit_item(pk: dict[str, str], entry: AuditEntry) -> dict[str, Any]:
    return {"pk": pk, "sk": _s(entry.key), "when": _s(iso(entry.at)), "subject": _s(entry.subject),
            "from": _s(entry.from_state), "to": _s(entry.to_state), "why": _s(entry.why),
            "stripe_event_id": _s(entry.event_id), "order": {"N": str(entry.order)}}


def _entry(item: dict[str, Any]) -> AuditEntry:
    return AuditEntry(parse_instant(item["when"]["S"]), item["subject"]["S"], item["from"]["S"], item["to"]["S"],
                      item["why"]["S"], item["stripe_event_id"]["S"], int(item["order"]["N"]))


ClaimStatus = Literal["claimed", "duplicate", "in_flight"]


class ProcessedEvents:
    """Stripe event ids in LedgerTable: claimed (processing, with a lease) then done (until TTL).

    A claim whose processing died (lease ran out) is taken over, so a failure after the claim never
    loses the event: Stripe's redelivery is processed. Processing itself is idempotent."""

    LEASE_SECONDS = 60

    def __init__(self, table: str, client: Any = None, *, retention_days: int = 30):
        self.table = table
        self.client = client or dynamodb_client()
        self.retention_s = retention_days * 86400

    def claim(self, event_id: str, now: datetime) -> ClaimStatus:
        epoch = int(utc(now).timestamp())
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"pk": _s(f"WEBHOOK#{event_id}"), "status": _s("processing"),
                      "lease_until": {"N": str(epoch + self.LEASE_SECONDS)},
                      "expires_at": {"N": str(epoch + self.retention_s)}},
                ConditionExpression="attribute_not_exists(pk) OR (#st = :processing AND lease_until < :now)",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={":processing": _s("processing"), ":now": {"N": str(epoch)}})
            return "claimed"
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        item = self.client.get_item(TableName=self.table, Key={"pk": _s(f"WEBHOOK#{event_id}")},
                                    ConsistentRead=True).get("Item")
        return "duplicate" if item and item["status"]["S"] == "done" else "in_flight"

    def done(self, event_id: str, now: datetime, outcome: str) -> None:
        epoch = int(utc(now).timestamp())
        self.client.put_item(TableName=self.table, Item={
            "pk": _s(f"WEBHOOK#{event_id}"), "status": _s("done"), "outcome": _s(outcome[:1000]),
            "processed_at": _s(iso(now)), "expires_at": {"N": str(epoch + self.retention_s)}})

    def release(self, event_id: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key={"pk": _s(f"WEBHOOK#{event_id}")},
                                    ConditionExpression="#st = :processing",
                                    ExpressionAttributeNames={"#st": "status"},
                                    ExpressionAttributeValues={":processing": _s("processing")})
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
