"""Monthly close (EventBridge schedule, 1st of the month 00:15 UTC): rate the previous month, store
statements, write the CSV, enqueue invoicing jobs. ``{"month": "YYYY-MM"}`` re-runs a given month.
While the usage fallback queue is not drained it raises, so the invocation is retried later."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.periods import Month, parse_instant, parse_month
from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer


def target_month(event: dict[str, Any]) -> Month:
    """The month named in the event, else the month before the scheduled time (or now)."""
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    explicit = event.get("month") or detail.get("month")
    if explicit:
        return parse_month(str(explicit))
    when = parse_instant(event["time"]) if isinstance(event.get("time"), str) else datetime.now(UTC)
    return Month.of(when).previous()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    month = target_month(event)
    logger.append_keys(month=str(month))
    result = container.billing_cycle().close(month)
    metrics.add_metric(name="StatementsCreated", unit=MetricUnit.Count, value=len(result.created))
    metrics.add_metric(name="InvoicingJobsEnqueued", unit=MetricUnit.Count, value=len(result.enqueued))
    return result.summary()
