"""Webhook endpoints API: where the SaaS wants our outgoing webhooks, the event types each wants,
and each one's signing secret (API Gateway REST, platform API key only; the domain decides who may,
``billing.outgoing_webhooks.endpoints``). A secret is in the answer only when it is made: on
registration and on rotation."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.errors import InvalidRequest
from billing.runtime import container
from billing.runtime.http import caller, install_error_handlers, json_response, request_body
from billing.runtime.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.post("/v1/webhook-endpoints")
def register() -> Response:
    from billing.kernel.validation import parse_model
    from billing.outgoing_webhooks.endpoints import EndpointRequest

    principal = caller(app.current_event)
    request = parse_model(EndpointRequest, request_body(app.current_event))
    endpoint, secret, created = container.webhook_endpoint_service().registered(request, principal)
    logger.append_keys(endpoint_id=endpoint.id)
    # the same URL and event types again (a retried request): the existing endpoint, 200
    return json_response(201 if created else 200, {**endpoint.model_dump(mode="json"), "secret": secret})


@app.get("/v1/webhook-endpoints")
def list_endpoints() -> Response:
    endpoints = container.webhook_endpoint_service().endpoints(caller(app.current_event))
    return json_response(200, {"endpoints": [e.model_dump(mode="json") for e in endpoints]})


@app.get("/v1/webhook-endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str) -> Response:
    endpoint = container.webhook_endpoint_service().get(endpoint_id, caller(app.current_event))
    return json_response(200, endpoint.model_dump(mode="json"))


@app.delete("/v1/webhook-endpoints/<endpoint_id>")
def delete_endpoint(endpoint_id: str) -> Response:
    endpoint = container.webhook_endpoint_service().delete(endpoint_id, caller(app.current_event))
    return json_response(200, {**endpoint.model_dump(mode="json"), "deleted": True})


@app.post("/v1/webhook-endpoints/<endpoint_id>/enable")
def enable(endpoint_id: str) -> Response:
    endpoint = container.webhook_endpoint_service().enable(endpoint_id, caller(app.current_event))
    return json_response(200, endpoint.model_dump(mode="json"))


@app.post("/v1/webhook-endpoints/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: str) -> Response:
    from billing.kernel.validation import parse_model
    from billing.outgoing_webhooks.endpoints import RotateRequest

    principal = caller(app.current_event)
    request = parse_model(RotateRequest, request_body(app.current_event))
    endpoint, secret = container.webhook_endpoint_service().rotate_secret(endpoint_id, request, principal)
    return json_response(200, {**endpoint.model_dump(mode="json"), "secret": secret})


@app.get("/v1/webhook-endpoints/<endpoint_id>/deliveries")
def deliveries(endpoint_id: str) -> Response:
    from billing.outgoing_webhooks.delivery_log import DEFAULT_PAGE, MAX_PAGE

    query = app.current_event.query_string_parameters or {}
    limit = query.get("limit", str(DEFAULT_PAGE))
    if not limit.isdigit() or len(limit) > 4:
        raise InvalidRequest(
            f"limit must be 1 to {MAX_PAGE}", details=[{"field": "limit", "reason": "not a number"}]
        )
    attempts, cursor = container.webhook_deliveries().page(
        endpoint_id, caller(app.current_event), limit=int(limit), cursor=query.get("cursor")
    )
    return json_response(200, {"deliveries": [a.as_json() for a in attempts], "next_cursor": cursor})


@app.post("/v1/webhook-endpoints/<endpoint_id>/deliveries/<message_id>/resend")
def resend(endpoint_id: str, message_id: str) -> Response:
    message = container.webhook_deliveries().resend(endpoint_id, message_id, caller(app.current_event))
    logger.append_keys(endpoint_id=endpoint_id, message_id=message_id)
    return json_response(
        202,
        {
            "endpoint_id": endpoint_id,
            "message_id": message.message_id,
            "event_type": message.event_type,
            "queued": True,
        },
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
