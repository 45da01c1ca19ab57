"""POST /v1/events: accept a batch of usage events (API Gateway REST, API key required); and the
same ingest in the peers' formats (OpenMeter, Lago, Segment: billing.runtime.peers), whose caller
the peer authorizer names from Bearer or Basic credentials."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
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
    from billing.runtime.ingest_calls import ingest_counted

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
    result = ingest_counted(events, principal)
    return json_response(202, result.body())


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
