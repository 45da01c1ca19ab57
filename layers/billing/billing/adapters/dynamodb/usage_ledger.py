"""LedgerTable adapter: the exactly-once store of ingest (see billing.metering.exactly_once for the protocol).

LedgerTable  pk "EVT#{tenant}#{event_id}"    an event claim: batch_id, lease_until, counted month
             pk "BATCH#{batch_id}"           an ingest batch; committed once durably stored
             pk "RCPT#{tenant}#{YYYY-MM}#{batch_id}"  the ids a batch committed for a tenant's month,
                                             written just before its commit record; index "receipts"
                                             on ``period`` "RCPT#{tenant}#{YYYY-MM}" (the reconcile)
             pk "QUOTA#{tenant}#{YYYY-MM}"   a month's counters (atomic conditional ADD): ``used``, the
                                             accepted queries; ``limited:{metric}``, each hard-limited
                                             metric's sum of what the live counted claims carry
             pk "WEBHOOK#{stripe_event_id}"  a processed Stripe event (TTL; billing.adapters.dynamodb.dunning)

Requests per accepted batch of B events (q queries), nothing contended: ceil(q / 99) transactions
for the queries (counter + claims, 2 WRU per item), ceil((B - q) / 25) BatchExecuteStatements of
PartiQL INSERTs for the other claims (1 WRU each, sent in parallel), one PutItem commit. No reads:
conflicts come back as cancellation reasons, DuplicateItem or failed conditions and only then are
looked up.

Length: the claims, the counted claims and the quota counter are written in shared transactions
(a query's claim and its counter move together), so their item formats and conditions stay in one
class.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from billing.adapters.dynamodb.items import dynamodb_client, is_conditional_failure, put_versioned, to_item
from billing.metering.exactly_once import (
    MAX_COUNTED_PER_TRANSACTION,
    Claim,
    ClaimResult,
    ClaimsInterrupted,
    ClaimState,
    PeriodReceipt,
)
from billing.metering.hard_limits import ONE_QUERY, QUERIES, add_up, counted_marker, read_marker

TRANSACTION_CONFLICT_ATTEMPTS = 20
# Threads sending one process's claim requests in parallel (boto's connection pool holds 50): a
# batch's plain claims cost about one round trip, not one per request.
CLAIM_PUT_THREADS = 32
MAX_STATEMENTS_PER_BATCH = 25  # DynamoDB's limit for BatchExecuteStatement
STATEMENT_ATTEMPTS = 8
# statement errors of a BatchExecuteStatement that mean "the id is claimed already" (DynamoDB documents
# DuplicateItem for an INSERT of an existing key; a failed condition means the same)
CONFLICT_STATEMENT_ERRORS = frozenset({"DuplicateItem", "ConditionalCheckFailed"})
# statement errors of a BatchExecuteStatement that mean "not run, send it again"
RETRIED_STATEMENT_ERRORS = frozenset(
    {
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "TransactionConflict",
        "InternalServerError",
    }
)


_METRIC_PREFIX = "limited:"  # a metric counter's attribute on the QUOTA item: "limited:{metric}"


def _metric_attribute(metric: str) -> str:
    return f"{_METRIC_PREFIX}{metric}"


def metric_counters(item: dict[str, Any]) -> dict[str, Decimal]:
    """The metric counters (other than queries' ``used``) of a QUOTA item."""
    return {
        k.removeprefix(_METRIC_PREFIX): Decimal(v["N"])
        for k, v in item.items()
        if k.startswith(_METRIC_PREFIX)
    }


def _bounded(
    attribute: str, key: str, low: Decimal | int | None, high: Decimal | int | None, values: dict[str, Any]
) -> str:
    """``attribute`` between ``low`` and ``high`` (None: no bound); an absent counter is 0, which
    satisfies any upper bound and a lower bound only of 0 (a lower bound of 0 is no bound)."""
    bounds = []
    if low:
        bounds.append(f"{attribute} >= :{key}min")
        values[f":{key}min"] = {"N": f"{Decimal(low):f}"}
    if high is not None:
        bounds.append(f"{attribute} <= :{key}max")
        values[f":{key}max"] = {"N": f"{Decimal(high):f}"}
    if not bounds:
        return ""
    condition = " AND ".join(bounds)
    return condition if low else f"attribute_not_exists({attribute}) OR {condition}"


Bounds = tuple[Decimal | int | None, Decimal | int | None]  # (low, high) of a counter; None: no bound


def counter_update(
    table: str,
    tenant_id: str,
    window: str,
    amounts: Mapping[str, Decimal],
    bounds: Mapping[str, Bounds] | None = None,
    *,
    expires_at: int | None = None,
    keep_expiry: bool = False,
) -> dict[str, Any]:
    """The transaction item moving a tenant's window counters (pk "QUOTA#{tenant}#{window}"): ``ADD``
    each of ``amounts`` (metric -> amount; queries are ``used``, any other metric ``limited:{metric}``)
    and 1 to ``version``, on condition each counter in ``bounds`` is, before the move, between its
    (low, high) (``_bounded``: an absent counter is 0). ``expires_at`` (None: left as it is) is set,
    or only given to a counter that has none when ``keep_expiry``. A counter that fails its condition
    comes back whole (``ALL_OLD``) in the cancellation reason. Ingest, releases, voids and amends all
    build their counter move here, so the item's attributes and conditions have one definition."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {":one": {"N": "1"}}
    adds, conditions = [], []
    for i, metric in enumerate(sorted({*amounts, *(bounds or {})})):
        names[f"#c{i}"] = "used" if metric == QUERIES else _metric_attribute(metric)
        if metric in amounts:
            values[f":a{i}"] = {"N": f"{Decimal(amounts[metric]):f}"}
            adds.append(f"#c{i} :a{i}")
        if metric in (bounds or {}):
            low, high = (bounds or {})[metric]
            conditions.append(_bounded(f"#c{i}", f"c{i}", low, high, values))
    expression = f"ADD {', '.join([*adds, 'version :one'])}"
    if expires_at is not None:
        values[":exp"] = {"N": str(expires_at)}
        expression += " SET expires_at = " + ("if_not_exists(expires_at, :exp)" if keep_expiry else ":exp")
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": f"QUOTA#{tenant_id}#{window}"}},
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if any(conditions):
        update["ConditionExpression"] = " AND ".join(f"({c})" for c in conditions if c)
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": update}


def receipt_period(tenant_id: str, month: str) -> str:
    """The receipt index's partition value of a tenant's month."""
    return f"RCPT#{tenant_id}#{month}"


_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def _put_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(CLAIM_PUT_THREADS, thread_name_prefix="claim-put")
        return _pool


def _forget_pool() -> None:
    """A forked child has none of the parent's threads: it builds its own pool when it needs one."""
    global _pool, _pool_guard
    _pool, _pool_guard = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


class DynamoUsageLedger:
    """Exactly-once admission and exact quota counting without locks.

    Every claim is a conditional write, so two batches carrying the same event id cannot both hold
    it; a query's claim and its month's counter move in one transaction, the
    counter with ``ADD`` on condition ``used <= :max_used``, so concurrent batches never read,
    compare and retry the counter. A transaction DynamoDB cancels because another one touched the
    same item at the same moment (``TransactionConflict``, the counter is hot) is retried here with
    jitter; a cancellation for a failed condition is reported to the caller as a ``ClaimResult``.
    """

    def __init__(self, table: str, client: Any = None):
        self.table = table
        self.client = client or dynamodb_client()
        columns = "'pk': ?, 'batch_id': ?, 'expires_at': ?, 'lease_until': ?"
        # [without, with] the counted month; parameters are bound in this order
        self._insert_sql = (
            f'INSERT INTO "{table}" VALUE {{{columns}}}',
            f"INSERT INTO \"{table}\" VALUE {{{columns}, 'counted': ?}}",
        )

    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]:
        """The existing claim of each event id (absent ids are left out), with whether its batch
        committed, which month's quota it counts in and its lease. Strongly consistent reads."""
        existing = self._get_items([c.pk for c in claims])
        committed = self._committed_batches({i["batch_id"]["S"] for i in existing.values()})
        states: dict[Claim, ClaimState] = {}
        for c in claims:
            item = existing.get(c.pk)
            if item is not None:
                batch = item["batch_id"]["S"]
                counted = item.get("counted", {}).get("S")
                states[c] = ClaimState(
                    batch_id=batch,
                    committed=batch in committed,
                    counted_month=counted,
                    lease_until=float(item.get("lease_until", {}).get("N", "0")),
                )
        return states

    def claim(
        self,
        claims: Sequence[Claim],
        batch_id: str,
        expires_at: dict[Claim, int],
        *,
        lease_until: float,
        counted: dict[Claim, str] | None = None,
        previous: dict[Claim, str] | None = None,
    ) -> ClaimResult:
        """Claims that change no quota counter: events that are not queries, and queries whose quota
        an earlier (unanswered) request already counted (``counted``: claim -> month, kept). Each is
        written on its own condition at 1 WRU (a transaction would charge 2): a new claim is a
        PartiQL ``INSERT`` (it fails on an existing key), 25 to a ``BatchExecuteStatement``; a
        take-over (in ``previous``) is a ``PutItem`` on condition ``batch_id = previous[claim]``.
        The requests are sent in parallel and nothing needs them atomic together: a claim is its
        own exactly-once guard, and the batch commit record, not the claims, makes a batch's events
        count as stored. Conflicts are reported; if a request fails, every other one is still
        awaited and ``ClaimsInterrupted`` names the claims known written."""
        counted, previous = counted or {}, previous or {}
        fresh = [c for c in claims if c not in previous]
        taken = [c for c in claims if c in previous]

        def insert(chunk: Sequence[Claim]) -> dict[Claim, bool]:
            return self._insert_claims(chunk, batch_id, expires_at, counted, lease_until)

        def put(claim: Claim) -> dict[Claim, bool]:
            request = self._claim_put(
                claim, batch_id, expires_at[claim], counted.get(claim), lease_until, previous.get(claim)
            )["Put"]
            try:
                self.client.put_item(**request)
            except ClientError as exc:
                if is_conditional_failure(exc):
                    return {claim: False}
                raise
            return {claim: True}

        chunks = (
            fresh[i : i + MAX_STATEMENTS_PER_BATCH] for i in range(0, len(fresh), MAX_STATEMENTS_PER_BATCH)
        )
        requests: list[Callable[[], dict[Claim, bool]]] = [
            functools.partial(insert, chunk) for chunk in chunks
        ]
        requests += [functools.partial(put, c) for c in taken]
        futures: list[Future[dict[Claim, bool]]] = []
        if len(requests) > 1:
            pool = _put_pool()
            futures = [pool.submit(call) for call in requests[1:]]
        outcome: dict[Claim, bool] = {}
        errors: list[Exception] = []
        for index, call in enumerate(requests):
            try:  # every request is awaited before a failure is reported
                outcome.update(call() if index == 0 else futures[index - 1].result())
            except Exception as exc:
                errors.append(exc)
        written = frozenset(c for c, ok in outcome.items() if ok)
        if errors:
            raise ClaimsInterrupted(errors[0], written) from errors[0]
        conflicts = frozenset(c for c, ok in outcome.items() if not ok)
        return ClaimResult(written=not conflicts, conflicts=conflicts)

    def _insert_claims(
        self,
        claims: Sequence[Claim],
        batch_id: str,
        expires_at: dict[Claim, int],
        counted: dict[Claim, str],
        lease_until: float,
    ) -> dict[Claim, bool]:
        """One ``BatchExecuteStatement`` of at most 25 ``INSERT``s: claim -> written (False: the id
        is claimed already, ``DuplicateItem``). Statements DynamoDB did not run (throttled, a
        conflict, an internal error) are sent again with backoff; any other statement error raises.
        A statement retried after an internal error may have been applied the first time and then
        reports ``DuplicateItem``: ingest's conflict lookup finds such a claim held by its own
        batch and keeps it."""
        outcome: dict[Claim, bool] = {}
        pending = list(claims)
        for attempt in range(STATEMENT_ATTEMPTS):
            statements = []
            for c in pending:
                values = [
                    {"S": c.pk},
                    {"S": batch_id},
                    {"N": str(expires_at[c])},
                    {"N": str(int(lease_until))},
                ]
                month = counted.get(c)
                if month:
                    values.append({"S": month})
                statements.append({"Statement": self._insert_sql[bool(month)], "Parameters": values})
            responses = self.client.batch_execute_statement(Statements=statements)["Responses"]
            again = []
            for c, response in zip(pending, responses, strict=True):
                code = (response.get("Error") or {}).get("Code")
                if code is None:
                    outcome[c] = True
                elif code in CONFLICT_STATEMENT_ERRORS:
                    outcome[c] = False
                elif code in RETRIED_STATEMENT_ERRORS:
                    again.append(c)
                else:
                    raise ClientError(
                        {"Error": {"Code": code, "Message": response["Error"].get("Message", "")}},
                        "BatchExecuteStatement",
                    )
            if not again:
                return outcome
            pending = again
            time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))
        raise ClientError(
            {"Error": {"Code": "ThrottlingError", "Message": f"{len(pending)} claim inserts not run"}},
            "BatchExecuteStatement",
        )

    def claim_counted(
        self,
        tenant_id: str,
        month: str,
        claims: Sequence[Claim],
        batch_id: str,
        expires_at: dict[Claim, int],
        *,
        lease_until: float,
        max_used: int | None,
        min_used: int | None = None,
        counter_expires_at: int,
        previous: dict[Claim, str],
        amounts: dict[Claim, dict[str, Decimal]] | None = None,
        metric_bounds: dict[str, tuple[Decimal | None, Decimal | None]] | None = None,
    ) -> ClaimResult:
        """One transaction: the month's counters grow by the claims' ``amounts`` (None: each claim
        is one query) if ``used`` is between ``min_used`` and ``max_used`` and each metric counter
        within its ``metric_bounds`` (min, max) (None: no bound; an absent counter is 0), and every
        claim is written marked with what it counted (``counted_marker``). So an event is counted
        exactly when its claim says so: a crash can never leave one without the other.
        ``previous``: claim -> batch id of an uncommitted claim taken over. Not written: the
        conflicting claims, or the counters' values when one had no room (then re-decide, retry)."""
        assert 0 < len(claims) <= MAX_COUNTED_PER_TRANSACTION
        each = amounts if amounts is not None else {c: dict(ONE_QUERY) for c in claims}
        added = add_up([each[c] for c in claims])
        bounds: dict[str, Bounds] = {**(metric_bounds or {}), QUERIES: (min_used, max_used)}
        counter = counter_update(
            self.table,
            tenant_id,
            month,
            {QUERIES: added.pop(QUERIES, Decimal(0)), **added},
            bounds,
            expires_at=counter_expires_at,
        )
        markers = {c: counted_marker(month, each[c]) for c in claims}
        items = [counter] + [
            self._claim_put(c, batch_id, expires_at[c], markers[c], lease_until, previous.get(c))
            for c in claims
        ]
        return self._transact(items, claims, counter=True)

    def _claim_put(
        self,
        claim: Claim,
        batch_id: str,
        expires_at: int,
        counted: str | None,
        lease_until: float,
        previous: str | None,
    ) -> dict[str, Any]:
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": self._claim_item(claim, batch_id, expires_at, counted, lease_until),
        }
        if previous is not None:
            # still there and still held by it: a claim given back meanwhile (its counter moved) is a
            # conflict, never silently re-created as counted
            put["ConditionExpression"] = "batch_id = :prev"
            put["ExpressionAttributeValues"] = {":prev": {"S": previous}}
        else:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        return {"Put": put}

    def _transact(
        self, items: list[dict[str, Any]], claims: Sequence[Claim], *, counter: bool
    ) -> ClaimResult:
        """Run a transaction of (optionally) the counter followed by one Put per claim: all or nothing."""
        for attempt in range(TRANSACTION_CONFLICT_ATTEMPTS):
            try:
                self.client.transact_write_items(TransactItems=items)
                return ClaimResult(written=True)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons: list[Any] = list(exc.response.get("CancellationReasons") or [])
            codes = [r.get("Code", "None") for r in reasons]
            if "TransactionConflict" in codes and "ConditionalCheckFailed" not in codes:
                time.sleep(random.uniform(0, 0.01 * 2 ** min(attempt, 5)))
                continue
            used, counters = None, None
            offset = 1 if counter else 0
            if counter and codes and codes[0] == "ConditionalCheckFailed":
                item = reasons[0].get("Item", {})
                used = int(Decimal(item.get("used", {}).get("N", "0")))
                counters = metric_counters(item)
            conflicts = frozenset(
                claims[i - offset]
                for i, code in enumerate(codes)
                if i >= offset and code == "ConditionalCheckFailed"
            )
            if not reasons:  # a cancellation without reasons: treat every claim as contested
                conflicts = frozenset(claims)
            return ClaimResult(written=False, conflicts=conflicts, used=used, counters=counters)
        raise ClientError(
            {"Error": {"Code": "TransactionConflict", "Message": "ledger item too contended"}},
            "TransactWriteItems",
        )

    def release(
        self, claims: Sequence[Claim], batch_id: str, counted: dict[Claim, str] | None = None
    ) -> None:
        """Give claims back (their events were not stored). A counted claim is deleted in the same
        transaction that takes what it counted (its marker's amounts) off its month's counters, so
        the two never disagree."""
        counted = counted or {}
        plain = [c for c in claims if c not in counted]
        self._batch_write([{"DeleteRequest": {"Key": {"pk": {"S": c.pk}}}} for c in plain])
        groups: dict[tuple[str, str], list[Claim]] = defaultdict(list)
        for c in claims:
            if c in counted:
                groups[(c.tenant_id, read_marker(counted[c])[0])].append(c)
        for (tenant_id, month), group in sorted(groups.items()):
            for start in range(0, len(group), MAX_COUNTED_PER_TRANSACTION):
                chunk = group[start : start + MAX_COUNTED_PER_TRANSACTION]
                items: list[dict[str, Any]] = [
                    self.counter_give_back(
                        tenant_id, month, add_up([read_marker(counted[c])[1] for c in chunk])
                    )
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

    def counter_give_back(self, tenant_id: str, month: str, amounts: dict[str, Decimal]) -> dict[str, Any]:
        """The transaction item taking ``amounts`` (metric -> amount; queries: ``used``) off a
        tenant's month counters (a release, a void)."""
        negated = {metric: -amount for metric, amount in amounts.items()}
        return counter_update(self.table, tenant_id, month, {QUERIES: Decimal(0), **negated})

    def _claim_item(
        self, claim: Claim, batch_id: str, expires_at: int, counted: str | None, lease_until: float
    ) -> dict[str, Any]:
        item = {
            "pk": {"S": claim.pk},
            "batch_id": {"S": batch_id},
            "expires_at": {"N": str(expires_at)},
            "lease_until": {"N": str(int(lease_until))},
        }
        if counted:
            item["counted"] = {"S": counted}
        return item

    def stored(self, claims: Sequence[Claim]) -> set[Claim]:
        """The claims whose batch committed: those events are durably stored (final once true)."""
        return {c for c, state in self.lookup(claims).items() if state.committed}

    def commit_batch(
        self, batch_id: str, expires_at: int, *, receipts: Sequence[PeriodReceipt] = (), **attributes: Any
    ) -> None:
        """Mark every claim of this batch as durably stored (in ClickHouse or the fallback queue).
        The receipt index items (``receipts``: the ids committed per tenant and month, one PutItem
        each, in parallel) are written first, so that every committed id is indexed; an item of a batch that dies before its commit
        record is ignored by the reconcile, which keeps the items whose batch committed."""

        def put(receipt: PeriodReceipt) -> None:
            period = receipt_period(receipt.tenant_id, receipt.month)
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"{period}#{batch_id}"},
                    "period": {"S": period},
                    "batch_id": {"S": batch_id},
                    "event_ids": {"SS": list(receipt.event_ids)},
                    "expires_at": {"N": str(receipt.expires_at)},
                },
            )

        if len(receipts) == 1:  # the usual batch: one tenant, one month
            put(receipts[0])
        elif receipts:
            list(_put_pool().map(put, receipts))
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
    def metric_used(self, tenant_id: str, month: str) -> dict[str, Decimal]:
        """The month's counters of hard-limited metrics other than queries (absent: 0)."""
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"QUOTA#{tenant_id}#{month}"}}, ConsistentRead=True
        ).get("Item")
        return metric_counters(item or {})

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
        """Compare-and-set of the counter on its version, which every ingest change moves too (quota
        reconciliation, tests); False when another request moved it first. Ingest never calls it."""
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
