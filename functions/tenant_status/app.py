"""GET /v1/tenants/{tenant_id}/status: payment standing, invoices in dunning and the audit trail
(API key required)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import container
from billing.errors import Forbidden, NotFound
from billing.http import install_error_handlers, json_response
from billing.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.get("/v1/tenants/<tenant_id>/status")
@tracer.capture_method
def tenant_status(tenant_id: str) -> Response:
    principal = container.principal_for(app.current_event.request_context.identity.api_key_id)
    tenant = container.tenants().get(tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}", details=[{"field": "tenant_id", "reason": "unknown"}])
    if not principal.platform and principal.api_key_id not in tenant.api_key_ids:
        raise Forbidden(
            f"this API key may not read tenant {tenant_id!r}",
            details=[{"field": "tenant_id", "reason": "not allowed for this API key"}],
        )
    view = container.dunning_service().status(tenant_id)
    body = view.to_json()
    body["payment_status"] = tenant.payment_status  # what ingest enforces
    return json_response(200, body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
