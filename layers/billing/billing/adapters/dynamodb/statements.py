"""BillingTable access for periods and statements (pk/sk single-table design).

pk "PERIOD#{YYYY-MM}"   sk "CLOSE"             the month's close: closed_at (ISO), the watermark
pk "MONTH#{YYYY-MM}"    sk "STMT#{tenant_id}"  a stored statement (JSON, immutable once written)
pk "MONTH#{YYYY-MM}"    sk "INVOICE#{tenant}"  the Stripe invoicing state machine of that statement
                                               (gsi1pk "STRIPEINV#{invoice_id}", gsi1sk "INVOICE")
pk "TENANT#{tenant_id}" sk "DUNNING#..."/"AUDIT#..."  dunning state and audit trail
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, items, write_if
from billing.kernel.periods import Month, iso, parse_instant
from billing.statements.statement import Statement


class DynamoPeriodStore:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def closed_at(self, month: Month | str) -> datetime | None:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": {"S": f"PERIOD#{month}"}, "sk": {"S": "CLOSE"}},
        ).get("Item")
        return parse_instant(item["closed_at"]["S"]) if item else None

    def close(self, month: Month | str, closed_at: datetime) -> datetime:
        """Record the close once; returns the watermark in force (the first writer's)."""
        if write_if(
            self.client.put_item,
            TableName=self.table,
            ConditionExpression="attribute_not_exists(pk)",
            Item={"pk": {"S": f"PERIOD#{month}"}, "sk": {"S": "CLOSE"}, "closed_at": {"S": iso(closed_at)}},
        ):
            return closed_at
        existing = self.closed_at(month)
        assert existing is not None
        return existing


class DynamoStatementStore:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def put_if_absent(self, statement: Statement) -> bool:
        """Store a statement once. False (and no change) when one exists for that tenant-month."""
        return write_if(
            self.client.put_item,
            TableName=self.table,
            ConditionExpression="attribute_not_exists(pk)",
            Item={
                "pk": {"S": f"MONTH#{statement.month}"},
                "sk": {"S": f"STMT#{statement.tenant_id}"},
                "tenant_id": {"S": statement.tenant_id},
                "month": {"S": statement.month},
                "is_final": {"BOOL": statement.is_final},
                "body": {"S": statement.model_dump_json()},
            },
        )

    def get(self, tenant_id: str, month: Month | str) -> Statement | None:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": {"S": f"MONTH#{month}"}, "sk": {"S": f"STMT#{tenant_id}"}},
        ).get("Item")
        return Statement.model_validate(json.loads(item["body"]["S"])) if item else None

    def list_month(self, month: Month | str) -> list[Statement]:
        statements = [
            Statement.model_validate(json.loads(i["body"]["S"]))
            for i in items(
                self.client.query,
                TableName=self.table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :stmt)",
                ExpressionAttributeValues={":pk": {"S": f"MONTH#{month}"}, ":stmt": {"S": "STMT#"}},
            )
        ]
        return sorted(statements, key=lambda s: s.tenant_id)


def invoice_statement(client: Any, table: str, stripe_invoice_id: str) -> tuple[str, str] | None:
    """(tenant_id, month) of the invoice record holding this Stripe invoice id, through the
    ``STRIPEINV#`` index entry (the one lookup webhooks and invoicing share)."""
    page = client.query(
        TableName=table,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :p AND gsi1sk = :s",
        ExpressionAttributeValues={":p": {"S": f"STRIPEINV#{stripe_invoice_id}"}, ":s": {"S": "INVOICE"}},
    )
    for item in page.get("Items") or []:
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        tenant = item.get("tenant_id", {}).get("S") or sk.removeprefix("INVOICE#")
        month = item.get("month", {}).get("S") or pk.removeprefix("MONTH#")
        return tenant, month
    return None
