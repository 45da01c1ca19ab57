"""Dev only: count DynamoDB requests and request units as a botocore client sends them, and add a
network round trip to each call (benches; production never imports this).

Units follow DynamoDB's on-demand rules for items under 1 KB (every ledger item is): a write is 1
write request unit (WRU) per item, 2 inside TransactWriteItems; a strongly consistent read is 1
read request unit (RRU) per item, an eventually consistent one 0.5, 2 inside TransactGetItems.
Counted as sent: a write whose condition fails is charged like one that succeeds, and a cancelled
transaction is counted as if it had written (an upper bound)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    requests: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0

    def minus(self, other: Usage) -> Usage:
        return Usage(self.requests - other.requests, self.wru - other.wru, self.rru - other.rru)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


def units(operation: str, params: dict[str, Any]) -> tuple[float, float]:
    """(WRU, RRU) of one request."""
    consistent = 1.0 if params.get("ConsistentRead") else 0.5
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return 1.0, 0.0
    if operation == "BatchWriteItem":
        return float(sum(len(v) for v in params.get("RequestItems", {}).values())), 0.0
    if operation == "TransactWriteItems":
        return 2.0 * len(params.get("TransactItems", [])), 0.0
    if operation == "BatchExecuteStatement":  # PartiQL: each statement as its DynamoDB operation
        statements = [s["Statement"].lstrip()[:6].upper() for s in params.get("Statements", [])]
        writes = sum(1 for verb in statements if verb in ("INSERT", "UPDATE", "DELETE"))
        return float(writes), 0.5 * (len(statements) - writes)
    if operation == "GetItem":
        return 0.0, consistent
    if operation == "BatchGetItem":
        reads = 0.0
        for request in params.get("RequestItems", {}).values():
            reads += len(request.get("Keys", [])) * (1.0 if request.get("ConsistentRead") else 0.5)
        return 0.0, reads
    if operation == "TransactGetItems":
        return 0.0, 2.0 * len(params.get("TransactItems", []))
    return 0.0, 0.0


class DynamoMeter:
    """Registered on a botocore DynamoDB client: counts every request it makes (per operation) and
    its units, and sleeps ``round_trip_s`` before each send (the network and service time a
    deployed Lambda sees; moto answers in-region-fast otherwise)."""

    def __init__(self, round_trip_s: float = 0.0):
        self.round_trip_s = round_trip_s
        self._lock = threading.Lock()
        self.usage = Usage()

    def attach(self, client: Any) -> DynamoMeter:
        client.meta.events.register("provide-client-params.dynamodb", self._count)
        client.meta.events.register("before-send.dynamodb", self._delay)
        return self

    def _count(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        wru, rru = units(model.name, params)
        with self._lock:
            self.usage.requests[model.name] += 1
            self.usage.wru += wru
            self.usage.rru += rru

    def _delay(self, **_: Any) -> None:
        if self.round_trip_s > 0:
            time.sleep(self.round_trip_s)

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(Counter(self.usage.requests), self.usage.wru, self.usage.rru)
