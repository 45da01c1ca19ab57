"""SQS consumer: invoice one statement per message in Stripe (``{"tenant_id": ..., "month": ...}``).

Each job is idempotent (billing.invoicing): a message delivered twice, or retried after a crash at
any step, ends with one Stripe invoice holding each statement line once. A declined card is an
outcome (state ``payment_failed``, dunning takes over), not a failure. A failing message (bad body,
Stripe refusing a request, a total mismatch) is reported as a partial batch failure, retried by SQS
and moved to the InvoicingDLQ after maxReceiveCount attempts.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def invoice(record: SQSRecord) -> dict:
    from billing.invoicing import parse_job

    job = parse_job(record.body)
    logger.append_keys(tenant_id=job.tenant_id, month=job.month)
    try:
        outcome = container.invoicing_service().invoice(job.tenant_id, job.month)
    except Exception:
        metrics.add_metric(
            name="InvoicingJobsFailed", unit=MetricUnit.Count, value=1
        )  # InvoicingJobFailuresAlarm
        logger.exception(
            "invoicing job failed",
            extra={
                "message_id": record.message_id,
                "receive_count": record.attributes.approximate_receive_count,
            },
        )
        raise
    finally:
        logger.remove_keys(["tenant_id", "month"])
    metrics.add_metric(name=f"Invoices_{outcome.state}", unit=MetricUnit.Count, value=1)
    logger.info("invoicing job done", extra=outcome.summary())
    return outcome.summary()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=invoice, processor=processor, context=context)
