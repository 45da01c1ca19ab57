"""SQS adapter: send to a queue, and tell whether it is drained (visible + in-flight messages)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import boto3

from billing.adapters.dynamodb import BOTO_CONFIG


@lru_cache(maxsize=None)
def sqs_client() -> Any:
    return boto3.client("sqs", config=BOTO_CONFIG)


class SqsQueue:
    def __init__(self, url: str, client: Any = None):
        self.url = url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or sqs_client()

    def send(self, body: str) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self) -> int:
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(v) for v in attributes.values())
