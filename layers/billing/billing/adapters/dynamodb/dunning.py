"""DynamoDB storage for webhooks and dunning.

BillingTable (pk/sk):
  pk "TENANT#{tenant_id}"  sk "DUNNING#{invoice_id}"   the invoice's dunning record (versioned)
                           gsi1pk "RETRY_DUE", gsi1sk "{next_retry_at}#{invoice_id}" only while a
                           retry is due (removed otherwise, so the index holds due work only)
  pk "TENANT#{tenant_id}"  sk "DUNNING"                the tenant's standing, its audit trail
                                                       (entries keyed "AUDIT#{when}#{seq}": from, to,
                                                       when, why, event id) and a version: the
                                                       serialisation point of all dunning writes
  gsi1pk "STRIPEINV#{invoice_id}" gsi1sk "INVOICE"     the stripe engineer's invoice record (read only)
LedgerTable:
  pk "WEBHOOK#{stripe_event_id}"  outcome, processed_at, expires_at (TTL)
TenantsTable: ``payment_status`` mirrored from STANDING, with ``payment_version`` (the standing
  version it shows; an older one never overwrites a newer one) and ``version`` bumped, so a
  concurrent TenantRepository.save of a stale record fails its optimistic check instead of undoing it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, items, put_versioned, write_if
from billing.adapters.dynamodb.statements import invoice_statement
from billing.dunning.facts import Attempt, InvoiceDunning, Mark, ResolutionMark
from billing.dunning.service import DueRetry, TenantStanding
from billing.dunning.timeline import AuditEntry
from billing.kernel.periods import iso, parse_instant, utc

RETRY_DUE = "RETRY_DUE"
STANDING = "DUNNING"  # sorts before every "DUNNING#{invoice}": read first by snapshot()


def due_key(at: datetime) -> str:
    """Fixed-width UTC seconds, so index keys sort as instants."""
    return utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


class DynamoDunningStore:
    """Implements billing.dunning.DunningStore on BillingTable (+ TenantsTable for the mirror)."""

    def __init__(self, billing_table: str, tenants_table: str, client: Any = None):
        self.table = billing_table
        self.tenants_table = tenants_table
        self.client = client or dynamodb_client()

    # -- invoice records ----------------------------------------------------------------------------
    def get_invoice(self, tenant_id: str, invoice_id: str) -> InvoiceDunning | None:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": _s(f"TENANT#{tenant_id}"), "sk": _s(f"DUNNING#{invoice_id}")},
        ).get("Item")
        return _record(item) if item else None

    def put_invoice(self, record: InvoiceDunning, next_retry_at: datetime | None) -> bool:
        """Compare-and-set on ``version``; False when another writer got there first."""
        body = {
            "tenant_id": record.tenant_id,
            "invoice_id": record.invoice_id,
            "month": record.month,
            "finalized": record.finalized.to_json() if record.finalized else None,
            "first_failure": record.first_failure.to_json() if record.first_failure else None,
            "failure_reason": record.failure_reason,
            "closed": record.closed.to_json() if record.closed else None,
            "resolution": record.resolution.to_json() if record.resolution else None,
            "attempts": [a.to_json() for a in sorted(record.attempts, key=lambda a: a.n)],
        }
        item: dict[str, Any] = {
            "pk": _s(f"TENANT#{record.tenant_id}"),
            "sk": _s(f"DUNNING#{record.invoice_id}"),
            "tenant_id": _s(record.tenant_id),
            "invoice_id": _s(record.invoice_id),
            "state": _s(_state_label(record, next_retry_at)),
            "attempts": {"N": str(len(record.attempts))},
            "body": _s(json.dumps(body, sort_keys=True)),
            "version": {"N": str(record.version + 1)},
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
        return put_versioned(self.client, self.table, item, None if record.version == 0 else record.version)

    def list_invoices(self, tenant_id: str) -> list[InvoiceDunning]:
        return [_record(i) for i in self._query_prefix(tenant_id, "DUNNING#")]

    def snapshot(self, tenant_id: str) -> tuple[TenantStanding, list[InvoiceDunning]]:
        """Standing and every invoice record in one strongly consistent query; the standing item
        sorts first, so it is read no later than any invoice record."""
        found = self._query_prefix(tenant_id, STANDING)
        standing = TenantStanding(tenant_id)
        records = []
        for item in found:
            if item["sk"]["S"] == STANDING:
                standing = _standing(tenant_id, item)
            else:
                records.append(_record(item))
        return standing, records

    # -- standing and audit ---------------------------------------------------------------------------
    def standing(self, tenant_id: str) -> TenantStanding:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": _s(f"TENANT#{tenant_id}"), "sk": _s(STANDING)},
        ).get("Item")
        return _standing(tenant_id, item) if item else TenantStanding(tenant_id)

    def commit(self, before: TenantStanding, after: TenantStanding) -> bool:
        """Compare-and-set of STANDING (status, audit trail, version): one conditional put. Then,
        when the status changed, mirror it onto the tenant record (guarded by the standing version,
        so a slower writer never overwrites a newer status; a crash in between is repaired by the
        next commit, which sees ``mirrored`` false)."""
        need_mirror = after.status != before.status or not before.mirrored
        pk = _s(f"TENANT#{after.tenant_id}")
        item: dict[str, Any] = {
            "pk": pk,
            "sk": _s(STANDING),
            "tenant_id": _s(after.tenant_id),
            "status": _s(after.status),
            "version": {"N": str(after.version)},
            "mirrored": {"BOOL": not need_mirror},
            "audit": _s(json.dumps([_audit_json(e) for e in after.audit], separators=(",", ":"))),
        }
        if after.customer_deleted:
            item["customer_deleted"] = _s(json.dumps(after.customer_deleted.to_json()))
        if not put_versioned(self.client, self.table, item, None if before.version == 0 else before.version):
            return False
        if need_mirror:
            self._mirror(after)
        return True

    def _mirror(self, standing: TenantStanding) -> None:
        mirrored = write_if(
            self.client.update_item,
            TableName=self.tenants_table,
            Key={"tenant_id": _s(standing.tenant_id)},
            UpdateExpression="SET payment_status = :s, payment_version = :pv ADD version :one",
            ConditionExpression="attribute_exists(tenant_id) AND "
            "(attribute_not_exists(payment_version) OR payment_version < :pv)",
            ExpressionAttributeValues={
                ":s": _s(standing.status),
                ":pv": {"N": str(standing.version)},
                ":one": {"N": "1"},
            },
        )
        if not mirrored:
            return  # a newer standing is mirrored already (or the tenant is gone)
        write_if(  # False: a newer standing replaced this one meanwhile; it mirrors itself
            self.client.update_item,
            TableName=self.table,
            Key={"pk": _s(f"TENANT#{standing.tenant_id}"), "sk": _s(STANDING)},
            UpdateExpression="SET mirrored = :t",
            ConditionExpression="version = :v",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":v": {"N": str(standing.version)}},
        )

    # -- scheduling ---------------------------------------------------------------------------------
    def due(self, now: datetime, limit: int) -> list[DueRetry]:
        found: list[DueRetry] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p AND gsi1sk <= :upper",
            "ExpressionAttributeValues": {":p": _s(RETRY_DUE), ":upper": _s(f"{due_key(now)}#~")},
        }
        while len(found) < limit:
            page = self.client.query(**kwargs)
            for item in page["Items"]:
                found.append(
                    DueRetry(
                        item["tenant_id"]["S"],
                        item["invoice_id"]["S"],
                        parse_instant(item["next_retry_at"]["S"]),
                    )
                )
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found[:limit]

    # -- our invoices (written by the invoicing engineer) --------------------------------------------
    def find_invoice(self, stripe_invoice_id: str) -> tuple[str, str] | None:
        """(tenant_id, month) of the invoice record we created for this Stripe invoice, if any."""
        return invoice_statement(self.client, self.table, stripe_invoice_id)

    def _query_prefix(self, tenant_id: str, prefix: str) -> list[dict[str, Any]]:
        return list(
            items(
                self.client.query,
                TableName=self.table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": _s(f"TENANT#{tenant_id}"), ":prefix": _s(prefix)},
            )
        )


def _standing(tenant_id: str, item: dict[str, Any]) -> TenantStanding:
    deleted = json.loads(item["customer_deleted"]["S"]) if "customer_deleted" in item else None
    audit = tuple(_entry(e) for e in json.loads(item["audit"]["S"])) if "audit" in item else ()
    return TenantStanding(
        tenant_id,
        item["status"]["S"],
        Mark.from_json(deleted),
        audit,
        int(item["version"]["N"]),
        item.get("mirrored", {}).get("BOOL", True),
    )


def _state_label(record: InvoiceDunning, next_retry_at: datetime | None) -> str:
    if record.resolution:
        return record.resolution.kind
    if record.first_failure is None:
        return "open"
    return "exhausted" if next_retry_at is None and record.attempts else "past_due"


def _record(item: dict[str, Any]) -> InvoiceDunning:
    body = json.loads(item["body"]["S"])
    return InvoiceDunning(
        tenant_id=body["tenant_id"],
        invoice_id=body["invoice_id"],
        month=body.get("month"),
        finalized=Mark.from_json(body.get("finalized")),
        first_failure=Mark.from_json(body.get("first_failure")),
        failure_reason=body.get("failure_reason"),
        closed=ResolutionMark.from_json(body.get("closed")),
        resolution=ResolutionMark.from_json(body.get("resolution")),
        attempts=tuple(Attempt.from_json(a) for a in body.get("attempts", [])),
        version=int(item["version"]["N"]),
    )


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"key": entry.key, **entry.to_json(), "order": entry.order}


def _entry(data: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        parse_instant(data["when"]),
        data["subject"],
        data["from"],
        data["to"],
        data["why"],
        data["stripe_event_id"],
        int(data["order"]),
    )


class DynamoEventLog:
    """Processed Stripe event ids in LedgerTable (pk "WEBHOOK#{id}", TTL ``expires_at``). Written
    once the event's state change is stored, with a conditional put: False means a redelivery."""

    def __init__(self, table: str, client: Any = None, *, retention_days: int = 30):
        self.table = table
        self.client = client or dynamodb_client()
        self.retention_s = retention_days * 86400

    def record(self, event_id: str, now: datetime, outcome: str) -> bool:
        epoch = int(utc(now).timestamp())
        return write_if(
            self.client.put_item,
            TableName=self.table,
            ConditionExpression="attribute_not_exists(pk)",
            Item={
                "pk": _s(f"WEBHOOK#{event_id}"),
                "outcome": _s(outcome[:1000]),
                "processed_at": _s(iso(now)),
                "expires_at": {"N": str(epoch + self.retention_s)},
            },
        )
