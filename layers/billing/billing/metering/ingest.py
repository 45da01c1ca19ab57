"""Usage ingestion: admit a batch (validate, price, authorize), then have it claimed once, counted
against quotas, stored and committed (``billing.metering.claims.ClaimedBatch``).

Order of work for a batch (nothing is written before every check has passed):
1. parse + price every event (400 lists each bad event's index, field and reason; an event dated
   more than ``MAX_FUTURE_SKEW`` ahead is one, and so is one whose ``type`` the catalog does not
   define, or whose priced measure is missing);
2. tenant checks: ``Principal.authorize`` (unknown 404 for platform keys; unknown or foreign 403 for
   any other key), suspended (402), cancelled or before its first plan (403), month closed (409);
3. claim every new event id, admit queries against the quota counter, store, commit: a
   ``ClaimedBatch``, built per request from this service's collaborators as they are at that moment.
   ``billing.metering.claims`` states the exactly-once invariants, the admission rule and every
   failure path.

A refusal in steps 1 and 2 leaves no trace: no claim, no count, no row.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from billing.catalog.plans import PlanCatalog
from billing.kernel.calendar import Period
from billing.kernel.errors import Conflict, Forbidden, InvalidRequest, PaymentRequired
from billing.kernel.periods import Month, PeriodStore, iso, month_keys
from billing.metering.claims import CLAIM_LEASE_SECONDS, ClaimedBatch, IngestResult
from billing.metering.events import StoredEvent, UsageEvent, unknown_type
from billing.metering.exactly_once import UsageLedger
from billing.metering.price_book import MissingMeasure, NoPriceVersion, PriceBook, UnknownModel
from billing.metering.storing import FallbackQueue, UsageStore
from billing.runtime.observability import logger
from billing.tenants.access import PLATFORM, Principal
from billing.tenants.closed_periods import close_key, has_own_periods
from billing.tenants.tenant import Tenant, TenantStore

__all__ = ["PLATFORM", "IngestResult", "IngestService", "Principal"]

# How far ahead of our clock an event may be dated (client clock skew). A later event is a 400: it
# would be billed, and count against the quota, of a month that has not begun.
MAX_FUTURE_SKEW = timedelta(minutes=5)


class IngestService:
    """Admits each batch and hands it to a ``ClaimedBatch``. Its collaborators and settings are
    plain attributes, read anew for every request (a test or the demo may swap ``store``,
    ``fallback``, ``ledger``, ``claim_wait_seconds`` or ``now_s`` between requests); a batch never
    sees this object."""

    def __init__(
        self,
        *,
        tenants: TenantStore,
        ledger: UsageLedger,
        periods: PeriodStore,
        store: UsageStore,
        fallback: FallbackQueue,
        price_book: PriceBook,
        catalog: PlanCatalog,
        dedup_retention_days: int = 70,
        claim_wait_seconds: float = 10.0,
        clock: Callable[[], datetime] | None = None,
        max_future_skew: timedelta = MAX_FUTURE_SKEW,
        lease_clock: Callable[[], float] | None = None,
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
        self.claim_wait_seconds = claim_wait_seconds
        self.claim_lease_seconds = CLAIM_LEASE_SECONDS
        self.clock = clock or (lambda: datetime.now(UTC))
        # Claim leases measure Lambda lifetimes (epoch seconds), not billing time; tests advance this
        # clock to let a dead request's lease run out.
        self.now_s: Callable[[], float] = lease_clock or time.time

    # ------------------------------------------------------------------------------------------
    def ingest(self, events: Sequence[UsageEvent], principal: Principal | None = None) -> IngestResult:
        principal = principal or PLATFORM
        now = self.clock()
        priced = self._price(events, now)
        months = month_keys([e.timestamp for e in events])  # each event's (year, month), in order
        tenants = self._check_tenants(events, principal, months)
        batch_id = uuid.uuid4().hex
        result = ClaimedBatch(
            events,
            months,
            priced,
            tenants,
            batch_id,
            ledger=self.ledger,
            store=self.store,
            fallback=self.fallback,
            catalog=self.catalog,
            retention_days=self.dedup_retention_days,
            claim_wait_seconds=self.claim_wait_seconds,
            lease_seconds=self.claim_lease_seconds,
            lease_clock=self.now_s,
            clock=self.clock,
        ).run()
        result.tenants = tenants
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

    # ------------------------------------------------------------------------------------------
    def _price(self, events: Sequence[UsageEvent], now: datetime) -> dict[tuple[str, str], StoredEvent]:
        priced: dict[tuple[str, str], StoredEvent] = {}
        problems = []
        latest = now + self.max_future_skew
        known = self.catalog.event_types
        for index, event in enumerate(events):
            if (
                event.type not in known
            ):  # parse_body checks it too, to list it with the batch's other problems
                problems.append(unknown_type(index, event.type, known))
                continue
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
            except MissingMeasure as exc:
                problems.append({"index": index, "field": exc.field, "reason": str(exc)})
                continue
            priced[event.key] = event.stored(cost.cost_usd, cost.price_version, now)
        if problems:
            raise InvalidRequest(f"{len(problems)} invalid event(s); nothing was stored", details=problems)
        return priced

    def _closed_own_periods(self, tenant: Tenant, events: Sequence[UsageEvent]) -> list[dict[str, str]]:
        """The closed periods of ``tenant``'s own calendar that ``events`` fall in (one entry each)."""
        history = tenant.calendar_history()
        periods: dict[str, Period] = {}
        for event in events:
            period = history.period_of(event.timestamp)
            periods.setdefault(period.key, period)
        found = []
        for key, period in sorted(periods.items(), key=lambda kv: kv[1].start):
            closed_at = self.periods.closed_at(close_key(tenant.id, period))
            if closed_at is not None:
                found.append(
                    {
                        "field": "timestamp",
                        "month": key,
                        "reason": f"billing period {period.label()} of {tenant.id} was closed at {iso(closed_at)}",
                    }
                )
        return found

    def _check_tenants(
        self, events: Sequence[UsageEvent], principal: Principal, months: Sequence[tuple[int, int]]
    ) -> dict[str, Tenant]:
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
        bounds = {t: (tenant.canceled_at, tenant.first_plan_at()) for t, tenant in tenants.items()}
        checked: Sequence[UsageEvent] = events
        if len(ids) == 1:  # the usual batch: when its earliest and latest events are inside, all are
            canceled_at, first_plan_at = bounds[ids[0]]
            stamps = [e.timestamp for e in events]
            if (canceled_at is None or max(stamps) < canceled_at) and (
                first_plan_at is None or min(stamps) >= first_plan_at
            ):
                checked = ()
        for index, event in enumerate(checked):
            tenant = tenants[event.tenant_id]
            canceled_at, first_plan_at = bounds[event.tenant_id]
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
        own = {t for t, tenant in tenants.items() if has_own_periods(tenant)}
        if own:  # those tenants' events are checked against their own periods' closes
            months = [key for e, key in zip(events, months) if e.tenant_id not in own]
        for month in sorted(Month(*key) for key in set(months)):
            closed_at = self.periods.closed_at(month)
            if closed_at is not None:
                closed.append(
                    {
                        "field": "timestamp",
                        "month": str(month),
                        "reason": f"billing period {month} was closed at {iso(closed_at)}",
                    }
                )
        for tenant_id in sorted(own):
            closed += self._closed_own_periods(
                tenants[tenant_id], [e for e in events if e.tenant_id == tenant_id]
            )
        if closed:
            raise Conflict(
                "events for a closed billing period are not accepted; nothing was stored", details=closed
            )
        return tenants
