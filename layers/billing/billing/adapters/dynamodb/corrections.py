"""The corrections' exactly-once records in the LedgerTable (billing.metering.corrections).

LedgerTable  pk "CORR#{tenant}#{correction_id}"   a correction id: its request digest, its event, applied
             pk "EVTCORR#{tenant}#{event_id}"     an event's corrections: version, current row, trail,
                                                  the plan pending (begun, not yet recorded)
             pk "QUOTA#{tenant}#{YYYY-MM}"        the month's query counter (billing.adapters.dynamodb.usage_ledger)

Plans and rows are kept as JSON text (numbers as text), so a cost or a property number comes back
digit for digit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.dynamodb.items import dynamodb_client
from billing.adapters.dynamodb.usage_ledger import Bounds, DynamoUsageLedger, counter_update, metric_counters
from billing.metering.corrections import CorrectionRecord, EventState, OverHardLimit, Plan
from billing.metering.hard_limits import read_marker


def _record(item: dict[str, Any]) -> CorrectionRecord:
    return CorrectionRecord(
        event_id=item["event_id"]["S"],
        digest=item["digest"]["S"],
        applied=item["applied"]["BOOL"],
        entry=json.loads(item["entry"]["S"]),
    )


def _state(item: dict[str, Any]) -> EventState:
    pending = item.get("pending", {}).get("S")
    current = item.get("current", {}).get("S")
    return EventState(
        version=int(item["version"]["N"]),
        current=json.loads(current) if current else None,
        trail=json.loads(item.get("trail", {}).get("S", "[]")),
        pending=Plan.from_json(json.loads(pending)) if pending else None,
        voided=item.get("voided", {}).get("BOOL", False),
    )


def _cancelled_for_condition(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons


class DynamoCorrectionLedger:
    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()

    def _get(self, pk: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True
        ).get("Item")
        return item

    def record(self, tenant_id: str, correction_id: str) -> CorrectionRecord | None:
        item = self._get(f"CORR#{tenant_id}#{correction_id}")
        return None if item is None else _record(item)

    def records(self, tenant_id: str, correction_ids: Sequence[str]) -> dict[str, CorrectionRecord]:
        """The records of those correction ids that have one (strongly consistent BatchGetItems)."""
        prefix = f"CORR#{tenant_id}#"
        found = DynamoUsageLedger(self.table, self.client)._get_items([prefix + c for c in correction_ids])
        return {pk.removeprefix(prefix): _record(item) for pk, item in found.items()}

    def state(self, tenant_id: str, event_id: str) -> EventState | None:
        item = self._get(f"EVTCORR#{tenant_id}#{event_id}")
        return None if item is None else _state(item)

    def states(self, tenant_id: str, event_ids: Sequence[str]) -> dict[str, EventState]:
        """The records of those events that have one (strongly consistent BatchGetItems)."""
        prefix = f"EVTCORR#{tenant_id}#"
        found = DynamoUsageLedger(self.table, self.client)._get_items([prefix + e for e in event_ids])
        return {pk.removeprefix(prefix): _state(item) for pk, item in found.items()}

    def _recount_items(self, plan: Plan, expires_at: int) -> list[dict[str, Any]]:
        """An amend's counter moves (each that grows within its limit) and its claim's new marker."""
        if plan.recount is None:
            return []
        recount = plan.recount
        moves = {metric: Decimal(move) for metric, move in recount["moves"].items()}
        # room for each move: the counter (absent: 0) plus it stays within the limit
        room: dict[str, Bounds] = {
            metric: (None, Decimal(limit) - moves[metric]) for metric, limit in recount["limits"].items()
        }
        counter = counter_update(
            self.table, plan.tenant_id, recount["key"], moves, room, expires_at=expires_at, keep_expiry=True
        )
        claim: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": f"EVT#{plan.tenant_id}#{plan.event_id}"}},
            "UpdateExpression": "REMOVE counted",
        }
        if recount["marker"] is not None:
            claim["UpdateExpression"] = "SET counted = :m, expires_at = if_not_exists(expires_at, :exp)"
            claim["ExpressionAttributeValues"] = {
                ":m": {"S": recount["marker"]},
                ":exp": {"N": str(expires_at)},
            }
        return [counter, {"Update": claim}]

    def _over_limit(self, plan: Plan, exc: ClientError) -> OverHardLimit | None:
        """The refusal when the transaction failed on the counter's room (its third item)."""
        reasons: list[Any] = list(exc.response.get("CancellationReasons") or [])
        codes = [r.get("Code") for r in reasons]
        if (
            plan.recount is None
            or codes[2:3] != ["ConditionalCheckFailed"]
            or "ConditionalCheckFailed" in codes[:2]
        ):
            return None  # the id taken or another correction first: that answer comes before room
        item: dict[str, Any] = reasons[2].get("Item", {})
        used = {**metric_counters(item), "queries": Decimal(item.get("used", {}).get("N", "0"))}
        for metric, limit in sorted(plan.recount["limits"].items()):
            after = used.get(metric, Decimal(0)) + Decimal(plan.recount["moves"][metric])
            if after > Decimal(limit):
                return OverHardLimit(
                    f"amending event {plan.event_id!r} would take {metric} to {after:f}, past its hard "
                    f"limit of {limit} for {plan.recount['key']}; nothing was changed",
                    details=[{"field": "values", "metric": metric, "limit": limit}],
                )
        return None

    def begin(self, plan: Plan, expected_version: int, expires_at: int) -> bool:
        event_pk = f"EVTCORR#{plan.tenant_id}#{plan.event_id}"
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": {"S": f"CORR#{plan.tenant_id}#{plan.correction_id}"},
                                "event_id": {"S": plan.event_id},
                                "digest": {"S": plan.digest},
                                "applied": {"BOOL": False},
                                "entry": {"S": json.dumps(plan.entry())},
                                "expires_at": {"N": str(expires_at)},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": event_pk}},
                            "UpdateExpression": "SET pending = :plan, pending_id = :cid, "
                            "version = if_not_exists(version, :zero), expires_at = :exp",
                            "ConditionExpression": "attribute_not_exists(pending) AND "
                            "(attribute_not_exists(pk) OR version = :v)",
                            "ExpressionAttributeValues": {
                                ":plan": {"S": json.dumps(plan.to_json())},
                                ":cid": {"S": plan.correction_id},
                                ":zero": {"N": "0"},
                                ":v": {"N": str(expected_version)},
                                ":exp": {"N": str(expires_at)},
                            },
                        }
                    },
                    *self._recount_items(plan, expires_at),
                ]
            )
        except ClientError as exc:
            if (refusal := self._over_limit(plan, exc)) is not None:
                raise refusal from None
            if _cancelled_for_condition(exc):
                return False
            raise
        return True

    def commit(self, plan: Plan, expected_version: int, quota_counted: bool) -> bool:
        event_pk = f"EVTCORR#{plan.tenant_id}#{plan.event_id}"
        state = self.state(plan.tenant_id, plan.event_id)
        if state is None or state.pending is None or state.pending.correction_id != plan.correction_id:
            return False
        trail = [*state.trail, plan.entry()]
        values: dict[str, Any] = {
            ":v": {"N": str(expected_version)},
            ":next": {"N": str(expected_version + 1)},
            ":trail": {"S": json.dumps(trail)},
            ":cid": {"S": plan.correction_id},
            ":voided": {"BOOL": plan.after is None},
        }
        update = "SET version = :next, trail = :trail, voided = :voided REMOVE pending, pending_id"
        if plan.after is not None:
            update = "SET version = :next, trail = :trail, voided = :voided, #current = :current REMOVE pending, pending_id"
            values[":current"] = {"S": json.dumps(plan.after)}
        else:
            update += ", #current"
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": event_pk}},
                    "UpdateExpression": update,
                    "ConditionExpression": "version = :v AND pending_id = :cid",
                    "ExpressionAttributeNames": {"#current": "current"},
                    "ExpressionAttributeValues": values,
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": {"pk": {"S": f"CORR#{plan.tenant_id}#{plan.correction_id}"}},
                    "UpdateExpression": "SET applied = :yes",
                    "ConditionExpression": "applied = :no",
                    "ExpressionAttributeValues": {":yes": {"BOOL": True}, ":no": {"BOOL": False}},
                }
            },
        ]
        if quota_counted and plan.quota_month is not None:
            month, amounts = read_marker(plan.quota_month)
            give_back = DynamoUsageLedger(self.table, self.client).counter_give_back(
                plan.tenant_id, month, amounts
            )
            give_back["Update"]["ConditionExpression"] = "attribute_exists(pk)"
            items.append(give_back)
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if _cancelled_for_condition(exc):
                return False
            raise
        return True

    def counted(self, tenant_id: str, event_id: str) -> str | None:
        item = self._get(f"EVT#{tenant_id}#{event_id}")
        return None if item is None else item.get("counted", {}).get("S")

    def quota_exists(self, tenant_id: str, month: str) -> bool:
        return self._get(f"QUOTA#{tenant_id}#{month}") is not None
