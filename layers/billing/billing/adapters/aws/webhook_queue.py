"""The outgoing-webhook queue on SQS: one SQS message per webhook message, its body the JSON
``{message_id, endpoint_id, event_type, body, attempts, not_before}``. SQS delays a message at most
15 minutes: a longer delay is sent as 15 minutes with ``not_before`` set, and the consumer sends it
back until then (``billing.outgoing_webhooks.delivery.Relay``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from billing.adapters.aws.clients import sqs_client
from billing.adapters.aws.queues import SqsQueue
from billing.outgoing_webhooks.delivery import Message

MAX_SQS_DELAY = timedelta(minutes=15)


def encode(message: Message, reason: str | None = None) -> str:
    document: dict[str, Any] = {
        "message_id": message.message_id,
        "endpoint_id": message.endpoint_id,
        "event_type": message.event_type,
        "body": message.body.decode("utf-8"),
        "attempts": message.attempts,
        "not_before": message.not_before.isoformat() if message.not_before else None,
    }
    if reason is not None:
        document["reason"] = reason
    return json.dumps(document, separators=(",", ":"))


def decode(text: str) -> Message:
    document = json.loads(text)
    not_before = document.get("not_before")
    return Message(
        message_id=document["message_id"],
        endpoint_id=document["endpoint_id"],
        event_type=document["event_type"],
        body=document["body"].encode("utf-8"),
        attempts=int(document.get("attempts", 0)),
        not_before=datetime.fromisoformat(not_before) if not_before else None,
    )


class SqsDeliveryQueue:
    def __init__(self, url: str, clock: Callable[[], datetime], client: Any = None):
        self.url = url
        self.clock = clock
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or sqs_client()

    def send(self, message: Message, delay: timedelta) -> None:
        wait = max(delay, timedelta(0))
        if wait > MAX_SQS_DELAY:
            message = Message(
                message.message_id,
                message.endpoint_id,
                message.event_type,
                message.body,
                message.attempts,
                not_before=self.clock() + wait,
            )
            wait = MAX_SQS_DELAY
        self.client.send_message(
            QueueUrl=self.url, MessageBody=encode(message), DelaySeconds=int(wait.total_seconds())
        )


class SqsDeadLetters(SqsQueue):
    def send(self, message: Message, reason: str) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=encode(message, reason))
