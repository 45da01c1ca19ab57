"""Scheduled alert evaluation (every ALERT_EVALUATION_MINUTES): every tenant's alerts on usage and
spend, fired and resolved once per threshold and period, announced as notices and webhooks
(``billing.alerts.evaluation``). Alerts on queries also fire at ingest.

Each run then exports every tenant's quota and time zone in force to ``tenant_quotas`` (the
dashboards'), the safety net of the export each plan or calendar change makes: a change effective
later, or one whose export failed, reaches the dashboards within a run. An export that fails is
logged and counted (``TenantQuotaExportFailed``), never failing the alerts' run."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    changes = container.alert_evaluator().evaluate()
    fired = sum(1 for c in changes if c.kind == "alert.triggered")
    metrics.add_metric(name="AlertsTriggered", unit=MetricUnit.Count, value=fired)
    metrics.add_metric(name="AlertsResolved", unit=MetricUnit.Count, value=len(changes) - fired)
    try:
        exported: int | None = container.export_tenant_quotas()
    except Exception:
        logger.exception("tenant quota export failed; the next run exports them")
        metrics.add_metric(name="TenantQuotaExportFailed", unit=MetricUnit.Count, value=1)
        exported = None
    return {"triggered": fired, "resolved": len(changes) - fired, "quotas_exported": exported}
