"""Monthly query quotas: which plan limit applies, and which queries of a batch are admitted."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Protocol

from billing.catalog.plans import PlanCatalog
from billing.kernel.periods import Month, iso
from billing.metering.events import UsageEvent
from billing.metering.quota_windows import quota_window
from billing.runtime.observability import logger
from billing.tenants.tenant import Tenant, TenantStore

Limit = int | None  # None = unlimited


def quota_limit(tenant: Tenant, catalog: PlanCatalog, instant: datetime) -> Limit:
    """The hard query limit of the plan in force at ``instant`` (its query_quota, or its hard limit
    on queries); the tenant's own quota before plans exist."""
    plan_id = tenant.plan_at(instant)
    if plan_id is None:
        return tenant.query_quota
    return catalog.get(plan_id).hard_query_limit


def quota_schedule(tenant: Tenant, catalog: PlanCatalog) -> Callable[[datetime], Limit]:
    """``quota_limit(tenant, catalog, instant)`` for many instants: the plan history is sorted once
    and the plan in force found by bisection (the last assignment effective at or before the instant,
    as ``Tenant.plan_at`` takes it), so each answer is ``quota_limit``'s."""
    plans = tenant.sorted_plans()
    starts = [p.effective_at for p in plans]
    try:  # each segment's limit, found once (ingest asks twice per query)
        limits = [tenant.query_quota] + [catalog.get(p.plan).hard_query_limit for p in plans]
    except KeyError:  # a plan the catalog lacks: raise only when an instant falls in its segment
        pass
    else:
        return lambda instant: limits[bisect.bisect_right(starts, instant)]

    def limit_at(instant: datetime) -> Limit:
        index = bisect.bisect_right(starts, instant)
        if index == 0:
            return tenant.query_quota
        return catalog.get(plans[index - 1].plan).hard_query_limit

    return limit_at


@dataclass(frozen=True)
class Admission:
    admitted: list[UsageEvent]
    rejected: list[UsageEvent]
    used_after: int
    limit: Limit  # the limit that rejected the first refused query (or the last one applied)


def admit_queries(
    queries: Sequence[UsageEvent], used: int, limit_at: Callable[[datetime], Limit]
) -> Admission:
    """Admit queries in (timestamp, event_id) order while the month's count is below the limit in
    force at each query's time. Pure: the caller persists ``used_after`` with compare-and-set."""
    admitted: list[UsageEvent] = []
    rejected: list[UsageEvent] = []
    last_limit: Limit = None
    for event in sorted(queries, key=attrgetter("timestamp", "event_id")):
        limit = limit_at(event.timestamp)
        if limit is None or used < limit:
            admitted.append(event)
            used += 1
            if not rejected:
                last_limit = limit
        else:
            if not rejected:
                last_limit = limit
            rejected.append(event)
    return Admission(admitted, rejected, used, last_limit)


class QuotaCounters(Protocol):
    def quota_used(self, tenant_id: str, month: str) -> tuple[int, int | None]: ...

    def quota_set(
        self, tenant_id: str, month: str, used: int, expected_version: int | None, expires_at: int
    ) -> bool: ...


@dataclass(frozen=True)
class Repair:
    tenant_id: str
    month: str
    counted: int  # the counter before
    stored: int  # the month's stored queries (ClickHouse, each event once)


def reconcile_quotas(
    month: Month,
    tenant_ids: Iterable[str],
    stored_queries: Mapping[str, int],
    counters: QuotaCounters,
    *,
    retention_days: int = 70,
) -> list[Repair]:
    """Set every drifted (tenant, month) quota counter to the month's stored queries, logging each
    repair. Run where no ingest for ``month`` can happen any more (the monthly close, after the
    close is recorded and the fallback queue drained), or from ``billing quota reconcile``: a
    counter moved by a concurrent batch is re-read and compared again (compare-and-set)."""
    repairs: list[Repair] = []
    expires = int((month.end + timedelta(days=retention_days)).timestamp())
    for tenant_id in sorted(set(tenant_ids) | set(stored_queries)):
        stored = int(stored_queries.get(tenant_id, 0))
        for _ in range(20):
            used, version = counters.quota_used(tenant_id, str(month))
            if used == stored or (version is None and stored == 0):
                break
            if counters.quota_set(tenant_id, str(month), stored, version, expires):
                repair = Repair(tenant_id, str(month), used, stored)
                logger.warning(
                    "quota counter repaired",
                    extra={"tenant_id": tenant_id, "month": str(month), "counted": used, "stored": stored},
                )
                repairs.append(repair)
                break
    return repairs


class QuotaReconciler:
    """Repairs a month's drifted quota counters from the stored usage (``billing quota reconcile``,
    the close), over every tenant on record and every tenant with stored queries."""

    def __init__(
        self,
        tenants: TenantStore,
        stored_queries: Callable[[Month], Mapping[str, int]],
        counters: QuotaCounters,
        *,
        retention_days: int = 70,
    ):
        self.tenants, self.stored_queries, self.counters = tenants, stored_queries, counters
        self.retention_days = retention_days

    def __call__(self, month: Month) -> list[Repair]:
        """Tenants whose quota counts per their own calendar period have no counter for ``month``."""
        tenants = self.tenants.list_all()
        own = {t.id for t in tenants if quota_window(t, month.start).key != str(month)}
        return reconcile_quotas(
            month,
            [t.id for t in tenants if t.id not in own],
            {t: n for t, n in self.stored_queries(month).items() if t not in own},
            self.counters,
            retention_days=self.retention_days,
        )


class QuotaReads(Protocol):
    def read(self, tenant_id: str, month: str) -> tuple[Tenant | None, int]:
        """The tenant and its month's query counter, both read with strong consistency."""
        ...

    def read_counters(self, tenant_id: str, month: str) -> tuple[Tenant | None, int, dict[str, Decimal]]:
        """``read``, and the month's hard-limited metric counters, in the same strong read."""
        ...


@dataclass(frozen=True)
class QuotaStatus:
    """What the quota gate reads: the month's query count as ingest counts it, against the limit of
    the plan in force now. ``limit``/``remaining`` are None for an unlimited plan. ``limits``: each
    hard limit of that plan (queries included) as (metric, limit, used), ``used`` the very counter
    ingest moves with each claim; listed in the JSON when the plan limits a metric other than
    queries."""

    tenant_id: str
    limit: Limit
    used: int
    resets_at: datetime
    plan: str | None
    payment_status: str
    limits: tuple[tuple[str, Decimal, Decimal], ...] = ()

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "limit": self.limit,
            "used": self.used,
            "remaining": self.remaining,
            "resets_at": iso(self.resets_at),
            "plan": self.plan,
            "payment_status": self.payment_status,
            # a plan limiting queries only keeps the body it always had
            **(
                {
                    "limits": [
                        {
                            "metric": metric,
                            "limit": _number(metric, limit),
                            "used": _number(metric, used),
                            "remaining": _number(metric, max(Decimal(0), limit - used)),
                        }
                        for metric, limit, used in self.limits
                    ]
                }
                if any(metric != "queries" for metric, _, _ in self.limits)
                else {}
            ),
        }


def _number(metric: str, value: Decimal) -> int | str:
    """A query count as an integer (as ``limit`` and ``used``); a metric's exact decimal as text."""
    return int(value) if metric == "queries" else f"{value.normalize():f}"


def quota_status(
    tenant: Tenant,
    catalog: PlanCatalog,
    used: int,
    now: datetime,
    counters: Mapping[str, Decimal] | None = None,
) -> QuotaStatus:
    """The tenant's quota at ``now``. ``used`` (queries) and ``counters`` (hard-limited metrics) must
    be the very counters ingest moves in the same transaction as each claim (``QuotaReads.read`` of
    ``quota_window(tenant, now).key``), read consistently, so the gate never sees a count ingest has
    not settled, nor a stale replica. ``resets_at`` is the end of that window: the tenant's next
    period start, in its time zone."""
    plan_id = tenant.plan_at(now)
    query_limit = quota_limit(tenant, catalog, now)
    limits: list[tuple[str, Decimal, Decimal]] = []
    if query_limit is not None:
        limits.append(("queries", Decimal(query_limit), Decimal(used)))
    if plan_id is not None:
        for metric, limit in sorted(catalog.get(plan_id).hard_metric_limits.items()):
            limits.append((metric, limit, (counters or {}).get(metric, Decimal(0))))
    return QuotaStatus(
        limits=tuple(limits),
        tenant_id=tenant.id,
        limit=quota_limit(tenant, catalog, now),
        used=used,
        resets_at=quota_window(tenant, now).end,
        plan=tenant.plan_at(now),
        payment_status=tenant.payment_status,
    )
