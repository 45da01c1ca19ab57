"""The close (EventBridge schedule, every hour at :15 UTC): on the 1st and 2nd of a month, the close
of the previous UTC month (rate it, store statements, write the CSV, enqueue invoicing jobs; a re-run
changes nothing), and every hour the close of each tenant calendar period that has ended
(billing.statements.period_close: each once). ``{"month": "YYYY-MM"}`` re-runs a given month only.
While the usage fallback queue is not drained it raises, so the invocation is retried later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.periods import Month, parse_instant, parse_month
from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer

# The month close runs in the first hours of a month, as its own schedule did (and retries hourly
# until then); the statements it stored are never rated again, so later runs would only re-list them.
MONTH_CLOSE_WINDOW = timedelta(days=2)


def scheduled_at(event: dict[str, Any]) -> datetime:
    return parse_instant(event["time"]) if isinstance(event.get("time"), str) else datetime.now(UTC)


def explicit_month(event: dict[str, Any]) -> Month | None:
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    explicit = event.get("month") or detail.get("month")
    return parse_month(str(explicit)) if explicit else None


def target_month(event: dict[str, Any]) -> Month:
    """The month named in the event, else the month before the scheduled time (or now)."""
    return explicit_month(event) or Month.of(scheduled_at(event)).previous()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    month = explicit_month(event)
    when = scheduled_at(event)
    summary: dict[str, Any] = {}
    created = enqueued = 0
    if month is not None or when < Month.of(when).start + MONTH_CLOSE_WINDOW:
        month = month or Month.of(when).previous()
        logger.append_keys(month=str(month))
        result = container.billing_cycle().close(month)
        summary.update(result.summary())
        created, enqueued = len(result.created), len(result.enqueued)
    if explicit_month(event) is None:
        periods = container.tenant_period_close().close_due(when)
        summary["tenant_periods"] = periods.summary()
        created += periods.summary()["statements_created"]
        enqueued += periods.summary()["jobs_enqueued"]
    metrics.add_metric(name="StatementsCreated", unit=MetricUnit.Count, value=created)
    metrics.add_metric(name="InvoicingJobsEnqueued", unit=MetricUnit.Count, value=enqueued)
    return summary
