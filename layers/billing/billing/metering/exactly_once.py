"""Exactly-once ingestion: the protocol, its value types, and the insert dedup token.

An event is identified by ``(tenant_id, event_id)``. There is no per-tenant lock: concurrent batches
of one tenant proceed in parallel and meet only in conditional writes. The guarantee is built from:

1. **Conditional claims** (``UsageLedger``, implemented by ``billing.adapters.dynamodb.usage_ledger``): each
   event id is claimed by the batch that stores it, with a write that succeeds only if the id is
   unclaimed (or still held by the dead batch being taken over). A claim whose batch has a commit
   record is a duplicate, acknowledged and never stored or counted again. A claim carries a lease
   (``lease_until``, longer than the ingest Lambda's timeout): while it runs, its batch may still
   commit, and another batch carrying the same id waits for the outcome; once it has run out (or
   is 0: the batch gave the claim up, e.g. a 503 naming it unsettled) the claim is taken over.
2. **Quota and hard limits counted per claim, by atomic conditional counters**: a query's claim,
   and the claim of any event adding to a metric its tenant's plan limits hard, is written in the
   same DynamoDB transaction that adds to its month's counters (``claim_counted``: ``ADD used :n``
   and one ``ADD`` per limited metric, on condition each stays within its limit, no read first)
   and is marked with that month and what it added (``billing.metering.hard_limits``); releasing
   it takes exactly that off the counters in one transaction too. A request that takes over a counted claim
   does not count it again. So each counter equals the live counted claims of its month at every
   instant, and admission order across batches is the order in which their transactions reach
   the counter.
3. **Commit after store**: a batch's commit record is written only once every block has a durable
   home (ClickHouse or the fallback queue).
4. **Insert dedup tokens** (``block_token``): every block is inserted with a token derived from its
   event ids, so a replay of a block that in fact landed is dropped by ClickHouse, in
   ``usage_events`` and in the rollups its materialized views feed.
5. **Replays skip what is there** (``billing.metering.fallback.replay_block``) and ``usage_events`` is a
   ``ReplacingMergeTree`` read with ``FINAL``.

The ledger protocol below is what ingest needs; in-memory versions (``billing simulate``) must keep
its semantics: ``claim_counted`` is all or nothing per call of at most ``MAX_COUNTED_PER_TRANSACTION``
claims (with the counter); ``claim`` writes each claim on its own condition (nothing about those
claims needs atomicity with anything else, and a single conditional write costs half a
transactional one), naming the claims it could not write; both report conflicts rather than raise;
``lookup`` is strongly consistent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from billing.metering.events import StoredEvent


class Claim(NamedTuple):
    """One event's claim; a tuple, since ingest hashes each a dozen times per batch (C's tuple hash,
    not a dataclass's generated one)."""

    tenant_id: str
    event_id: str

    @property
    def pk(self) -> str:
        return f"EVT#{self.tenant_id}#{self.event_id}"


MAX_COUNTED_PER_TRANSACTION = 99  # DynamoDB transactions hold 100 items: the counter and 99 claims


@dataclass(frozen=True)
class ClaimState:
    """An existing claim: the batch that wrote it, whether that batch committed (the event is
    durably stored: a duplicate), the marker of what it counted (``counted_month``: the month, and the
    amounts unless it is one query, ``billing.metering.hard_limits.counted_marker``), and the
    instant (epoch seconds) until which its batch may still commit it; 0: given up."""

    batch_id: str
    committed: bool
    counted_month: str | None = None
    lease_until: float = 0.0

    def in_flight(self, now: float) -> bool:
        """Its batch may still commit it: wait for the outcome rather than take it over."""
        return not self.committed and self.lease_until > now


@dataclass(frozen=True)
class ClaimResult:
    """What a claim call did. ``written``: every claim was written. ``conflicts``: claims that exist
    although they were expected absent, or are no longer held by the batch they were to be taken
    over from: not written (``claim_counted`` then wrote nothing at all; ``claim`` wrote every
    other claim); ``used``: the month's query counter when a counter had no room, ``counters`` the
    hard-limited metrics' (``claim_counted`` only)."""

    written: bool
    conflicts: frozenset[Claim] = frozenset()
    used: int | None = None
    counters: dict[str, Decimal] | None = None  # the metric counters then, with ``used``


class ClaimsInterrupted(Exception):
    """A ``claim`` call failed part-way (a request to the store failed): ``written`` are the claims
    it had written by then, held by the calling batch, which must account for them (give them up
    or back) and then re-raise ``error``, the failure itself."""

    def __init__(self, error: Exception, written: frozenset[Claim]):
        super().__init__(str(error))
        self.error, self.written = error, written


@dataclass(frozen=True)
class PeriodReceipt:
    """The ids one batch committed for one (tenant, month): written with its commit record, so that
    a tenant's period can be reconciled (billing.metering.receipts)."""

    tenant_id: str
    month: str
    event_ids: tuple[str, ...]
    expires_at: int


class UsageLedger(Protocol):
    """Claims, batch commits and quota counters, as ingest needs them (no locks)."""

    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]: ...

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
        """Write claims that change no counter (non-queries; queries already counted: ``counted``
        keeps their month). Each is written on its own condition: absent, or, when in ``previous``,
        still held by ``previous[claim]`` (a take-over, or a batch rewriting its own claims, e.g.
        with ``lease_until=0`` to give them up; a claim given back meanwhile is a conflict); those
        that fail it are the result's ``conflicts``, every other one is written. Any number of
        claims. A failure part-way raises ``ClaimsInterrupted``."""
        ...

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
        """One transaction: the month's counters grow by the claims' ``amounts`` (metric -> amount,
        ``billing.metering.hard_limits``; None: each claim is one query) if the query counter is now
        between ``min_used`` and ``max_used`` and each metric counter within its ``metric_bounds``
        (None: no bound), and every claim is written marked with what it counted
        (``counted_marker``); else nothing is written and ``used``/``counters`` say what the
        counters hold."""
        ...

    def stored(self, claims: Sequence[Claim]) -> set[Claim]: ...

    def release(
        self, claims: Sequence[Claim], batch_id: str, counted: dict[Claim, str] | None = None
    ) -> None: ...

    def commit_batch(
        self, batch_id: str, expires_at: int, *, receipts: Sequence[PeriodReceipt] = (), **attributes: Any
    ) -> None:
        """Mark the batch's claims durably stored; ``receipts`` (the ids it committed per tenant and
        month) are recorded first, where the reconcile finds a tenant's period."""
        ...

    def quota_used(self, tenant_id: str, month: str) -> tuple[int, int | None]: ...


def block_token(events: Sequence[StoredEvent]) -> str:
    """The insert dedup token of a block: the same event ids in the same order give the same token."""
    digest = hashlib.sha256()
    for e in events:
        digest.update(f"{e.tenant_id}\x1f{e.event_id}\x1e".encode())
    return digest.hexdigest()
