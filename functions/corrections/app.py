"""POST /v1/corrections: void or amend accepted usage events, each correction applied once;
GET /v1/corrections?tenant_id=..&event_id=..: an event's audit trail (API key required; a tenant's
own key corrects and reads only its own tenant's events)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.errors import InvalidRequest
from billing.kernel.request_body import ID_MAX_LENGTH, ID_PATTERN, raw_body
from billing.runtime import container
from billing.runtime.http import caller, install_error_handlers, json_response
from billing.runtime.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from billing.metering.correction_requests import ItemResult

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.post("/v1/corrections")
@tracer.capture_method
def post_corrections() -> Response:
    from billing.metering.correction_requests import parse_corrections, response_status

    request = app.current_event
    principal = caller(request.raw_event)
    items = parse_corrections(
        raw_body(request.raw_event),
        request.headers.get("content-type"),
        max_bytes=container.settings().max_body_bytes,
    )
    logger.append_keys(tenant_ids=sorted({i.tenant_id for i in items}))
    results = container.correction_service().apply(items, principal)
    applied = sum(r.status == "applied" for r in results)
    metrics.add_metric(name="CorrectionsApplied", unit=MetricUnit.Count, value=applied)
    status = response_status(results)
    body: dict[str, Any] = {"results": [r.to_json() for r in results]}
    if status >= 400:  # every item refused, for one reason: the request's status is that reason's
        body = {
            "error": "corrections_refused",
            "message": "no correction was applied: " + _reasons(results),
            **body,
        }
    return json_response(status, body)


def _reasons(results: list[ItemResult]) -> str:
    return "; ".join(r.error.message for r in results if r.error is not None)


@app.get("/v1/corrections")
@tracer.capture_method
def get_trail() -> Response:
    principal = caller(app.current_event.raw_event)
    params = app.current_event.query_string_parameters or {}
    problems = []
    for name in ("tenant_id", "event_id"):
        value = params.get(name)
        if not value or len(value) > ID_MAX_LENGTH or not re.fullmatch(ID_PATTERN, value):
            problems.append({"field": name, "reason": "required: 1-128 characters of [A-Za-z0-9._:@/+=-]"})
    if problems:
        raise InvalidRequest("tenant_id and event_id are required query parameters", details=problems)
    trail = container.correction_service().trail(params["tenant_id"], params["event_id"], principal)
    return json_response(200, trail, headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
