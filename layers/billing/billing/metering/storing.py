"""Where a batch's claimed rows go: ClickHouse in blocks carrying a dedup token, else the SQS fallback
queue with the same token, and what to conclude when neither answers.

Invariants: a block ClickHouse refused as invalid (``StoreRejected``) is never queued (no retry or
replay can fix it); storing stops at the first block that finds no durable home; of that block, rows
ClickHouse is known to hold are ``kept``, and rows whose insert or send may have been applied unseen
are ``unsettled`` (the client's retry settles them), never silently dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from billing.kernel.errors import QueueRefused, StoreRejected, StoreUnavailable
from billing.metering.events import StoredEvent
from billing.metering.fallback import blocks, encode_block
from billing.runtime.observability import logger


class FallbackQueue(Protocol):
    def send(self, body: str) -> None:
        """Raises QueueRefused when the message is surely not queued; after any other exception it
        may be (the answer of a send SQS applied was lost), and a replay may store it."""


class UsageStore(Protocol):
    def insert_events(self, events: Sequence[StoredEvent]) -> None:
        """Raises StoreUnavailable when the block may be retried, StoreRejected when it never can."""

    def existing_event_ids(self, tenant_id: str, event_ids: Sequence[str]) -> set[str]: ...


@dataclass
class StoreOutcome:
    """Where a batch's rows went: ``kept`` have a durable home (ClickHouse or the fallback queue);
    ``failed`` is the block that found none (``failure``: "unavailable" or "rejected"), of which
    ``unsettled`` rows may or may not have been applied (inserted, or queued by a send whose answer
    was lost); rows after it were not tried."""

    kept: list[StoredEvent] = field(default_factory=list)
    queued: bool = False
    failed: list[StoredEvent] | None = None
    failure: str = ""
    reason: str = ""
    unsettled: list[StoredEvent] = field(default_factory=list)


def store_rows(
    rows: list[StoredEvent], batch_id: str, store: UsageStore, fallback: FallbackQueue
) -> StoreOutcome:
    """Insert block by block; a block ClickHouse did not take goes to the fallback queue. Stops at
    the first block that finds no durable home (later blocks are not tried). A store that buffers
    rows and cuts its own blocks (``buffers_blocks`` true: the simulation's in-memory block store)
    gets the batch in one call: the queue-sized blocks exist for the insert dedup token and the
    fallback queue, and such a store inserts neither block as given."""
    outcome = StoreOutcome()
    for block in [rows] if getattr(store, "buffers_blocks", False) else blocks(rows):
        try:
            store.insert_events(block)
            outcome.kept.extend(block)
            continue
        except StoreRejected as exc:  # no retry can fix it, so neither can a replay: never queued
            logger.error(
                "ClickHouse refused a block as invalid",
                extra={"batch_id": batch_id, "error": str(exc)},
            )
            outcome.failed, outcome.failure, outcome.reason = block, "rejected", str(exc)
            return outcome
        except StoreUnavailable as exc:
            logger.warning(
                "ClickHouse insert failed; queueing block",
                extra={"batch_id": batch_id, "error": str(exc)},
            )
        try:
            fallback.send(encode_block(batch_id, block))
            outcome.kept.extend(block)
            outcome.queued = True
        except Exception as exc:  # SQS failed as well: this block has no durable home we know of
            logger.exception("fallback queue unavailable", extra={"batch_id": batch_id})
            outcome.failed, outcome.failure = block, "unavailable"
            # a timed-out insert may have been applied: what ClickHouse holds is kept
            landed = stored_keys(store, [(r.tenant_id, r.event_id) for r in block])
            if landed is not None:
                outcome.kept.extend(r for r in block if (r.tenant_id, r.event_id) in landed)
            if landed is None or not isinstance(exc, QueueRefused):
                # the insert may have landed unseen, or the send may have queued the block
                # although it raised (its answer lost): what is not known stored is unsettled
                outcome.unsettled = [r for r in block if (r.tenant_id, r.event_id) not in (landed or ())]
            return outcome
    return outcome


def stored_keys(store: UsageStore, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]] | None:
    """Which of ``keys`` (tenant_id, event_id) ClickHouse holds, asked tenant by tenant; None when
    it cannot say, which each caller answers for itself."""
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for tenant_id, event_id in keys:
        by_tenant[tenant_id].append(event_id)
    try:
        return {(t, e) for t, ids in by_tenant.items() for e in store.existing_event_ids(t, ids)}
    except Exception:
        logger.warning("ClickHouse could not say which events it holds", exc_info=True)
        return None
