"""SQS adapter: send a message to a queue (the usage fallback queue), and how many are still in one."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError

from billing.adapters.aws.clients import sqs_client
from billing.kernel.errors import QueueRefused


class SqsQueue:
    """One SQS queue by its URL; the client is the process's shared one unless a test gives its own."""

    def __init__(self, url: str, client: Any = None):
        self.url = url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or sqs_client()


class SqsFallbackQueue(SqsQueue):
    def send(self, body: str) -> None:
        """Raises ``QueueRefused`` only when the message is surely not queued: the SDK refused the
        request before sending it, or SQS answered its first attempt with a 4xx (queue missing,
        access denied, message too large). Anything else (no answer: a timeout or a reset, which
        may come after SQS accepted the message; a 5xx; any error after SDK retries, an earlier
        attempt of which may have been applied) is re-raised as it is: the message may be queued."""
        try:
            self.client.send_message(QueueUrl=self.url, MessageBody=body)
        except (ParamValidationError, NoCredentialsError) as exc:
            raise QueueRefused(str(exc)) from exc
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            if meta.get("RetryAttempts", 0) == 0 and 400 <= meta.get("HTTPStatusCode", 0) < 500:
                raise QueueRefused(str(exc)) from exc
            raise


class SqsQueueDepth:
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
