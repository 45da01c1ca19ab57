"""BillingTable items of the outgoing-webhook delivery log (billing.outgoing_webhooks.delivery_log):

pk "WEBHOOKLOG#{endpoint_id}"  sk "ATT#{at}#{message_id}#{attempt}"  one attempt (its outcome, duration)
pk "WEBHOOKLOG#{endpoint_id}"  sk "MSG#{message_id}"                  the message: event type, exact body

``at`` is ISO 8601 UTC with microseconds, so the sort key orders attempts by time; both kinds expire
(``expires_at``, the table's TTL) ``RETENTION_DAYS`` after their last write. A cursor is the sort key
of the last attempt of a page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client
from billing.outgoing_webhooks.delivery import Message
from billing.outgoing_webhooks.delivery_log import RETENTION_DAYS, Attempt

_CURSOR = re.compile(r"^ATT#[0-9T:.+\-]{20,40}#[A-Za-z0-9_\-]{1,128}#[0-9]{3}$")


def _pk(endpoint_id: str) -> dict[str, str]:
    return {"S": f"WEBHOOKLOG#{endpoint_id}"}


class DynamoDeliveryLog:
    def __init__(self, table: str, client: Any = None, retention_days: int = RETENTION_DAYS):
        self.table = table
        self.client = client or dynamodb_client()
        self.retention_s = retention_days * 86400

    def record(self, attempt: Attempt, body: bytes) -> None:
        at = attempt.at.astimezone(UTC)
        expires = {"N": str(int(at.timestamp()) + self.retention_s)}
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": _pk(attempt.endpoint_id),
                "sk": {"S": f"MSG#{attempt.message_id}"},
                "event_type": {"S": attempt.event_type},
                "body": {"S": body.decode("utf-8")},
                "expires_at": expires,
            },
        )
        item: dict[str, Any] = {
            "pk": _pk(attempt.endpoint_id),
            "sk": {
                "S": f"ATT#{at.isoformat(timespec='microseconds')}#{attempt.message_id}#{attempt.attempt:03d}"
            },
            "message_id": {"S": attempt.message_id},
            "event_type": {"S": attempt.event_type},
            "attempt": {"N": str(attempt.attempt)},
            "at": {"S": at.isoformat()},
            "delivered": {"BOOL": attempt.delivered},
            "duration_ms": {"N": str(attempt.duration_ms)},
            "expires_at": expires,
        }
        if attempt.status is not None:
            item["status"] = {"N": str(attempt.status)}
        if attempt.error is not None:
            item["error"] = {"S": attempt.error[:500]}
        self.client.put_item(TableName=self.table, Item=item)

    def page(self, endpoint_id: str, limit: int, cursor: str | None) -> tuple[list[Attempt], str | None]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :att)",
            "ExpressionAttributeValues": {":pk": _pk(endpoint_id), ":att": {"S": "ATT#"}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            if not _CURSOR.match(cursor):
                raise ValueError("not a cursor")
            request["ExclusiveStartKey"] = {"pk": _pk(endpoint_id), "sk": {"S": cursor}}
        answer = self.client.query(**request)
        attempts = [
            Attempt(
                message_id=item["message_id"]["S"],
                endpoint_id=endpoint_id,
                event_type=item["event_type"]["S"],
                attempt=int(item["attempt"]["N"]),
                at=datetime.fromisoformat(item["at"]["S"]),
                delivered=item["delivered"]["BOOL"],
                status=int(item["status"]["N"]) if "status" in item else None,
                error=item["error"]["S"] if "error" in item else None,
                duration_ms=int(item["duration_ms"]["N"]),
            )
            for item in answer["Items"]
        ]
        last = answer.get("LastEvaluatedKey")
        return attempts, (last["sk"]["S"] if last else None)

    def message(self, endpoint_id: str, message_id: str) -> Message | None:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": _pk(endpoint_id), "sk": {"S": f"MSG#{message_id}"}},
        ).get("Item")
        if not item:
            return None
        return Message(message_id, endpoint_id, item["event_type"]["S"], item["body"]["S"].encode("utf-8"))
