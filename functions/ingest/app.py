"""POST /v1/events: accept a batch of usage events (API Gateway REST, API key required); and the
same ingest in the peers' formats (OpenMeter, Lago, Segment: billing.runtime.peers), whose caller
the peer authorizer names from Bearer or Basic credentials."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.request_body import raw_body
from billing.runtime import container
from billing.runtime.http import caller, install_error_handlers, json_response
from billing.runtime.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.post("/v1/events")
@tracer.capture_method
def ingest_events() -> Response:
    from billing.metering.events import parse_body

    request = app.current_event
    principal = caller(request.raw_event)
    settings = container.settings()
    events = parse_body(
        raw_body(request.raw_event),
        request.headers.get("content-type"),
        max_bytes=settings.max_body_bytes,
        max_events=settings.max_batch_events,
        event_types=container.plan_catalog().event_types,
    )
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
        alert_on_queries(sorted({e.tenant_id for e in events if e.queries}))
    return json_response(202, result.body())


def alert_on_queries(tenant_ids: list[str]) -> None:
    """Alerts on queries are evaluated here, from the counter this request just moved: they fire
    before the answer (billing.alerts.evaluation). A failure is logged, never the request's."""
    if not tenant_ids:
        return
    try:
        evaluator = container.alert_evaluator()
        now = container.clock()()
        for tenant in container.tenants().get_many(tenant_ids).values():
            if evaluator.watches(tenant, "queries", now):
                evaluator.evaluate_tenant(tenant, now, metrics=frozenset({"queries"}))
    except Exception:  # noqa: BLE001 - the usage is stored; the scheduled evaluation retries
        logger.exception("alerts on queries not evaluated at ingest")


@app.post("/openmeter/api/v1/events")
@tracer.capture_method
def openmeter_ingest() -> Response:
    from billing.runtime.peers import openmeter_events

    return openmeter_events(app.current_event.raw_event)


@app.post("/lago/api/v1/events")
@tracer.capture_method
def lago_event() -> Response:
    from billing.runtime.peers import lago_events

    return lago_events(app.current_event.raw_event, batch=False)


@app.post("/lago/api/v1/events/batch")
@tracer.capture_method
def lago_batch() -> Response:
    from billing.runtime.peers import lago_events

    return lago_events(app.current_event.raw_event, batch=True)


@app.post("/segment/v1/batch")
@tracer.capture_method
def segment_batch() -> Response:
    from billing.runtime.peers import segment_messages

    return segment_messages(app.current_event.raw_event, batch=True)


@app.post("/segment/v1/track")
@tracer.capture_method
def segment_track() -> Response:
    from billing.runtime.peers import segment_messages

    return segment_messages(app.current_event.raw_event, batch=False)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
