"""LedgerTable adapter: the exactly-once store of ingest (see billing.exactly_once for the protocol).

LedgerTable  pk "EVT#{tenant}#{event_id}"    an event claim: exactly-once admission
             pk "BATCH#{batch_id}"           an ingest batch; committed once durably stored
             pk "QUOTA#{tenant}#{YYYY-MM}"   accepted queries of a month (compare-and-set)
             pk "LOCK#{tenant}"              a tenant's ingest lease lock
             pk "WEBHOOK#{stripe_event_id}"  a processed Stripe event (TTL; billing.adapters.dunning_store)
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.dynamodb import dynamodb_client, is_conditional_failure, put_versioned, to_item
from billing.exactly_once import Claim, ClaimOutcome, TenantBusy


class UsageLedger:
    """Exactly-once admission and exact quota counting.

    Writers of one tenant's usage take turns: a lease lock per tenant (a conditional put) makes the
    read-classify-write of event claims and the quota counter race-free, while claims themselves go
    in with BatchWriteItem (25 per call) rather than one conditional put each. A lock whose holder
    died (its Lambda timed out) expires after LOCK_LEASE_SECONDS and is taken over; so are the claims
    that holder wrote but never committed, since nothing of them was acknowledged.
    """

    LOCK_LEASE_SECONDS = 90  # longer than the ingest Lambda timeout (30 s)

    def __init__(self, table: str, client: Any = None, *, lock_wait_seconds: float = 10.0):
        self.table = table
        self.client = client or dynamodb_client()
        self.lock_wait_seconds = lock_wait_seconds

    # -- per-tenant lease lock ------------------------------------------------------------------
    @contextmanager
    def locked(self, tenant_ids: Iterable[str], owner: str) -> Iterator[None]:
        """Hold every tenant's lock (taken in sorted order, so two batches cannot deadlock)."""
        held: list[str] = []
        try:
            for tenant_id in sorted(set(tenant_ids)):
                self._acquire(tenant_id, owner)
                held.append(tenant_id)
            yield
        finally:
            for tenant_id in reversed(held):
                self._release_lock(tenant_id, owner)

    def _acquire(self, tenant_id: str, owner: str) -> None:
        deadline = time.monotonic() + self.lock_wait_seconds
        attempt = 0
        while True:
            now = time.time()
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "pk": {"S": f"LOCK#{tenant_id}"},
                        "owner": {"S": owner},
                        "lease_until": {"N": f"{now + self.LOCK_LEASE_SECONDS:.3f}"},
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
                raise TenantBusy(tenant_id)
            attempt += 1
            time.sleep(random.uniform(0.005, min(0.25, 0.005 * 2 ** min(attempt, 6))))

    def _release_lock(self, tenant_id: str, owner: str) -> None:
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

    # -- event claims (caller holds the tenants' locks) ----------------------------------------
    def claim(self, claims: Sequence[Claim], batch_id: str, expires_at: dict[Claim, int]) -> ClaimOutcome:
        """Claim each event id for this batch. An id whose claiming batch committed is a duplicate;
        an uncommitted claim belongs to a request that died (we hold the lock) and is taken over."""
        stored = self.stored(claims)
        outcome = ClaimOutcome([c for c in claims if c not in stored], [c for c in claims if c in stored])
        self._batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            "pk": {"S": c.pk},
                            "batch_id": {"S": batch_id},
                            "expires_at": {"N": str(expires_at[c])},
                        }
                    }
                }
                for c in outcome.claimed
            ]
        )
        return outcome

    def stored(self, claims: Sequence[Claim]) -> set[Claim]:
        """The claims whose batch committed: those events are durably stored. Final once true, so
        reading it needs no lock."""
        existing = self._get_items([c.pk for c in claims])
        committed = self._committed_batches({i["batch_id"]["S"] for i in existing.values()})
        return {c for c in claims if c.pk in existing and existing[c.pk]["batch_id"]["S"] in committed}

    def release(self, claims: Sequence[Claim], batch_id: str) -> None:
        """Give claims back (their events were not stored); the caller still holds the locks."""
        self._batch_write([{"DeleteRequest": {"Key": {"pk": {"S": c.pk}}}} for c in claims])

    def commit_batch(self, batch_id: str, expires_at: int, **attributes: Any) -> None:
        """Mark every claim of this batch as durably stored (in ClickHouse or the fallback queue)."""
        self.client.put_item(
            TableName=self.table,
            Item=to_item(
                {"pk": f"BATCH#{batch_id}", "committed": True, "expires_at": expires_at, **attributes}
            ),
        )

    def _committed_batches(self, batch_ids: set[str]) -> set[str]:
        items = self._get_items([f"BATCH#{b}" for b in batch_ids])
        return {pk.removeprefix("BATCH#") for pk in items}

    def _get_items(self, pks: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = sorted(set(pks))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{"pk": {"S": pk}} for pk in unique[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.table, []):
                    found[item["pk"]["S"]] = item
                request = response.get("UnprocessedKeys") or {}
        return found

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: requests[start : start + 25]}
            attempt = 0
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if pending:
                    attempt += 1
                    time.sleep(min(1.0, 0.01 * 2**attempt))

    # -- quota counters -------------------------------------------------------------------------
    def quota_used(self, tenant_id: str, month: str) -> tuple[int, int | None]:
        """(used, version) of a tenant's month counter; version None when no counter exists yet."""
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"QUOTA#{tenant_id}#{month}"}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return 0, None
        return int(item["used"]["N"]), int(item["version"]["N"])

    def quota_set(
        self, tenant_id: str, month: str, used: int, expected_version: int | None, expires_at: int
    ) -> bool:
        """Compare-and-set of the counter; False when another request moved it first."""
        pk = f"QUOTA#{tenant_id}#{month}"
        new_version = (expected_version or 0) + 1
        item = {
            "pk": {"S": pk},
            "used": {"N": str(used)},
            "version": {"N": str(new_version)},
            "expires_at": {"N": str(expires_at)},
        }
        return put_versioned(
            self.client, self.table, item, None if expected_version is None else expected_version
        )

    def quota_give_back(self, tenant_id: str, month: str, count: int) -> None:
        """Return admitted queries that were not stored after all (the request failed with 503)."""
        if count <= 0:
            return
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"QUOTA#{tenant_id}#{month}"}},
            UpdateExpression="ADD used :neg, version :one",
            ExpressionAttributeValues={":neg": {"N": str(-count)}, ":one": {"N": "1"}},
        )
