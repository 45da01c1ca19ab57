"""In-memory implementations of the stores the domain declares, for ``billing simulate`` (dev only).

Each class implements a protocol of the domain with the same observable rules as its DynamoDB, SQS or
S3 adapter, so the production ingest service, quota logic, rater and close run on them unchanged:

- ``MemoryLedger``: ``billing.metering.exactly_once.UsageLedger`` (claims committed by their batch,
  conditional claim writes, bounded quota counters);
- ``MemoryTenants``: ``billing.tenants.tenant.TenantStore`` (records round-trip through their JSON form as
  they do through DynamoDB; ``save`` is optimistic and fails with the conditional-check error
  ``container.is_conflict`` recognises);
- ``MemoryPeriods``, ``MemoryStatements``, ``MemoryJobs``, ``MemoryArchive``, ``MemoryQueue``: the
  close's periods (first close wins), statements (stored once, as JSON), invoicing jobs (sent once),
  CSV archive (unchanged bytes not rewritten) and the fallback queue (its depth guards the close);
- ``MemoryCredits``: ``billing.tenants.credits.CreditLedger`` (grants and burns append-only, each written
  once; entries read back in the adapter's key order, grants through their JSON form);
- ``BlockStore``: the ingest ``Store`` in front of ClickHouse, handing the production adapter's
  ``insert_events`` blocks of ``block_rows`` rows instead of one SQS-sized block per call.

Nothing expires (claims and counters live as long as the simulation) and nothing is shared between
processes: one instance set is one simulated account.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from botocore.exceptions import ClientError

from billing.kernel.periods import Month, iso, parse_instant
from billing.metering.events import StoredEvent
from billing.metering.exactly_once import (
    MAX_COUNTED_PER_TRANSACTION,
    Claim,
    ClaimResult,
    ClaimState,
)
from billing.metering.hard_limits import ONE_QUERY, QUERIES, add_up, counted_marker, read_marker
from billing.statements.statement import Statement
from billing.tenants.credits import CreditBurn, CreditGrant
from billing.tenants.tenant import Tenant


def _transaction_canceled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}},
        "TransactWriteItems",
    )


def _conditional_failure(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}},
        operation,
    )


class MemoryLedger:
    """``billing.metering.exactly_once.UsageLedger`` in memory, with the DynamoDB adapter's rules (no locks): a
    claim is written only if absent or still held by the batch named in ``previous``, each on its
    own (``claim`` writes every claim but the conflicting ones); ``claim_counted`` grows the month's counter by the claims if
    it is within the bounds and writes them marked counted, all or nothing; a claim is a duplicate
    once its batch committed; ``release`` takes counted claims off their counter as it deletes them."""

    def __init__(self) -> None:
        # claim -> (batch id, counted month, lease until)
        self._claims: dict[Claim, tuple[str, str | None, float]] = {}
        self._committed: set[str] = set()
        self._quota: dict[tuple[str, str], tuple[int, int]] = {}  # (tenant, month) -> (used, version)
        # (tenant, month) -> hard-limited metric -> its counter (billing.metering.hard_limits)
        self._metrics: dict[tuple[str, str], dict[str, Decimal]] = {}
        self._guard = threading.RLock()

    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]:
        found: dict[Claim, ClaimState] = {}
        for claim in claims:
            existing = self._claims.get(claim)
            if existing is not None:
                batch, month, lease = existing
                found[claim] = ClaimState(batch, batch in self._committed, month, lease)
        return found

    def _conflicts(self, claims: Sequence[Claim], previous: dict[Claim, str]) -> set[Claim]:
        conflicts = set()
        for claim in claims:
            existing = self._claims.get(claim)
            # absent: a conflict only for a take-over (given back meanwhile); present: unless held
            # by the batch it is taken over from
            if (claim in previous) if existing is None else existing[0] != previous.get(claim):
                conflicts.add(claim)
        return conflicts

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
        counted, previous = counted or {}, previous or {}
        with self._guard:
            conflicts = self._conflicts(claims, previous)
            for claim in claims:
                if claim not in conflicts:
                    self._claims[claim] = (batch_id, counted.get(claim), lease_until)
        return ClaimResult(written=not conflicts, conflicts=frozenset(conflicts))

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
        assert 0 < len(claims) <= MAX_COUNTED_PER_TRANSACTION
        each = amounts if amounts is not None else {c: dict(ONE_QUERY) for c in claims}
        with self._guard:
            used, version = self._quota.get((tenant_id, month), (0, 0))
            counters = self._metrics.setdefault((tenant_id, month), {})
            no_room = bool(min_used and used < min_used) or (max_used is not None and used > max_used)
            for metric, (low, high) in (metric_bounds or {}).items():
                held = counters.get(metric, Decimal(0))
                no_room |= bool(low and held < low) or (high is not None and held > high)
            conflicts = self._conflicts(claims, previous)
            if no_room or conflicts:
                return ClaimResult(
                    False,
                    frozenset(conflicts),
                    used if no_room else None,
                    dict(counters) if no_room else None,
                )
            added = add_up(each[c] for c in claims)
            self._quota[(tenant_id, month)] = (used + int(added.pop(QUERIES, 0)), version + 1)
            for metric, amount in added.items():
                counters[metric] = counters.get(metric, Decimal(0)) + amount
            for claim in claims:
                self._claims[claim] = (batch_id, counted_marker(month, each[claim]), lease_until)
            return ClaimResult(written=True)

    def stored(self, claims: Sequence[Claim]) -> set[Claim]:
        return {c for c, state in self.lookup(claims).items() if state.committed}

    def release(
        self, claims: Sequence[Claim], batch_id: str, counted: dict[Claim, str] | None = None
    ) -> None:
        counted = counted or {}
        with self._guard:
            owned = [c for c in claims if c in counted]
            if any(self._claims.get(c, ("",))[0] != batch_id for c in owned):
                raise _transaction_canceled()
            for claim in claims:
                self._claims.pop(claim, None)
            for claim in owned:
                month, amounts = read_marker(counted[claim])
                key = (claim.tenant_id, month)
                used, version = self._quota.get(key, (0, 0))
                self._quota[key] = (used - int(amounts.pop(QUERIES, 0)), version + 1)
                counters = self._metrics.setdefault(key, {})
                for metric, amount in amounts.items():
                    counters[metric] = counters.get(metric, Decimal(0)) - amount

    def commit_batch(self, batch_id: str, expires_at: int, **attributes: Any) -> None:
        self._committed.add(batch_id)

    def forget_claims(self) -> None:
        """Drop every claim and commit record; the quota counters stay. A simulation calls it after
        each tenant's last batch: claims are per tenant and no later batch carries that tenant's
        ids, so they are never read again, and a month's million claims need not be kept (they
        were most of a worker's memory, and a dict that size slows every claim lookup)."""
        with self._guard:
            self._claims.clear()
            self._committed.clear()

    def metric_used(self, tenant_id: str, month: str) -> dict[str, Decimal]:
        return dict(self._metrics.get((tenant_id, month), {}))

    def quota_used(self, tenant_id: str, month: str) -> tuple[int, int | None]:
        found = self._quota.get((tenant_id, month))
        return (0, None) if found is None else found

    def quota_set(
        self, tenant_id: str, month: str, used: int, expected_version: int | None, expires_at: int
    ) -> bool:
        """The reconcile's compare-and-set of a counter (``billing.metering.quotas.QuotaCounters``)."""
        with self._guard:
            current = self._quota.get((tenant_id, month))
            if (None if current is None else current[1]) != expected_version:
                return False
            self._quota[(tenant_id, month)] = (used, (expected_version or 0) + 1)
            return True


class MemoryTenants:
    """``billing.tenants.tenant.TenantStore`` in memory, with the repository's versioning: ``create`` stores
    version 1, ``save`` succeeds only when nobody saved since the record was read."""

    def __init__(self) -> None:
        self._records: dict[str, Tenant] = {}

    @staticmethod
    def _stored(tenant: Tenant, version: int) -> Tenant:
        data = tenant.model_dump(mode="json")
        data["version"] = version
        return Tenant.model_validate(data)

    def get(self, tenant_id: str) -> Tenant | None:
        found = self._records.get(tenant_id)
        return None if found is None else found.model_copy(deep=True)

    def get_many(self, tenant_ids: Iterable[str]) -> dict[str, Tenant]:
        return {t: self._records[t].model_copy(deep=True) for t in set(tenant_ids) if t in self._records}

    def list_all(self) -> list[Tenant]:
        return [self._records[t].model_copy(deep=True) for t in sorted(self._records)]

    def create(self, tenant: Tenant) -> bool:
        if tenant.id in self._records:
            return False
        self._records[tenant.id] = self._stored(tenant, 1)
        return True

    def save(self, tenant: Tenant) -> Tenant:
        current = self._records.get(tenant.id)
        if current is not None and current.version != tenant.version:
            raise _conditional_failure("PutItem")
        self._records[tenant.id] = self._stored(tenant, tenant.version + 1)
        return tenant.model_copy(update={"version": tenant.version + 1})

    def link_stripe_customer(self, tenant_id: str, customer_id: str) -> str | None:
        current = self._records.get(tenant_id)
        if current is None:
            return None
        if current.stripe_customer_id is None:
            linked = current.model_copy(update={"stripe_customer_id": customer_id})
            self._records[tenant_id] = self._stored(linked, current.version + 1)
        return self._records[tenant_id].stripe_customer_id


class MemoryPeriods:
    """Month closes: the first ``close`` of a month records its watermark, later ones return it."""

    def __init__(self) -> None:
        self._closed: dict[str, datetime] = {}

    def closed_at(self, month: Month | str) -> datetime | None:
        return self._closed.get(str(month))

    def close(self, month: Month | str, closed_at: datetime) -> datetime:
        # Kept in its stored text form, like the DynamoDB item, so both read back the same instant.
        return self._closed.setdefault(str(month), parse_instant(iso(closed_at)))


class MemoryStatements:
    """Statements stored once per tenant-month, as their JSON (what reads return is re-parsed, exactly
    as from the BillingTable)."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str], str] = {}

    def put_if_absent(self, statement: Statement) -> bool:
        key = (statement.month, statement.tenant_id)
        if key in self._bodies:
            return False
        self._bodies[key] = statement.model_dump_json()
        return True

    def get(self, tenant_id: str, month: Month | str) -> Statement | None:
        body = self._bodies.get((str(month), tenant_id))
        return None if body is None else Statement.model_validate(json.loads(body))

    def list_month(self, month: Month | str) -> list[Statement]:
        m = str(month)
        return [
            Statement.model_validate(json.loads(body))
            for (month_key, _tenant), body in sorted(self._bodies.items())
            if month_key == m
        ]


class MemoryJobs:
    """Invoicing jobs, each (tenant, month) sent once; ``sent`` keeps them in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._seen: set[tuple[str, str]] = set()

    def enqueue_once(self, tenant_id: str, month: str) -> bool:
        if (tenant_id, month) in self._seen:
            return False
        self._seen.add((tenant_id, month))
        self.sent.append((tenant_id, month))
        return True


class MemoryArchive:
    """The month's CSV by key; an unchanged body is not rewritten (``put`` returns False)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    @staticmethod
    def key(month: str) -> str:
        return f"invoices/{month}.csv"

    def put(self, month: str, body: bytes) -> bool:
        key = self.key(month)
        existing = self.objects.get(key)
        if existing is not None and hashlib.md5(existing).digest() == hashlib.md5(body).digest():
            return False
        self.objects[key] = body
        return True


class MemoryQueue:
    """The usage fallback queue: messages are kept; calling it gives its depth (the close's guard)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, body: str) -> None:
        self.messages.append(body)

    def __call__(self) -> int:
        return len(self.messages)


class MemoryWebhookEndpoints:
    """The SaaS's webhook endpoints (``EndpointStore``): none unless added, so a simulated close
    publishes nothing and makes no AWS call."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Any] = {}
        self.targets: dict[str, tuple[str, datetime, bool]] = {}  # key -> (owner, claimed_at, done)
        self._guard = threading.Lock()

    def claim_target(self, key: str, endpoint_id: str, at: datetime, stale_before: datetime) -> str:
        with self._guard:
            held = self.targets.get(key)
            if held is None or (not held[2] and held[1] < stale_before):
                self.targets[key] = (endpoint_id, at, False)
                return endpoint_id
            return held[0]

    def finish_target(self, key: str, endpoint_id: str) -> None:
        with self._guard:
            if key in self.targets and self.targets[key][0] == endpoint_id:
                owner, at, _done = self.targets[key]
                self.targets[key] = (owner, at, True)

    def release_target(self, key: str) -> None:
        with self._guard:
            self.targets.pop(key, None)

    def add(self, endpoint: Any) -> None:
        self.endpoints[endpoint.id] = endpoint

    def get(self, endpoint_id: str) -> Any:
        return self.endpoints.get(endpoint_id)

    def all(self) -> list[Any]:
        return list(self.endpoints.values())

    def replace(self, endpoint: Any, *, expected_version: int) -> bool:
        stored = self.endpoints.get(endpoint.id)
        if stored is None or stored.version != expected_version:
            return False
        self.endpoints[endpoint.id] = endpoint
        return True

    def delete(self, endpoint_id: str) -> bool:
        return self.endpoints.pop(endpoint_id, None) is not None


class NoWebhooks:
    """``WebhookPublisher`` of an offline run (a simulated month): it has no endpoints to tell, so it
    publishes nothing, as the production dispatcher would find no endpoint, without building the
    dispatcher's AWS clients (which need a region and credentials a simulation does not have)."""

    def publish(self, event_type: str, object_id: str, data: Any, *, source_id: str) -> None:
        return None


class MemoryCredits:
    """``billing.tenants.credits.CreditLedger`` in memory, with the DynamoDB adapter's rules: a grant is
    written once per (tenant, grant id) and a burn once per (tenant, statement, grant), both
    conditional puts answering True when written now; nothing is ever changed or removed. ``entries``
    returns grants and burns in the adapter's sort-key order (grant id; statement id then grant id)."""

    def __init__(self) -> None:
        self._grants: dict[tuple[str, str], str] = {}  # (tenant, grant id) -> the grant's JSON
        self._burns: dict[tuple[str, str, str], CreditBurn] = {}  # (tenant, statement, grant)
        self._guard = threading.Lock()

    def add_grant(self, grant: CreditGrant) -> bool:
        with self._guard:
            key = (grant.tenant_id, grant.grant_id)
            if key in self._grants:
                return False
            self._grants[key] = grant.model_dump_json()
            return True

    def get_grant(self, tenant_id: str, grant_id: str) -> CreditGrant | None:
        body = self._grants.get((tenant_id, grant_id))
        return None if body is None else CreditGrant.model_validate(json.loads(body))

    def entries(self, tenant_id: str) -> tuple[list[CreditGrant], list[CreditBurn]]:
        grants = [
            CreditGrant.model_validate(json.loads(body))
            for (tenant, _grant), body in sorted(self._grants.items())
            if tenant == tenant_id
        ]
        burns = [burn for key, burn in sorted(self._burns.items()) if key[0] == tenant_id]
        return grants, burns

    def tenants_with_grants(self) -> set[str]:
        return {tenant for tenant, _grant in self._grants}

    def add_burn(self, burn: CreditBurn) -> bool:
        with self._guard:
            key = (burn.tenant_id, burn.statement_id, burn.grant_id)
            if key in self._burns:
                return False
            self._burns[key] = burn.model_copy()
            return True


class EventStore(Protocol):
    def insert_events(self, events: Sequence[StoredEvent]) -> None: ...

    def existing_event_ids(self, tenant_id: str, event_ids: Sequence[str]) -> set[str]: ...


class BlockStore:
    """The ingest service's ``Store``: accepted rows are handed to ``target.insert_events`` (the
    production ClickHouse adapter) in blocks of ``block_rows``. ``flush`` stores the rest; until it
    returns, rows are only in memory, so a simulation flushes before it closes the month.
    ``buffers_blocks``: ingest hands it each batch whole (``billing.metering.storing.store_rows``),
    not in queue-sized blocks that it would only join again."""

    buffers_blocks = True

    def __init__(self, target: EventStore, *, block_rows: int = 100_000):
        self.target = target
        self.block_rows = block_rows
        self._pending: list[StoredEvent] = []
        self.rows = 0

    def insert_events(self, events: Sequence[StoredEvent]) -> None:
        self._pending.extend(events)
        if len(self._pending) >= self.block_rows:
            self.flush()

    def existing_event_ids(self, tenant_id: str, event_ids: Sequence[str]) -> set[str]:
        wanted = set(event_ids)
        pending = {e.event_id for e in self._pending if e.tenant_id == tenant_id and e.event_id in wanted}
        return pending | self.target.existing_event_ids(tenant_id, list(wanted - pending))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.block_rows):
            block = pending[start : start + self.block_rows]
            self.target.insert_events(block)
            self.rows += len(block)
