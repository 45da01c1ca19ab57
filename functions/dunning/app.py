"""Scheduled (EventBridge, daily): pay every dunning retry that is due (day 3, 7, 14 after the
first failure), through Stripe ``invoices.pay`` with one idempotency key per attempt."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    logger.info("dunning run", extra={"scheduled_time": event.get("time")})
    report = container.dunning_service().run_due(
        limit=container.settings().dunning_batch_limit,
        should_stop=lambda: context.get_remaining_time_in_millis() < 30_000,
    )  # the rest waits an hour
    metrics.add_metric(name="DunningRetriesDue", unit=MetricUnit.Count, value=report.due)
    metrics.add_metric(name="DunningRetriesSucceeded", unit=MetricUnit.Count, value=report.succeeded)
    metrics.add_metric(name="DunningRetriesFailed", unit=MetricUnit.Count, value=report.failed)
    metrics.add_metric(name="DunningRetryErrors", unit=MetricUnit.Count, value=report.errors)
    logger.info("dunning run done", extra={k: v for k, v in report.to_json().items() if k != "details"})
    return report.to_json()
