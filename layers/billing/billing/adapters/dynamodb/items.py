"""DynamoDB helpers shared by the table adapters: item (de)serialisation, pagination, conditional puts.

The tables' adapters: ``tenant_store`` (tenants), ``usage_ledger`` (exactly-once claims, quota
counters), ``billing_store``, ``invoice_store``, ``dunning_store``, ``invoicing_jobs``.

Key design (tables are defined once, in template.yaml; tests build moto tables from it):

TenantsTable  pk tenant_id                    the tenant record (billing.tenants.tenant.Tenant)
LedgerTable   pk "EVT#{tenant}#{event_id}"    an event claim: exactly-once admission
              pk "BATCH#{batch_id}"           an ingest batch; committed once durably stored
              pk "QUOTA#{tenant}#{YYYY-MM}"   accepted queries of a month (compare-and-set)
              pk "WEBHOOK#{stripe_event_id}"  a processed Stripe event (TTL)
BillingTable  pk/sk, gsi1pk/gsi1sk            periods, statements, invoices, dunning, audit
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from billing.adapters.aws.clients import dynamodb_client

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
__all__ = [
    "dynamodb_client",
    "from_item",
    "is_conditional_failure",
    "items",
    "put_versioned",
    "to_item",
    "write_if",
]


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_plain(v)) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _unplain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        raise TypeError("floats are not stored; use Decimal")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _unplain(value: Any) -> Any:
    if (
        isinstance(value, Decimal)
        and value == value.to_integral_value()
        and "E" not in str(value)
        and "." not in str(value)
    ):
        return int(value)
    if isinstance(value, dict):
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in (
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    )


def items(call: Any, **request: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated Query or Scan (``call`` is ``client.query`` or ``client.scan``)."""
    while True:
        page = call(**request)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def write_if(call: Any, **request: Any) -> bool:
    """A conditional write (``call`` is ``client.put_item``, ``update_item`` or ``delete_item``, with a
    ``ConditionExpression``): True when written, False (not an error) when the condition failed."""
    try:
        call(**request)
        return True
    except ClientError as exc:
        if is_conditional_failure(exc):
            return False
        raise


def put_versioned(client: Any, table: str, item: dict[str, Any], expected_version: int | None) -> bool:
    """Put ``item`` only if the stored one still has ``expected_version`` (None: only if absent).
    False when someone else wrote first: the caller re-reads and retries."""
    if expected_version is None:
        condition, values = "attribute_not_exists(pk)", None
    else:
        condition, values = "version = :v", {":v": {"N": str(expected_version)}}
    kwargs: dict[str, Any] = {"TableName": table, "Item": item, "ConditionExpression": condition}
    if values:
        kwargs["ExpressionAttributeValues"] = values
    return write_if(client.put_item, **kwargs)
