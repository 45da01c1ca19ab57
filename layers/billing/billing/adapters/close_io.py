"""AWS side of the monthly close: fallback-queue depth, invoicing jobs (SQS), the CSV (S3), and
per-statement "job enqueued" markers in the BillingTable (pk MONTH#{M}, sk JOB#{tenant_id})."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.aws import dynamodb_client, s3_client, sqs_client
from billing.adapters.dynamodb import is_conditional_failure


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


class InvoicingJobs:
    """One SQS message per statement to invoice, sent once (a marker records that it was sent)."""

    def __init__(self, queue_url: str, table: str, sqs: Any = None, dynamodb: Any = None):
        self.queue_url = queue_url
        self.table = table
        self.sqs = sqs or sqs_client()
        self.dynamodb = dynamodb or dynamodb_client()

    def _key(self, tenant_id: str, month: str) -> dict[str, Any]:
        return {"pk": {"S": f"MONTH#{month}"}, "sk": {"S": f"JOB#{tenant_id}"}}

    def was_enqueued(self, tenant_id: str, month: str) -> bool:
        return "Item" in self.dynamodb.get_item(
            TableName=self.table, Key=self._key(tenant_id, month), ConsistentRead=True
        )

    def enqueue_once(self, tenant_id: str, month: str) -> bool:
        """Send the job unless its marker exists; the marker is written after the send, so a crash in
        between sends it again on the next run (the consumer is idempotent). True when sent now."""
        if self.was_enqueued(tenant_id, month):
            return False
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps({"tenant_id": tenant_id, "month": month}, sort_keys=True),
        )
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={**self._key(tenant_id, month), "enqueued": {"BOOL": True}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        return True


class InvoiceArchive:
    """The month's CSV in S3. Written only when absent or different, so a re-run changes nothing."""

    def __init__(self, bucket: str, client: Any = None):
        self.bucket = bucket
        self.client = client or s3_client()

    @staticmethod
    def key(month: str) -> str:
        return f"invoices/{month}.csv"

    def put(self, month: str, body: bytes) -> bool:
        key = self.key(month)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            if head.get("ETag", "").strip('"') == hashlib.md5(body).hexdigest():
                return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="text/csv")
        return True

    def get(self, month: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(month))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
