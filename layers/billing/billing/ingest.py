"""Usage ingestion: validate, authorize, claim event ids once, enforce quotas, price, store.

Order of work for a batch (nothing is written before every check has passed):
1. parse + price every event (400 lists each bad event's index, field and reason; an event dated
   more than ``MAX_FUTURE_SKEW`` ahead is one);
2. tenant checks: ``Principal.authorize`` (unknown 404 for platform keys; unknown or foreign 403 for
   any other key), suspended (402), cancelled or before its first plan (403), month closed (409);
3. under the tenants' locks, look the claims up (``UsageLedger.lookup``): committed ones are
   duplicates, acknowledged and never re-stored; uncommitted ones (a request that died, or answered
   503 with them unsettled) are taken over with their quota already counted, and those found in
   ClickHouse already are not inserted again;
4. admit queries in (timestamp, event_id) order: each DynamoDB transaction moves the month's counter
   and writes the admitted claims marked counted (``claim_counted``), so quota is counted exactly once
   per claim whatever crashes; refused queries are never claimed;
5. insert into ClickHouse in blocks carrying a dedup token; a block ClickHouse did not take goes to the
   SQS fallback queue with the same token; a block refused as invalid (``StoreRejected``) is never
   queued; then the batch's commit record is written (202).
   When a block finds no durable home, the answer is 503 naming ``kept`` (stored or queued, committed)
   and ``unsettled`` events; everything else is given back, claim and quota in one transaction
   (``_partial_failure``).

Notes for issue 15 (removing the per-tenant lock): the lock is what makes "an uncommitted claim
belongs to a dead request" true in step 3; the claim puts of step 4 are already conditional on the
claim being absent or still held by the batch we saw, and releases on being ours, so without the lock
a concurrent batch loses with a cancelled transaction instead of double counting.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from billing.errors import (
    BillingError,
    Conflict,
    Forbidden,
    InvalidRequest,
    PaymentRequired,
    QuotaExceeded,
    ServiceUnavailable,
    StoreRejected,
    StoreUnavailable,
)
from billing.events import StoredEvent, UsageEvent
from billing.exactly_once import MAX_COUNTED_PER_TRANSACTION, Claim, TenantBusy, UsageLedger
from billing.fallback import blocks, encode_block
from billing.observability import logger
from billing.periods import Month, iso, parse_instant
from billing.plans import PlanCatalog
from billing.pricing import NoPriceVersion, PriceBook, UnknownModel
from billing.quotas import admit_queries, quota_limit
from billing.tenants import PLATFORM, Principal, Tenant, TenantStore

__all__ = ["PLATFORM", "IngestResult", "IngestService", "Principal"]

QUOTA_CAS_ATTEMPTS = 50
# How far ahead of our clock an event may be dated (client clock skew). A later event is a 400: it
# would be billed, and count against the quota, of a month that has not begun.
MAX_FUTURE_SKEW = timedelta(minutes=5)


@dataclass
class IngestResult:
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected_for_quota: list[dict[str, Any]] = field(default_factory=list)
    queued: bool = False
    quota: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "status": "queued" if self.queued else "stored",
            "accepted": len(self.accepted),
            "duplicates": self.duplicates,
            "rejected_for_quota": self.rejected_for_quota,
            "queued": self.queued,
            **(
                {
                    "message": "ClickHouse was unavailable; accepted events are durably queued and will be "
                    "stored by the replay job"
                }
                if self.queued
                else {}
            ),
            **({"quota": self.quota} if self.quota else {}),
        }


class Periods(Protocol):
    def closed_at(self, month: Month | str) -> datetime | None: ...


class FallbackQueue(Protocol):
    def send(self, body: str) -> None: ...


class Store(Protocol):
    def insert_events(self, events: Sequence[StoredEvent]) -> None:
        """Raises StoreUnavailable when the block may be retried, StoreRejected when it never can."""

    def existing_event_ids(self, tenant_id: str, event_ids: Sequence[str]) -> set[str]: ...


class IngestService:
    def __init__(
        self,
        *,
        tenants: TenantStore,
        ledger: UsageLedger,
        periods: Periods,
        store: Store,
        fallback: FallbackQueue,
        price_book: PriceBook,
        catalog: PlanCatalog,
        dedup_retention_days: int = 70,
        clock: Callable[[], datetime] | None = None,
        max_future_skew: timedelta = MAX_FUTURE_SKEW,
    ):
        self.max_future_skew = max_future_skew
        self.tenants = tenants
        self.ledger = ledger
        self.periods = periods
        self.store = store
        self.fallback = fallback
        self.price_book = price_book
        self.catalog = catalog
        self.dedup_retention_days = dedup_retention_days
        self.clock = clock or (lambda: datetime.now(UTC))

    # ------------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[UsageEvent], principal: Principal | None = None) -> IngestResult:
        principal = principal or PLATFORM
        now = self.clock()
        priced = self._price(events, now)
        tenants = self._check_tenants(events, principal)
        self._refuse_exhausted_quota(events, tenants)
        batch_id = uuid.uuid4().hex
        try:
            with self.ledger.locked(tenants, batch_id):
                result = self._admit_and_store(events, priced, tenants, batch_id)
        except TenantBusy as busy:
            raise ServiceUnavailable(
                f"tenant {busy} is busy with another batch; retry the request", headers={"Retry-After": "1"}
            ) from None
        logger.info(
            "usage batch accepted",
            extra={
                "batch_id": batch_id,
                "tenants": sorted(tenants),
                "accepted": len(result.accepted),
                "duplicates": len(result.duplicates),
                "rejected_for_quota": len(result.rejected_for_quota),
                "queued": result.queued,
            },
        )
        return result

    def _refuse_exhausted_quota(self, events: Sequence[UsageEvent], tenants: dict[str, Tenant]) -> None:
        """A batch of only new queries, all beyond an exhausted quota, is refused without waiting for
        the tenant lock: stored claims and quota counters only grow, so reading them is enough. This
        keeps a tenant hammering us over its quota from queueing behind its own lock."""
        if not events or any(not e.queries for e in events):
            return
        claims = {Claim(*e.key): e for e in events}
        stored = self.ledger.stored(list(claims))
        fresh = [e for c, e in claims.items() if c not in stored]
        if not fresh:
            return
        used_by_month: dict[tuple[str, str], int] = {}
        for event in fresh:
            key = (event.tenant_id, str(Month.of(event.timestamp)))
            if key not in used_by_month:
                used_by_month[key] = self.ledger.quota_used(*key)[0]
            limit = quota_limit(tenants[event.tenant_id], self.catalog, event.timestamp)
            if limit is None or used_by_month[key] < limit:
                return
        first = min(fresh, key=lambda e: (e.timestamp, e.event_id))
        month = Month.of(first.timestamp)
        result = IngestResult(duplicates=[c.event_id for c in stored])
        result.rejected_for_quota = [
            {"event_id": e.event_id, "tenant_id": e.tenant_id, "timestamp": iso(e.timestamp)}
            for e in sorted(fresh, key=lambda e: (e.timestamp, e.event_id))
        ]
        result.quota = {
            "tenant_id": first.tenant_id,
            "month": str(month),
            "limit": quota_limit(tenants[first.tenant_id], self.catalog, first.timestamp),
            "used": used_by_month[(first.tenant_id, str(month))],
            "resets_at": iso(month.end),
        }
        raise self._quota_error(result)

    def _admit_and_store(
        self,
        events: Sequence[UsageEvent],
        priced: dict[tuple[str, str], StoredEvent],
        tenants: dict[str, Tenant],
        batch_id: str,
    ) -> IngestResult:
        claims = {e.key: Claim(*e.key) for e in events}
        expiry = {claims[e.key]: self._claim_expiry(e) for e in events}
        states = self.ledger.lookup(list(claims.values()))
        result = IngestResult(duplicates=[c.event_id for c, st in states.items() if st.committed])
        fresh = [e for e in events if not (claims[e.key] in states and states[claims[e.key]].committed)]
        # Claims of a request that never got an answer to its client (it died, or answered 503 with
        # these events unsettled) are taken over. Their quota is already counted, and their rows may
        # have landed: those found in ClickHouse are not inserted again.
        taken_over = {claims[e.key]: states[claims[e.key]] for e in fresh if claims[e.key] in states}
        counted = {c: st.counted_month for c, st in taken_over.items() if st.counted_month}
        landed = self._already_stored([e for e in fresh if claims[e.key] in taken_over])

        plain = [claims[e.key] for e in fresh if not e.queries or claims[e.key] in counted]
        self.ledger.claim(plain, batch_id, expiry, counted)
        rejected = self._admit(
            [e for e in fresh if e.queries and claims[e.key] not in counted],
            tenants,
            result,
            batch_id,
            expiry,
            {c: st.batch_id for c, st in taken_over.items()},
            counted,
        )
        rejected_keys = {e.key for e in rejected}
        accepted = [e for e in fresh if e.key not in rejected_keys]
        to_store = [priced[e.key] for e in accepted if e.key not in landed]
        outcome = self._store(to_store, batch_id)
        if outcome.failed is None:
            if not accepted:  # nothing claimed: nothing to commit (a refused request writes nothing)
                if rejected:
                    raise self._quota_error(result)
                return result
            result.queued = outcome.queued
            self.ledger.commit_batch(
                batch_id, max(expiry.values()), events=len(accepted), queued=result.queued
            )
            result.accepted = [e.event_id for e in accepted]
            return result
        raise self._partial_failure(
            events, accepted, landed, outcome, claims, counted, batch_id, expiry, result
        )

    def _already_stored(self, events: Sequence[UsageEvent]) -> set[tuple[str, str]]:
        """Keys of taken-over events that are in ClickHouse already (their old request inserted them
        and died before committing). When ClickHouse cannot say, none: inserting again is safe, as
        ClickHouse drops a block carrying the same dedup token and FINAL collapses any other copy."""
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for event in events:
            by_tenant[event.tenant_id].append(event.event_id)
        found: set[tuple[str, str]] = set()
        try:
            for tenant_id, ids in by_tenant.items():
                found |= {(tenant_id, e) for e in self.store.existing_event_ids(tenant_id, ids)}
        except Exception:
            logger.warning("could not check taken-over events in ClickHouse", exc_info=True)
            return set()
        return found

    def _partial_failure(
        self,
        events: Sequence[UsageEvent],
        accepted: list[UsageEvent],
        landed: set[tuple[str, str]],
        outcome: StoreOutcome,
        claims: dict[tuple[str, str], Claim],
        counted: dict[Claim, str],
        batch_id: str,
        expiry: dict[Claim, int],
        result: IngestResult,
    ) -> BillingError:
        """A block found no durable home. What has one (stored or queued) stays claimed, counted and
        committed, and is named ``kept``; what surely was not stored is given back (claim and quota);
        a block whose insert may have been applied (it timed out) and that ClickHouse cannot confirm
        either way stays claimed and counted under a batch that never commits, is named
        ``unsettled``, and the client's retry settles it. So a retry of the same request stores every
        event exactly once, and every quota counter equals the month's counted claims."""
        month_of = {claims[e.key]: str(Month.of(e.timestamp)) for e in accepted if e.queries}
        counted = {**counted, **month_of}
        kept_keys = landed | {(r.tenant_id, r.event_id) for r in outcome.kept}
        unsettled_keys = {(r.tenant_id, r.event_id) for r in outcome.unsettled}
        released = [claims[e.key] for e in accepted if e.key not in kept_keys and e.key not in unsettled_keys]
        self.ledger.release(released, batch_id, {c: counted[c] for c in released if c in counted})
        if unsettled_keys:
            unsettled = [claims[k] for k in unsettled_keys]
            self.ledger.claim(
                unsettled, f"{batch_id}-unsettled", expiry, {c: counted[c] for c in unsettled if c in counted}
            )
        kept = [e.event_id for e in accepted if e.key in kept_keys]
        if kept:
            self.ledger.commit_batch(batch_id, max(expiry.values()), events=len(kept), queued=outcome.queued)
        extra = {
            "kept": kept,
            "unsettled": [e.event_id for e in accepted if e.key in unsettled_keys],
            "duplicates": result.duplicates,
            "rejected_for_quota": result.rejected_for_quota,
        }
        if outcome.failure == "rejected":
            index = {e.key: i for i, e in enumerate(events)}
            return InvalidRequest(
                f"ClickHouse refused {len(outcome.failed or [])} event(s) as invalid; nothing else was stored"
                + (f" but the {len(kept)} event(s) named in 'kept'" if kept else ""),
                details=[
                    {"index": index[(r.tenant_id, r.event_id)], "field": "event", "reason": outcome.reason}
                    for r in outcome.failed or []
                ],
                extra=extra,
            )
        return ServiceUnavailable(
            "usage store and fallback queue are both unavailable; retry the request: events named in "
            "'kept' are stored (the retry reports them as duplicates), the rest were not accepted",
            headers={"Retry-After": "5"},
            extra=extra,
        )

    # ------------------------------------------------------------------------------------------
    def _price(self, events: Sequence[UsageEvent], now: datetime) -> dict[tuple[str, str], StoredEvent]:
        priced: dict[tuple[str, str], StoredEvent] = {}
        problems = []
        latest = now + self.max_future_skew
        for index, event in enumerate(events):
            if event.timestamp > latest:
                problems.append(
                    {
                        "index": index,
                        "field": "timestamp",
                        "reason": f"more than {int(self.max_future_skew.total_seconds())} s in the future "
                        f"(latest accepted now: {iso(latest)})",
                    }
                )
                continue
            try:
                cost = self.price_book.cost(event)
            except UnknownModel as exc:
                problems.append({"index": index, "field": "model", "reason": str(exc)})
                continue
            except NoPriceVersion as exc:
                problems.append({"index": index, "field": "timestamp", "reason": str(exc)})
                continue
            priced[event.key] = StoredEvent(
                tenant_id=event.tenant_id,
                event_id=event.event_id,
                timestamp=event.timestamp,
                type=event.type,
                model=event.model or "",
                queries=event.queries,
                input_tokens=event.input_tokens,
                output_tokens=event.output_tokens,
                bytes=event.bytes,
                cost_usd=cost.cost_usd,
                price_version=cost.price_version,
                accepted_at=now,
            )
        if problems:
            raise InvalidRequest(f"{len(problems)} invalid event(s); nothing was stored", details=problems)
        return priced

    def _check_tenants(self, events: Sequence[UsageEvent], principal: Principal) -> dict[str, Tenant]:
        ids = sorted({e.tenant_id for e in events})
        tenants = self.tenants.get_many(ids)
        principal.authorize(ids, tenants, "write usage for")
        suspended = [t for t in ids if tenants[t].payment_status == "suspended"]
        if suspended:
            raise PaymentRequired(
                f"tenant(s) {', '.join(suspended)} suspended for non-payment; pay the open invoice to resume",
                details=[{"field": "tenant_id", "tenant_id": t, "reason": "suspended"} for t in suspended],
            )
        refused = []
        for index, event in enumerate(events):
            tenant = tenants[event.tenant_id]
            canceled_at, first_plan_at = tenant.canceled_at, tenant.first_plan_at()
            if canceled_at is not None and event.timestamp >= canceled_at:
                refused.append(
                    {
                        "index": index,
                        "field": "timestamp",
                        "reason": f"tenant {tenant.id} was cancelled at {iso(canceled_at)}",
                    }
                )
            elif first_plan_at is not None and event.timestamp < first_plan_at:
                refused.append(
                    {
                        "index": index,
                        "field": "timestamp",
                        "reason": f"tenant {tenant.id} has no plan before {iso(first_plan_at)}",
                    }
                )
        if refused:
            raise Forbidden(
                f"{len(refused)} event(s) fall outside the tenant's subscription; nothing was stored",
                details=refused,
            )
        closed = []
        for month in sorted({Month.of(e.timestamp) for e in events}):
            closed_at = self.periods.closed_at(month)
            if closed_at is not None:
                closed.append(
                    {
                        "field": "timestamp",
                        "month": str(month),
                        "reason": f"billing period {month} was closed at {iso(closed_at)}",
                    }
                )
        if closed:
            raise Conflict(
                "events for a closed billing period are not accepted; nothing was stored", details=closed
            )
        return tenants

    def _claim_expiry(self, event: UsageEvent) -> int:
        end = Month.of(event.timestamp).end + timedelta(days=self.dedup_retention_days)
        return int(end.timestamp())

    def _admit(
        self,
        queries: list[UsageEvent],
        tenants: dict[str, Tenant],
        result: IngestResult,
        batch_id: str,
        expiry: dict[Claim, int],
        previous: dict[Claim, str],
        counted: dict[Claim, str],
    ) -> list[UsageEvent]:
        """Admit each (tenant, month)'s queries in (timestamp, event_id) order against its counter:
        each transaction moves the counter and writes the admitted queries' claims, marked counted
        (``counted`` is extended with them). Returns the queries refused for quota (never claimed)."""
        groups: dict[tuple[str, str], list[UsageEvent]] = defaultdict(list)
        for event in queries:
            groups[(event.tenant_id, str(Month.of(event.timestamp)))].append(event)
        rejected: list[UsageEvent] = []
        for (tenant_id, month), group in sorted(groups.items()):
            tenant = tenants[tenant_id]
            month_end = Month.parse(month).end
            expires = int((month_end + timedelta(days=self.dedup_retention_days)).timestamp())
            ordered = sorted(group, key=lambda e: (e.timestamp, e.event_id))
            group_rejected: list[UsageEvent] = []
            limit: int | None = None
            used = 0
            for start in range(0, len(ordered), MAX_COUNTED_PER_TRANSACTION):
                chunk = ordered[start : start + MAX_COUNTED_PER_TRANSACTION]
                for attempt in range(QUOTA_CAS_ATTEMPTS):
                    used, version = self.ledger.quota_used(tenant_id, month)
                    decision = admit_queries(chunk, used, partial(quota_limit, tenant, self.catalog))
                    if not decision.admitted:
                        break
                    admitted = [Claim(*e.key) for e in decision.admitted]
                    if self.ledger.claim_counted(
                        tenant_id,
                        month,
                        admitted,
                        batch_id,
                        expiry,
                        used_after=decision.used_after,
                        expected_version=version,
                        counter_expires_at=expires,
                        previous={c: previous[c] for c in admitted if c in previous},
                    ):
                        counted.update({c: month for c in admitted})
                        break
                    time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                else:
                    raise ServiceUnavailable(
                        "quota counter is too contended; retry the request", headers={"Retry-After": "1"}
                    )
                used = decision.used_after
                if decision.rejected:
                    limit = decision.limit
                group_rejected.extend(decision.rejected)
            if group_rejected:
                rejected.extend(group_rejected)
                result.quota = {
                    "tenant_id": tenant_id,
                    "month": month,
                    "limit": limit,
                    "used": used,
                    "resets_at": iso(month_end),
                }
                result.rejected_for_quota.extend(
                    {"event_id": e.event_id, "tenant_id": e.tenant_id, "timestamp": iso(e.timestamp)}
                    for e in group_rejected
                )
        return rejected

    def _quota_error(self, result: IngestResult) -> QuotaExceeded:
        quota = result.quota or {}
        resets_at = parse_instant(quota["resets_at"]) if quota.get("resets_at") else self.clock()
        retry_after = max(1, int((resets_at - self.clock()).total_seconds()))
        error = QuotaExceeded(
            f"monthly query quota of {quota.get('limit')} reached for tenant {quota.get('tenant_id')}; "
            f"it resets at {quota.get('resets_at')}",
            details={
                **quota,
                "rejected_for_quota": result.rejected_for_quota,
                "duplicates": result.duplicates,
            },
            headers={"Retry-After": str(retry_after)},
            extra={
                "limit": quota.get("limit"),
                "used": quota.get("used"),
                "resets_at": quota.get("resets_at"),
            },
        )
        return error

    def _store(self, rows: list[StoredEvent], batch_id: str) -> StoreOutcome:
        """Insert block by block; a block ClickHouse did not take goes to the fallback queue. Stops at
        the first block that finds no durable home (later blocks are not tried)."""
        outcome = StoreOutcome()
        for block in blocks(rows):
            try:
                self.store.insert_events(block)
                outcome.kept.extend(block)
                continue
            except StoreRejected as exc:  # a retry cannot fix it: never queued (issue 10, defect 3)
                logger.error(
                    "ClickHouse refused a block as invalid", extra={"batch_id": batch_id, "error": str(exc)}
                )
                outcome.failed, outcome.failure, outcome.reason = block, "rejected", str(exc)
                return outcome
            except StoreUnavailable as exc:
                logger.warning(
                    "ClickHouse insert failed; queueing block",
                    extra={"batch_id": batch_id, "error": str(exc)},
                )
            try:
                self.fallback.send(encode_block(batch_id, block))
                outcome.kept.extend(block)
                outcome.queued = True
            except Exception:  # SQS down as well: this block has no durable home
                logger.exception("fallback queue unavailable", extra={"batch_id": batch_id})
                outcome.failed, outcome.failure = block, "unavailable"
                landed = self._already_stored_rows(block)
                if landed is None:
                    outcome.unsettled = block
                else:
                    outcome.kept.extend(r for r in block if (r.tenant_id, r.event_id) in landed)
                return outcome
        return outcome

    def _already_stored_rows(self, block: list[StoredEvent]) -> set[tuple[str, str]] | None:
        """Which rows of a block whose insert reported failure are in ClickHouse (a timed-out insert
        may have been applied); None when ClickHouse cannot say."""
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for row in block:
            by_tenant[row.tenant_id].append(row.event_id)
        try:
            return {
                (tenant_id, e)
                for tenant_id, ids in by_tenant.items()
                for e in self.store.existing_event_ids(tenant_id, ids)
            }
        except Exception:
            return None


@dataclass
class StoreOutcome:
    """Where a batch's rows went: ``kept`` have a durable home (ClickHouse or the fallback queue);
    ``failed`` is the block that found none (``failure``: "unavailable" or "rejected"), of which
    ``unsettled`` rows may or may not have been applied; rows after it were not tried."""

    kept: list[StoredEvent] = field(default_factory=list)
    queued: bool = False
    failed: list[StoredEvent] | None = None
    failure: str = ""
    reason: str = ""
    unsettled: list[StoredEvent] = field(default_factory=list)
