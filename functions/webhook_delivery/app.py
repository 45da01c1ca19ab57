"""SQS consumer: one attempt of each outgoing webhook message (``billing.outgoing_webhooks.delivery.
Relay``): logged (``billing.outgoing_webhooks.delivery_log``), then delivered, queued again after
its backoff, or kept in the dead-letter queue once its attempts are spent. A record that fails here (the queue or a store failing) is reported as a
partial batch failure and SQS hands it back: at least once, nothing lost."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.runtime import container
from billing.runtime.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def attempt(record: SQSRecord) -> None:
    from billing.adapters.aws.webhook_queue import decode

    message = decode(record.body)
    outcome = container.webhook_relay().handle(message)
    if outcome is None:
        return
    result = (
        "delivered"
        if outcome.delivered
        else "dropped"
        if outcome.dropped
        else "retrying"
        if outcome.retry_in is not None
        else "gave_up"
    )
    metrics.add_metric(name=f"Webhooks_{result}", unit=MetricUnit.Count, value=1)
    logger.info(
        "webhook attempt",
        extra={
            "message_id": message.message_id,
            "endpoint_id": message.endpoint_id,
            "attempt": outcome.message.attempts,
            "result": result,
            "status": outcome.answer.status if outcome.answer else None,
            "error": outcome.answer.error if outcome.answer else None,
        },
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=attempt, processor=processor, context=context)
