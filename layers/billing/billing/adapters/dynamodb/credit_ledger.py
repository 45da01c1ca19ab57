"""BillingTable items of the prepaid-credit ledger (billing.tenants.credits), append-only:

pk "CREDITS#{tenant_id}"  sk "GRANT#{grant_id}"                  a grant (JSON body), written once
                          (gsi1pk "CREDITGRANTS", gsi1sk "{tenant_id}#{grant_id}": which tenants hold grants)
pk "CREDITS#{tenant_id}"  sk "BURN#{statement_id}#{grant_id}"    what a statement burnt of a grant, written once
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, items, write_if
from billing.tenants.credits import CreditBurn, CreditGrant


class DynamoCreditLedger:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def add_grant(self, grant: CreditGrant) -> bool:
        return write_if(
            self.client.put_item,
            TableName=self.table,
            ConditionExpression="attribute_not_exists(pk)",
            Item={
                "pk": {"S": f"CREDITS#{grant.tenant_id}"},
                "sk": {"S": f"GRANT#{grant.grant_id}"},
                "gsi1pk": {"S": "CREDITGRANTS"},
                "gsi1sk": {"S": f"{grant.tenant_id}#{grant.grant_id}"},
                "tenant_id": {"S": grant.tenant_id},
                "body": {"S": grant.model_dump_json()},
            },
        )

    def get_grant(self, tenant_id: str, grant_id: str) -> CreditGrant | None:
        item = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"pk": {"S": f"CREDITS#{tenant_id}"}, "sk": {"S": f"GRANT#{grant_id}"}},
        ).get("Item")
        return CreditGrant.model_validate(json.loads(item["body"]["S"])) if item else None

    def entries(self, tenant_id: str) -> tuple[list[CreditGrant], list[CreditBurn]]:
        grants: list[CreditGrant] = []
        burns: list[CreditBurn] = []
        for item in items(
            self.client.query,
            TableName=self.table,
            ConsistentRead=True,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CREDITS#{tenant_id}"}},
        ):
            if item["sk"]["S"].startswith("GRANT#"):
                grants.append(CreditGrant.model_validate(json.loads(item["body"]["S"])))
            else:
                burns.append(
                    CreditBurn(
                        tenant_id=tenant_id,
                        grant_id=item["grant_id"]["S"],
                        statement_id=item["statement_id"]["S"],
                        amount=Decimal(item["amount"]["S"]),
                    )
                )
        return grants, burns

    def tenants_with_grants(self) -> set[str]:
        return {
            item["tenant_id"]["S"]
            for item in items(
                self.client.query,
                TableName=self.table,
                IndexName="gsi1",
                KeyConditionExpression="gsi1pk = :g",
                ExpressionAttributeValues={":g": {"S": "CREDITGRANTS"}},
            )
        }

    def add_burn(self, burn: CreditBurn) -> bool:
        return write_if(
            self.client.put_item,
            TableName=self.table,
            ConditionExpression="attribute_not_exists(pk)",
            Item={
                "pk": {"S": f"CREDITS#{burn.tenant_id}"},
                "sk": {"S": f"BURN#{burn.statement_id}#{burn.grant_id}"},
                "grant_id": {"S": burn.grant_id},
                "statement_id": {"S": burn.statement_id},
                "amount": {"S": f"{burn.amount:f}"},
            },
        )
