"""SQS adapter: send a message to a queue (the usage fallback queue)."""

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
