"""Scheduled alert evaluation (every ALERT_EVALUATION_MINUTES): every tenant's alerts on usage and
spend, fired and resolved once per threshold and period, announced as notices and webhooks
(``billing.alerts.evaluation``). Alerts on queries also fire at ingest."""

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
    return {"triggered": fired, "resolved": len(changes) - fired}
