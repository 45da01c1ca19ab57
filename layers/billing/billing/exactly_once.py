"""Exactly-once ingestion: the protocol, its value types, and the insert dedup token.

An event is identified by ``(tenant_id, event_id)``. The guarantee is built from four pieces:

1. **Claims** (``UsageLedger``, implemented by ``billing.adapters.usage_ledger``): each event id is
   claimed by the batch that stores it; a claim whose batch has a commit record is a duplicate,
   acknowledged and never stored or counted again. An uncommitted claim was left by a request that
   died (or answered 503) before acknowledging it, and is taken over.
   **Quota is counted per claim**: a query's claim is written in the same DynamoDB transaction that
   moves its month's counter (``claim_counted``) and marked with that month; releasing it takes it
   off the counter in one transaction too. A request that takes over a counted claim does not count
   it again. So each counter equals the live counted claims of its month at every instant.
2. **Commit after store**: a batch's commit record is written only once every block has a durable
   home (ClickHouse or the fallback queue).
3. **Insert dedup tokens** (``block_token``): every block is inserted with a token derived from its
   event ids, so a replay of a block that in fact landed is dropped by ClickHouse, in
   ``usage_events`` and in the rollups its materialized views feed.
4. **Replays skip what is there** (``billing.fallback.replay_block``) and ``usage_events`` is a
   ``ReplacingMergeTree`` read with ``FINAL``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from billing.events import StoredEvent


@dataclass(frozen=True)
class Claim:
    tenant_id: str
    event_id: str

    @property
    def pk(self) -> str:
        return f"EVT#{self.tenant_id}#{self.event_id}"


MAX_COUNTED_PER_TRANSACTION = 99  # DynamoDB transactions hold 100 items: the counter and 99 claims


@dataclass(frozen=True)
class ClaimState:
    """An existing claim: the batch that wrote it, whether that batch committed (the event is
    durably stored: a duplicate), and the month whose quota counter counts it (queries only)."""

    batch_id: str
    committed: bool
    counted_month: str | None = None


class TenantBusy(Exception):
    """Another request holds a tenant's ingest lock for longer than we may wait."""


class UsageLedger(Protocol):
    """Claims, batch commits and quota counters, as ingest needs them."""

    def locked(self, tenant_ids: Iterable[str], owner: str) -> AbstractContextManager[None]: ...

    def lookup(self, claims: Sequence[Claim]) -> dict[Claim, ClaimState]: ...

    def claim(
        self,
        claims: Sequence[Claim],
        batch_id: str,
        expires_at: dict[Claim, int],
        counted: dict[Claim, str] | None = None,
    ) -> None: ...

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
    ) -> bool: ...

    def stored(self, claims: Sequence[Claim]) -> set[Claim]: ...

    def release(
        self, claims: Sequence[Claim], batch_id: str, counted: dict[Claim, str] | None = None
    ) -> None: ...

    def commit_batch(self, batch_id: str, expires_at: int, **attributes: Any) -> None: ...

    def quota_used(self, tenant_id: str, month: str) -> tuple[int, int | None]: ...

    def quota_set(
        self, tenant_id: str, month: str, used: int, expected_version: int | None, expires_at: int
    ) -> bool: ...


def block_token(events: Sequence[StoredEvent]) -> str:
    """The insert dedup token of a block: the same event ids in the same order give the same token."""
    digest = hashlib.sha256()
    for e in events:
        digest.update(f"{e.tenant_id}\x1f{e.event_id}\x1e".encode())
    return digest.hexdigest()
