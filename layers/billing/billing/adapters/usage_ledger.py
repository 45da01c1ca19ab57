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
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.dynamodb import (
    dynamodb_client,
    is_conditional_failure,
    put_versioned,
    to_item,
    write_if,
)
from billing.exactly_once import MAX_COUNTED_PER_TRANSACTION, Claim, ClaimState, TenantBusy


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
        write_if(  # False: the lease expired and another batch owns the lock now
            self.client.delete_item,
            TableName=self.table,
            Key={"pk": {"S": f"LOCK#{tenant_id}"}},
            ConditionExpression="#o = :me",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":me": {"S": owner}},
        )

    # -- event claims (caller holds the tenants' locks) ----------------------------------------
    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]:
        """The existing claim of each event id (absent ids are left out), with whether its batch
        committed and which month's quota it counts in. Committed is final, so reading it needs no lock."""
        existing = self._get_items([c.pk for c in claims])
        committed = self._committed_batches({i["batch_id"]["S"] for i in existing.values()})
        states: dict[Claim, ClaimState] = {}
        for c in claims:
            item = existing.get(c.pk)
            if item is not None:
                batch = item["batch_id"]["S"]
                counted = item.get("counted", {}).get("S")
                states[c] = ClaimState(batch_id=batch, committed=batch in committed, counted_month=counted)
        return states

    def claim(
        self,
        claims: Sequence[Claim],
        batch_id: str,
        expires_at: dict[Claim, int],
        counted: dict[Claim, str] | None = None,
    ) -> None:
        """Write claims that change no quota counter: events that are not queries, and queries whose
        quota an earlier (unanswered) request already counted (``counted``: claim -> month, kept)."""
        counted = counted or {}
        self._batch_write(
            [
                {"PutRequest": {"Item": self._claim_item(c, batch_id, expires_at[c], counted.get(c))}}
                for c in claims
            ]
        )

    def claim_counted(
        self,
        tenant_id: str,
        month: str,
        claims: Sequence[Claim],
        batch_id: str,
        expires_at: dict[Claim, int],
        *,
        used_after: int,
        expected_version: int | None,
        counter_expires_at: int,
        previous: dict[Claim, str],
    ) -> bool:
        """One transaction: the month's counter moves to ``used_after`` (compare-and-set on its
        version) and every claim is written marked as counted in it. So a query is counted exactly
        when its claim says so: a crash can never leave one without the other (at most
        ``MAX_COUNTED_PER_TRANSACTION`` claims). ``previous``: claim -> batch id of an uncommitted claim
        taken over. False when the counter or a claim moved first (re-read and try again)."""
        assert len(claims) <= MAX_COUNTED_PER_TRANSACTION
        new_version = (expected_version or 0) + 1
        counter: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"pk": {"S": f"QUOTA#{tenant_id}#{month}"}},
            "UpdateExpression": "SET used = :used, version = :nv, expires_at = :exp",
            "ExpressionAttributeValues": {
                ":used": {"N": str(used_after)},
                ":nv": {"N": str(new_version)},
                ":exp": {"N": str(counter_expires_at)},
            },
        }
        if expected_version is None:
            counter["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            counter["ConditionExpression"] = "version = :v"
            counter["ExpressionAttributeValues"][":v"] = {"N": str(expected_version)}
        items: list[dict[str, Any]] = [{"Update": counter}]
        for c in claims:
            put: dict[str, Any] = {
                "TableName": self.table,
                "Item": self._claim_item(c, batch_id, expires_at[c], month),
            }
            if c in previous:
                put["ConditionExpression"] = "attribute_not_exists(pk) OR batch_id = :prev"
                put["ExpressionAttributeValues"] = {":prev": {"S": previous[c]}}
            else:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            items.append({"Put": put})
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                return False
            raise
        return True

    def release(
        self, claims: Sequence[Claim], batch_id: str, counted: dict[Claim, str] | None = None
    ) -> None:
        """Give claims back (their events were not stored). A counted claim is deleted in the same
        transaction that takes its query off its month's counter, so the two never disagree."""
        counted = counted or {}
        plain = [c for c in claims if c not in counted]
        self._batch_write([{"DeleteRequest": {"Key": {"pk": {"S": c.pk}}}} for c in plain])
        groups: dict[tuple[str, str], list[Claim]] = defaultdict(list)
        for c in claims:
            if c in counted:
                groups[(c.tenant_id, counted[c])].append(c)
        for (tenant_id, month), group in sorted(groups.items()):
            for start in range(0, len(group), MAX_COUNTED_PER_TRANSACTION):
                chunk = group[start : start + MAX_COUNTED_PER_TRANSACTION]
                items: list[dict[str, Any]] = [
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": f"QUOTA#{tenant_id}#{month}"}},
                            "UpdateExpression": "ADD used :neg, version :one",
                            "ExpressionAttributeValues": {
                                ":neg": {"N": str(-len(chunk))},
                                ":one": {"N": "1"},
                            },
                        }
                    }
                ]
                items += [
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": c.pk}},
                            "ConditionExpression": "batch_id = :me",
                            "ExpressionAttributeValues": {":me": {"S": batch_id}},
                        }
                    }
                    for c in chunk
                ]
                self.client.transact_write_items(TransactItems=items)

    def _claim_item(
        self, claim: Claim, batch_id: str, expires_at: int, counted: str | None
    ) -> dict[str, Any]:
        item = {"pk": {"S": claim.pk}, "batch_id": {"S": batch_id}, "expires_at": {"N": str(expires_at)}}
        if counted:
            item["counted"] = {"S": counted}
        return item

    def stored(self, claims: Sequence[Claim]) -> set[Claim]:
        """The claims whose batch committed: those events are durably stored. Final once true, so
        reading it needs no lock."""
        return {c for c, state in self.lookup(claims).items() if state.committed}

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
