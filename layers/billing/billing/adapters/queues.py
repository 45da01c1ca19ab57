"""SQS adapter: send a message to a queue (the usage fallback queue), and how many are still in one."""

from __future__ import annotations

from typing import Any

from billing.adapters.aws import sqs_client


class SqsQueue:
    def __init__(self, url: str, client: Any = None):
        self.url = url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or sqs_client()

    def send(self, body: str) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=body)


class QueueDepth:
    """Messages still in a queue: visible, in flight (received, not deleted) and delayed."""

    ATTRIBUTES = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]

    def __init__(self, queue_url: str, client: Any = None):
        self.queue_url = queue_url
        self.client = client or sqs_client()

    def __call__(self) -> int:
        if not self.queue_url:
            return 0
        attrs = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=self.ATTRIBUTES)[
            "Attributes"
        ]
        return sum(int(attrs.get(name, 0)) for name in self.ATTRIBUTES)
