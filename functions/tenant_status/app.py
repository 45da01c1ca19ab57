"""GET /v1/tenants/{tenant_id}/status: payment standing, invoices in dunning and the audit trail;
GET /v1/tenants/{tenant_id}/quota: the quota gate's read (API key required; a tenant's own key
reads only its own tenant)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.periods import Month
from billing.metering.quota_windows import quota_window
from billing.metering.quotas import quota_status
from billing.runtime import container
from billing.runtime.http import caller, install_error_handlers, json_response
from billing.runtime.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.get("/v1/tenants/<tenant_id>/status")
@tracer.capture_method
def tenant_status(tenant_id: str) -> Response:
    principal = caller(app.current_event)
    view = container.tenant_service().status(tenant_id, principal)
    body = view.to_json()
    credits = container.credit_book().summary(tenant_id, container.clock()())
    if credits["grants"]:  # tenants without prepaid credits keep the body they always had
        body["credits"] = credits
    return json_response(200, body)


@app.get("/v1/tenants/<tenant_id>/quota")
@tracer.capture_method
def tenant_quota(tenant_id: str) -> Response:
    principal = caller(app.current_event)
    now = container.clock()()
    found, used = container.quota_reads().read(tenant_id, str(Month.of(now)))
    window = quota_window(found, now)
    if window.key != str(Month.of(now)):  # a tenant calendar's period: its own counter
        found, used = container.quota_reads().read(tenant_id, window.key)
    tenant = principal.require(tenant_id, found, "read the quota of")
    status = quota_status(tenant, container.plan_catalog(), used, now)
    return json_response(200, status.to_json(), headers={"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
