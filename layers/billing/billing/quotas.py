"""Monthly query quotas: which plan limit applies, and which queries of a batch are admitted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from billing.events import UsageEvent
from billing.plans import PlanCatalog
from billing.tenants import Tenant

Limit = int | None  # None = unlimited


def quota_limit(tenant: Tenant, catalog: PlanCatalog, instant: datetime) -> Limit:
    """The query_quota of the plan in force at ``instant``; the tenant's own quota before plans exist."""
    plan_id = tenant.plan_at(instant)
    if plan_id is None:
        return tenant.query_quota
    return catalog.get(plan_id).query_quota


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
    for event in sorted(queries, key=lambda e: (e.timestamp, e.event_id)):
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
