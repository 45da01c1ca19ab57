"""Tenants API: signup, plan changes, cancellation and statements (API Gateway REST, API key)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import container
from billing.errors import Forbidden, InvalidRequest
from billing.http import install_error_handlers, json_response
from billing.observability import logger, metrics, tracer
from billing.tenant_service import CancelRequest, PlanChangeRequest, SignupRequest, parse_month, parse_request

app = APIGatewayRestResolver()
install_error_handlers(app)


def _body() -> Any:
    try:
        return json.loads(app.current_event.decoded_body or "{}")
    except ValueError as exc:
        raise InvalidRequest(
            "request body is not valid JSON", details=[{"field": "body", "reason": str(exc)}]
        ) from None


def _caller(tenant_id: str | None = None) -> None:
    """Platform keys manage every tenant; a tenant's own key may only read its statements."""
    principal = container.principal_for(app.current_event.request_context.identity.api_key_id)
    if principal.platform:
        return
    if tenant_id is None or principal.api_key_id not in container.tenant_service().get(tenant_id).api_key_ids:
        raise Forbidden(
            "this API key may not manage tenants", details=[{"field": "x-api-key", "reason": "not allowed"}]
        )


@app.post("/v1/tenants")
def signup() -> Response:
    _caller()
    tenant, created = container.tenant_service().signup(parse_request(SignupRequest, _body()))
    logger.append_keys(tenant_id=tenant.id)
    return json_response(201 if created else 200, tenant.model_dump(mode="json"))


@app.post("/v1/tenants/<tenant_id>/plan")
def change_plan(tenant_id: str) -> Response:
    _caller()
    tenant = container.tenant_service().change_plan(tenant_id, parse_request(PlanChangeRequest, _body()))
    return json_response(200, tenant.model_dump(mode="json"))


@app.post("/v1/tenants/<tenant_id>/cancel")
def cancel(tenant_id: str) -> Response:
    _caller()
    tenant, statement = container.tenant_service().cancel(tenant_id, parse_request(CancelRequest, _body()))
    return json_response(
        200, {"tenant": tenant.model_dump(mode="json"), "statement": statement.model_dump(mode="json")}
    )


@app.get("/v1/tenants/<tenant_id>/statements/<month>")
def statement(tenant_id: str, month: str) -> Response:
    _caller(tenant_id)
    result, stored = container.billing_cycle().statement(tenant_id, parse_month(month))
    return json_response(200, {"preview": not stored, "statement": result.model_dump(mode="json")})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
