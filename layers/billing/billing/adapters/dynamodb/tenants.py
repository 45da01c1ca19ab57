"""TenantsTable adapter: the tenant records (billing.tenants.tenant.Tenant), read with strong consistency,
written with optimistic versions (``save`` fails if anyone changed the record since it was read)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, from_item, items, to_item, write_if
from billing.kernel.periods import iso
from billing.tenants.tenant import Tenant


class DynamoTenantStore:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def get(self, tenant_id: str) -> Tenant | None:
        item = self.client.get_item(
            TableName=self.table, Key={"tenant_id": {"S": tenant_id}}, ConsistentRead=True
        ).get("Item")
        return tenant_of(item) if item else None

    def get_many(self, tenant_ids: Iterable[str]) -> dict[str, Tenant]:
        ids = sorted(set(tenant_ids))
        found: dict[str, Tenant] = {}
        for start in range(0, len(ids), 100):
            keys: list[dict[str, Any]] = [{"tenant_id": {"S": t}} for t in ids[start : start + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.table, []):
                    tenant = tenant_of(item)
                    found[tenant.id] = tenant
                request = response.get("UnprocessedKeys") or {}
        return found

    def list_all(self) -> list[Tenant]:
        tenants = [tenant_of(i) for i in items(self.client.scan, TableName=self.table, ConsistentRead=True)]
        return sorted(tenants, key=lambda t: t.id)

    def create(self, tenant: Tenant) -> bool:
        """Insert a new tenant; False when the id exists already (idempotent signup)."""
        data = tenant.model_dump(mode="json")
        data["tenant_id"] = data.pop("id")
        data["version"] = 1
        return write_if(
            self.client.put_item,
            TableName=self.table,
            Item=to_item(data),
            ConditionExpression="attribute_not_exists(tenant_id)",
        )

    def save(self, tenant: Tenant) -> Tenant:
        """Optimistic write: succeeds only if nobody changed the record since it was read."""
        data = tenant.model_dump(mode="json")
        data["tenant_id"] = data.pop("id")
        data["version"] = tenant.version + 1
        self.client.put_item(
            TableName=self.table,
            Item=to_item(data),
            ConditionExpression="attribute_not_exists(tenant_id) OR version = :v",
            ExpressionAttributeValues={":v": {"N": str(tenant.version)}},
        )
        return tenant.model_copy(update={"version": tenant.version + 1})

    def link_stripe_customer(self, tenant_id: str, customer_id: str) -> str | None:
        """One conditional update of ``stripe_customer_id`` (and the version, so a stale optimistic save
        fails): the only attributes the invoicing role may write (an IAM dynamodb:Attributes condition)."""
        linked = write_if(
            self.client.update_item,
            TableName=self.table,
            Key={"tenant_id": {"S": tenant_id}},
            UpdateExpression="SET #c = :c ADD version :one",
            ConditionExpression="attribute_exists(tenant_id) AND (attribute_not_exists(#c) OR #c = :c)",
            ExpressionAttributeNames={"#c": "stripe_customer_id"},
            ExpressionAttributeValues={":c": {"S": customer_id}, ":one": {"N": "1"}},
        )
        if linked:
            return customer_id
        tenant = self.get(tenant_id)
        return None if tenant is None else tenant.stripe_customer_id

    def record_payment_method(self, tenant_id: str, payment_method_id: str | None, at: datetime) -> bool:
        """Mirror the default payment method as of ``at``, unless a newer one is stored or this very
        one is (one conditional update; the version moves so an optimistic save of a stale copy
        fails, and so it moves only when something changes: a redelivery writes nothing)."""
        names = {"#m": "payment_method_id", "#a": "payment_method_at"}
        values: dict[str, Any] = {":a": {"S": iso(at)}, ":one": {"N": "1"}}
        if payment_method_id:
            update = "SET #m = :m, #a = :a ADD version :one"
            values[":m"] = {"S": payment_method_id}
            differs = "attribute_not_exists(#m) OR #m <> :m"
        else:
            update = "SET #a = :a REMOVE #m ADD version :one"
            differs = "attribute_exists(#m)"
        # At the same moment, a different method still replaces the stored one (the last writer wins,
        # as it always did); the same one is not written again.
        newer = f"attribute_not_exists(#a) OR #a < :a OR (#a = :a AND ({differs}))"
        return write_if(
            self.client.update_item,
            TableName=self.table,
            Key={"tenant_id": {"S": tenant_id}},
            UpdateExpression=update,
            ConditionExpression=f"attribute_exists(tenant_id) AND ({newer})",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


def tenant_of(item: dict[str, Any]) -> Tenant:
    data = from_item(item)
    data["id"] = data.pop("tenant_id")
    return Tenant.model_validate(data)
