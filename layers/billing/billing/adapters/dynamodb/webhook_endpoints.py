"""BillingTable items of the outgoing-webhook endpoints (billing.outgoing_webhooks.endpoints):

pk "WEBHOOKS"                sk "ENDPOINT#{endpoint_id}"   an endpoint (JSON body, its version), never its secret
pk "WEBHOOKS"                sk "TARGET#{target_key}"      who registers a URL + event types: the owner's
                                                           endpoint id, when claimed, whether stored (done)
pk "WEBHOOKSEQ#{object_id}"  sk "SEQ"                      the object's last webhook sequence number
pk "WEBHOOKSEQ#{object_id}"  sk "PUB#{message_id}"         a source fact's publish: its sequence, body,
                                                           whether its messages are queued

One partition: the SaaS has a few endpoints (``MAX_ENDPOINTS``) and every delivery reads them all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, items, put_versioned, write_if
from billing.outgoing_webhooks.delivery import Published
from billing.outgoing_webhooks.endpoints import Endpoint

PARTITION = "WEBHOOKS"


def _key(endpoint_id: str) -> dict[str, Any]:
    return {"pk": {"S": PARTITION}, "sk": {"S": f"ENDPOINT#{endpoint_id}"}}


def _item(endpoint: Endpoint) -> dict[str, Any]:
    return {
        **_key(endpoint.id),
        "version": {"N": str(endpoint.version)},
        "body": {"S": endpoint.model_dump_json()},
    }


class DynamoWebhookEndpoints:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def add(self, endpoint: Endpoint) -> None:
        put_versioned(self.client, self.table, _item(endpoint), None)

    def get(self, endpoint_id: str) -> Endpoint | None:
        item = self.client.get_item(TableName=self.table, ConsistentRead=True, Key=_key(endpoint_id)).get(
            "Item"
        )
        return Endpoint.model_validate_json(item["body"]["S"]) if item else None

    def all(self) -> list[Endpoint]:
        return [
            Endpoint.model_validate_json(item["body"]["S"])
            for item in items(
                self.client.query,
                TableName=self.table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :sk)",
                ExpressionAttributeValues={":pk": {"S": PARTITION}, ":sk": {"S": "ENDPOINT#"}},
            )
        ]

    def replace(self, endpoint: Endpoint, *, expected_version: int) -> bool:
        return put_versioned(self.client, self.table, _item(endpoint), expected_version)

    def delete(self, endpoint_id: str) -> bool:
        return write_if(
            self.client.delete_item,
            TableName=self.table,
            Key=_key(endpoint_id),
            ConditionExpression="attribute_exists(pk)",
        )

    @staticmethod
    def _target(key: str) -> dict[str, Any]:
        return {"pk": {"S": PARTITION}, "sk": {"S": f"TARGET#{key}"}}

    def claim_target(self, key: str, endpoint_id: str, at: datetime, stale_before: datetime) -> str:
        claimed = write_if(
            self.client.put_item,
            TableName=self.table,
            Item={
                **self._target(key),
                "endpoint_id": {"S": endpoint_id},
                "claimed_at": {"N": str(int(at.timestamp()))},
            },
            ConditionExpression="attribute_not_exists(pk) OR (attribute_not_exists(done) AND claimed_at < :stale)",
            ExpressionAttributeValues={":stale": {"N": str(int(stale_before.timestamp()))}},
        )
        if claimed:
            return endpoint_id
        item = self.client.get_item(TableName=self.table, ConsistentRead=True, Key=self._target(key)).get(
            "Item"
        )
        return item["endpoint_id"]["S"] if item else ""

    def finish_target(self, key: str, endpoint_id: str) -> None:
        write_if(
            self.client.put_item,
            TableName=self.table,
            Item={**self._target(key), "endpoint_id": {"S": endpoint_id}, "done": {"BOOL": True}},
            ConditionExpression="endpoint_id = :owner",
            ExpressionAttributeValues={":owner": {"S": endpoint_id}},
        )

    def release_target(self, key: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self._target(key))


class DynamoSequenceCounter:
    """pk "WEBHOOKSEQ#{object_id}" sk "SEQ": an object's last webhook sequence number (ADD is atomic,
    so two events of one object at once get two numbers)."""

    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def next(self, object_id: str) -> int:
        answer = self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"WEBHOOKSEQ#{object_id}"}, "sk": {"S": "SEQ"}},
            UpdateExpression="ADD seq :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["seq"]["N"])


class DynamoPublishLog:
    """pk "WEBHOOKSEQ#{object_id}" sk "PUB#{message_id}": what a source fact's publish was given
    (its object's partition, so the same grant covers the counter and these). Every write is an
    UpdateItem; the claim is conditional on the item not existing."""

    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    @staticmethod
    def _key(object_id: str, message_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"WEBHOOKSEQ#{object_id}"}, "sk": {"S": f"PUB#{message_id}"}}

    def get(self, object_id: str, message_id: str) -> Published | None:
        item = self.client.get_item(
            TableName=self.table, ConsistentRead=True, Key=self._key(object_id, message_id)
        ).get("Item")
        if not item:
            return None
        return Published(
            sequence=int(item["seq"]["N"]),
            body=item["body"]["S"].encode("utf-8"),
            queued=bool(item.get("queued", {}).get("BOOL", False)),
        )

    def claim(self, object_id: str, message_id: str, published: Published) -> bool:
        return write_if(
            self.client.update_item,
            TableName=self.table,
            Key=self._key(object_id, message_id),
            UpdateExpression="SET seq = :seq, body = :body, queued = :no",
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeValues={
                ":seq": {"N": str(published.sequence)},
                ":body": {"S": published.body.decode("utf-8")},
                ":no": {"BOOL": False},
            },
        )

    def mark_queued(self, object_id: str, message_id: str) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=self._key(object_id, message_id),
            UpdateExpression="SET queued = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )
