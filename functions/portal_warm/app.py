"""Scheduled preview warming (every 4 minutes): each tenant with usage in the last minutes gets its
month-to-date statement preview rated into the usage page's cache before the one there expires, so
the page reads the cache (``billing.portal.preview_warmer``). Tenants over the run's bounds are logged."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    run = container.preview_warmer().run()
    metrics.add_metric(name="PreviewsWarmed", unit=MetricUnit.Count, value=len(run.warmed))
    metrics.add_metric(name="PreviewsWarmSkipped", unit=MetricUnit.Count, value=len(run.skipped))
    if run.skipped:
        logger.warning(
            f"preview warm skipped {len(run.skipped)} tenants over its bounds: {', '.join(run.skipped)}",
            extra={"skipped": run.skipped},
        )
    if run.nothing_to_bill:
        logger.info("preview warm: nothing to bill", extra={"tenants": run.nothing_to_bill})
    return run.summary()
