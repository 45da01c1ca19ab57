"""SQS consumer: store usage blocks that were queued while ClickHouse was unavailable.

Each message is one block with its original dedup token; a failing message is reported as a
partial batch failure, retried by SQS, and moved to the DLQ after maxReceiveCount attempts.
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
def replay(record: SQSRecord) -> None:
    from billing.metering.fallback import replay_block

    stored = replay_block(record.body, container.usage_store())
    metrics.add_metric(name="EventsReplayed", unit=MetricUnit.Count, value=stored)
    logger.info("fallback block replayed", extra={"message_id": record.message_id, "stored": stored})


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(event=event, record_handler=replay, processor=processor, context=context)
