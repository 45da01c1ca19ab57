"""Usage ingestion: validate, authorize, claim event ids once, enforce quotas, price, store.

Order of work for a batch (nothing is written before every check has passed):
1. parse + price every event (400 lists each bad event's index, field and reason);
2. tenant checks: unknown (404), key not allowed (403), suspended (402), cancelled or before its
   first plan (403), month already closed (409);
3. claim (tenant_id, event_id) in the DynamoDB ledger: duplicates are acknowledged, never re-stored;
4. admit queries against the month's quota with compare-and-set (exact under concurrency);
5. insert into ClickHouse in blocks carrying a dedup token; a failed block goes to the SQS fallback
   queue with the same token; if SQS fails too, claims and quota are given back and we answer 503.
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
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    QuotaExceeded,
    ServiceUnavailable,
    StoreUnavailable,
)
from billing.events import StoredEvent, UsageEvent
from billing.exactly_once import Claim, TenantBusy, UsageLedger
from billing.fallback import blocks, encode_block
from billing.observability import logger
from billing.periods import Month, iso, parse_instant
from billing.plans import PlanCatalog
from billing.pricing import NoPriceVersion, PriceBook, UnknownModel
from billing.quotas import admit_queries, quota_limit
from billing.tenants import Tenant, TenantStore

QUOTA_CAS_ATTEMPTS = 50


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API Gateway API key id, and whether it may write for every tenant."""

    api_key_id: str | None
    platform: bool = False


PLATFORM = Principal(api_key_id=None, platform=True)


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
    def insert_events(self, events: Sequence[StoredEvent]) -> None: ...


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
    ):
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
        outcome = self.ledger.claim(list(claims.values()), batch_id, expiry)
        claimed_keys = {(c.tenant_id, c.event_id) for c in outcome.claimed}
        result = IngestResult(duplicates=[c.event_id for c in outcome.duplicates])
        fresh = [e for e in events if e.key in claimed_keys]

        rejected, counted = self._admit(fresh, tenants, result)
        rejected_keys = {e.key for e in rejected}
        if rejected:
            self.ledger.release([claims[k] for k in rejected_keys], batch_id)
        to_store = [priced[e.key] for e in fresh if e.key not in rejected_keys]
        if not to_store:
            if rejected:
                raise self._quota_error(result)
            return result
        try:
            result.queued = self._store(to_store, batch_id)
        except ServiceUnavailable:
            self.ledger.release([claims[(s.tenant_id, s.event_id)] for s in to_store], batch_id)
            for (tenant_id, month), count in counted.items():
                self.ledger.quota_give_back(tenant_id, month, count)
            raise
        self.ledger.commit_batch(batch_id, max(expiry.values()), events=len(to_store), queued=result.queued)
        result.accepted = [s.event_id for s in to_store]
        return result

    # ------------------------------------------------------------------------------------------
    def _price(self, events: Sequence[UsageEvent], now: datetime) -> dict[tuple[str, str], StoredEvent]:
        priced: dict[tuple[str, str], StoredEvent] = {}
        problems = []
        for index, event in enumerate(events):
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
        missing = [t for t in ids if t not in tenants]
        if missing:
            raise NotFound(
                f"unknown tenant(s): {', '.join(missing)}; nothing was stored",
                details=[{"field": "tenant_id", "tenant_id": t, "reason": "unknown tenant"} for t in missing],
            )
        if not principal.platform:
            foreign = [t for t in ids if principal.api_key_id not in tenants[t].api_key_ids]
            if foreign:
                raise Forbidden(
                    f"this API key may not write usage for tenant(s): {', '.join(foreign)}",
                    details=[
                        {"field": "tenant_id", "tenant_id": t, "reason": "not this key's tenant"}
                        for t in foreign
                    ],
                )
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
        self, fresh: list[UsageEvent], tenants: dict[str, Tenant], result: IngestResult
    ) -> tuple[list[UsageEvent], dict[tuple[str, str], int]]:
        """Admit each (tenant, month)'s queries with compare-and-set on its counter."""
        groups: dict[tuple[str, str], list[UsageEvent]] = defaultdict(list)
        for event in fresh:
            if event.queries:
                groups[(event.tenant_id, str(Month.of(event.timestamp)))].append(event)
        admitted: list[UsageEvent] = []
        rejected: list[UsageEvent] = []
        counted: dict[tuple[str, str], int] = {}
        for (tenant_id, month), queries in sorted(groups.items()):
            tenant = tenants[tenant_id]
            month_end = Month.parse(month).end
            expires = int((month_end + timedelta(days=self.dedup_retention_days)).timestamp())
            for attempt in range(QUOTA_CAS_ATTEMPTS):
                used, version = self.ledger.quota_used(tenant_id, month)
                decision = admit_queries(queries, used, partial(quota_limit, tenant, self.catalog))
                if not decision.admitted:
                    break
                if self.ledger.quota_set(tenant_id, month, decision.used_after, version, expires):
                    break
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            else:
                raise ServiceUnavailable(
                    "quota counter is too contended; retry the request", headers={"Retry-After": "1"}
                )
            admitted.extend(decision.admitted)
            counted[(tenant_id, month)] = len(decision.admitted)
            if decision.rejected:
                rejected.extend(decision.rejected)
                used_now = decision.used_after
                result.quota = {
                    "tenant_id": tenant_id,
                    "month": month,
                    "limit": decision.limit,
                    "used": used_now,
                    "resets_at": iso(month_end),
                }
                result.rejected_for_quota.extend(
                    {"event_id": e.event_id, "tenant_id": e.tenant_id, "timestamp": iso(e.timestamp)}
                    for e in decision.rejected
                )
        return rejected, counted

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

    def _store(self, rows: list[StoredEvent], batch_id: str) -> bool:
        """Insert block by block; a failed block goes to the fallback queue. True if anything was queued."""
        queued = False
        for block in blocks(rows):
            try:
                self.store.insert_events(block)
                continue
            except StoreUnavailable as exc:
                logger.warning(
                    "ClickHouse insert failed; queueing block",
                    extra={"batch_id": batch_id, "error": str(exc)},
                )
            try:
                self.fallback.send(encode_block(batch_id, block))
                queued = True
            except Exception as exc:  # SQS down as well: nothing of this request may be acknowledged
                logger.exception("fallback queue unavailable", extra={"batch_id": batch_id})
                raise ServiceUnavailable(
                    "usage store and fallback queue are both unavailable; nothing was "
                    "accepted, retry the request",
                    headers={"Retry-After": "5"},
                ) from exc
        return queued
