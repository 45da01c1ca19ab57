"""The monthly close's invoicing jobs: one SQS message per statement to invoice, sent once; a marker in
the BillingTable (pk MONTH#{M}, sk JOB#{tenant_id}) records that it was sent."""

from __future__ import annotations

import json
from typing import Any

from billing.adapters.aws.clients import dynamodb_client, sqs_client
from billing.adapters.dynamodb.items import write_if


class SqsInvoicingJobs:
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
        write_if(  # False: another run wrote the marker first; either way the job was sent
            self.dynamodb.put_item,
            TableName=self.table,
            Item={**self._key(tenant_id, month), "enqueued": {"BOOL": True}},
            ConditionExpression="attribute_not_exists(pk)",
        )
        return True
