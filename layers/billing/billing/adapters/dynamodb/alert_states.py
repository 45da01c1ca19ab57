"""BillingTable items of alert states (billing.alerts.evaluation.AlertStates):

pk "ALERTS#{tenant_id}"  sk "{period}#{alert_id}#{threshold}"   one threshold's state: active or
                                                                resolved, its occurrence, JSON body

Kept ``RETENTION_DAYS`` after the period ends (TTL ``expires_at``). ``fire`` and ``resolve`` are
conditional UpdateItems: fire only when absent or resolved (then occurrence + 1), resolve only when
active with the same occurrence.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.adapters.dynamodb.items import dynamodb_client, items, write_if
from billing.alerts.evaluation import AlertState
from billing.kernel.periods import Month, parse_instant

RETENTION_DAYS = 400


def _key(state: AlertState) -> dict[str, Any]:
    return {
        "pk": {"S": f"ALERTS#{state.tenant_id}"},
        "sk": {"S": f"{state.period}#{state.alert_id}#{state.threshold}"},
    }


def _period_end(key: str) -> datetime:
    """The end of the period named ``key``: ``YYYY-MM`` (a UTC month) or ``{start}/{end}`` (a
    tenant's own period, billing.kernel.calendar.Period.key)."""
    if "/" in key:
        return parse_instant(key.split("/", 1)[1])
    return Month.parse(key).end


def _body(state: AlertState) -> str:
    return json.dumps(state.to_json())


def _state(body: str) -> AlertState:
    d = json.loads(body)
    return AlertState(
        tenant_id=d["tenant_id"],
        period=d["period"],
        alert_id=d["alert_id"],
        threshold=d["threshold"],
        metric=d["metric"],
        state=d["state"],
        occurrence=int(d["occurrence"]),
        value=Decimal(d["value"]),
        level=Decimal(d["level"]),
        fired_at=parse_instant(d["fired_at"]),
        resolved_at=parse_instant(d["resolved_at"]) if d.get("resolved_at") else None,
    )


class DynamoAlertStates:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def fire(self, state: AlertState) -> AlertState | None:
        for _attempt in range(5):
            item = self.client.get_item(TableName=self.table, ConsistentRead=True, Key=_key(state)).get(
                "Item"
            )
            if item is not None and item["state"]["S"] == "active":
                return None
            last = int(item["occurrence"]["N"]) if item is not None else 0
            fired = replace(state, state="active", occurrence=last + 1, resolved_at=None)
            expires = int((_period_end(state.period) + timedelta(days=RETENTION_DAYS)).timestamp())
            written = write_if(
                self.client.put_item,
                TableName=self.table,
                Item={
                    **_key(state),
                    "state": {"S": "active"},
                    "occurrence": {"N": str(fired.occurrence)},
                    "body": {"S": _body(fired)},
                    "expires_at": {"N": str(expires)},
                },
                # absent, or resolved at the very occurrence read: one of many evaluators wins
                ConditionExpression="attribute_not_exists(pk)"
                if item is None
                else "#s = :resolved AND occurrence = :last",
                **(
                    {
                        "ExpressionAttributeNames": {"#s": "state"},
                        "ExpressionAttributeValues": {
                            ":resolved": {"S": "resolved"},
                            ":last": {"N": str(last)},
                        },
                    }
                    if item is not None
                    else {}
                ),
            )
            if written:
                return fired
        return None

    def resolve(self, state: AlertState, at: datetime, value: Decimal) -> AlertState | None:
        resolved = replace(state, state="resolved", resolved_at=at, value=value)
        written = write_if(
            self.client.update_item,
            TableName=self.table,
            Key=_key(state),
            UpdateExpression="SET #s = :resolved, body = :body",
            ConditionExpression="#s = :active AND occurrence = :occurrence",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":resolved": {"S": "resolved"},
                ":active": {"S": "active"},
                ":occurrence": {"N": str(state.occurrence)},
                ":body": {"S": _body(resolved)},
            },
        )
        return resolved if written else None

    def of_period(self, tenant_id: str, period: str) -> list[AlertState]:
        return [
            _state(item["body"]["S"])
            for item in items(
                self.client.query,
                TableName=self.table,
                ConsistentRead=True,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :period)",
                ExpressionAttributeValues={
                    ":pk": {"S": f"ALERTS#{tenant_id}"},
                    ":period": {"S": f"{period}#"},
                },
            )
        ]
