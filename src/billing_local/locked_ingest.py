"""Dev only: a per-tenant lease lock around ingest, the design the lock-free ledger is measured
against: ``bench/scale_model.py`` runs both designs in the same run.

In the lock design every batch takes ``LOCK#{tenant}`` (a conditional put with a 90 s lease, retried
with jittered backoff for up to 20 s, then 503) and held it through all of its ledger calls, the
ClickHouse insert and the commit. ``TenantLockedIngest`` wraps today's service in that lock, so the
lock is held exactly as long as a whole batch takes, plus the two reads the old ledger made under
it before writing: a consistent ``BatchGetItem`` of every claim of the batch and a ``GetItem`` of
each month's counter (their answers are not needed by today's service, which decides by
conditional writes; they are made for their round trips). The old design's claim writes were one
``BatchWriteItem`` where today's are one ``BatchExecuteStatement`` per 25 claims: the same one
round trip."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.dynamodb.items import is_conditional_failure
from billing.kernel.errors import ServiceUnavailable
from billing.kernel.periods import Month
from billing.metering.events import UsageEvent
from billing.metering.ingest import IngestResult, IngestService, Principal

LOCK_LEASE_SECONDS = 90
LOCK_WAIT_SECONDS = 20.0  # the old INGEST_LOCK_WAIT_SECONDS


class TenantLockedIngest:
    def __init__(
        self, service: IngestService, client: Any, table: str, wait_seconds: float = LOCK_WAIT_SECONDS
    ):
        self.service, self.client, self.table, self.wait_seconds = service, client, table, wait_seconds

    def ingest(self, events: Sequence[UsageEvent], principal: Principal | None = None) -> IngestResult:
        owner = f"{random.getrandbits(64):016x}"
        held: list[str] = []
        try:
            for tenant_id in sorted({e.tenant_id for e in events}):
                self._acquire(tenant_id, owner)
                held.append(tenant_id)
            self._old_reads(events)
            return self.service.ingest(events, principal)
        finally:
            for tenant_id in reversed(held):
                self._release(tenant_id, owner)

    def _old_reads(self, events: Sequence[UsageEvent]) -> None:
        keys = sorted({f"EVT#{e.tenant_id}#{e.event_id}" for e in events})
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{"pk": {"S": k}} for k in keys[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                request = self.client.batch_get_item(RequestItems=request).get("UnprocessedKeys") or {}
        for tenant_id, month in sorted(
            {(e.tenant_id, str(Month.of(e.timestamp))) for e in events if e.queries}
        ):
            self.client.get_item(
                TableName=self.table, Key={"pk": {"S": f"QUOTA#{tenant_id}#{month}"}}, ConsistentRead=True
            )

    def _acquire(self, tenant_id: str, owner: str) -> None:
        deadline = time.monotonic() + self.wait_seconds
        attempt = 0
        while True:
            now = time.time()
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "pk": {"S": f"LOCK#{tenant_id}"},
                        "owner": {"S": owner},
                        "lease_until": {"N": f"{now + LOCK_LEASE_SECONDS:.3f}"},
                        "expires_at": {"N": str(int(now) + 86_400)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR #o = :me",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":me": {"S": owner}},
                )
                return
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(
                    f"tenant {tenant_id} is busy with another batch; retry the request",
                    headers={"Retry-After": "1"},
                )
            attempt += 1
            time.sleep(random.uniform(0.005, min(0.25, 0.005 * 2 ** min(attempt, 6))))

    def _release(self, tenant_id: str, owner: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"pk": {"S": f"LOCK#{tenant_id}"}},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
