"""One call into ingest from an HTTP route, shared by ``POST /v1/events`` and the peer formats'
routes (billing.runtime.peers): the ingest service, the batch's metrics, and the alerts on queries
evaluated from the counters the batch just moved, so every route counts and alerts alike."""

from __future__ import annotations

from collections.abc import Sequence

from aws_lambda_powertools.metrics import MetricUnit

from billing.metering.claims import IngestResult
from billing.metering.events import UsageEvent
from billing.runtime import container
from billing.runtime.observability import logger, metrics
from billing.tenants.access import Principal
from billing.tenants.tenant import Tenant


def ingest_counted(events: Sequence[UsageEvent], principal: Principal) -> IngestResult:
    """``IngestService.ingest`` with the batch's metrics; a refusal is counted and raised as it was."""
    logger.append_keys(tenant_ids=sorted({e.tenant_id for e in events}))
    try:
        result = container.ingest_service().ingest(events, principal)
    except Exception:
        metrics.add_metric(name="EventsRejected", unit=MetricUnit.Count, value=len(events))
        raise
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=len(result.accepted))
    metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=len(result.duplicates))
    metrics.add_metric(
        name="EventsRejectedQuota", unit=MetricUnit.Count, value=len(result.rejected_for_quota)
    )
    if result.queued:
        metrics.add_metric(name="EventsQueued", unit=MetricUnit.Count, value=len(result.accepted))
    if result.accepted:
        queried = sorted({e.tenant_id for e in events if e.queries})
        alert_on_queries([result.tenants[t] for t in queried if t in result.tenants])
    return result


def alert_on_queries(tenants: list[Tenant]) -> None:
    """Alerts on queries are evaluated here, from the counter this request just moved: they fire
    before the answer (billing.alerts.evaluation). A failure is logged, never the request's. The
    tenants are the records ingest read for this batch: the plan and alerts the batch was judged by."""
    if not tenants:
        return
    try:
        evaluator = container.alert_evaluator()
        now = container.clock()()
        for tenant in tenants:
            if evaluator.watches(tenant, "queries", now):
                evaluator.evaluate_tenant(tenant, now, metrics=frozenset({"queries"}))
    except Exception:  # noqa: BLE001 - the usage is stored; the scheduled evaluation retries
        logger.exception("alerts on queries not evaluated at ingest")
