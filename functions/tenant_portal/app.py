"""The tenant's usage page: signed links (platform key), the page and the JSON route it calls.

POST /v1/tenants/{tenant_id}/portal-link   platform API key -> {url, expires_at}
GET  /v1/portal?token=...&month=YYYY-MM     the page (HTML; no API key: the signed token is the credential)
GET  /v1/portal/data?month=YYYY-MM          the same view as JSON (token as "Authorization: Bearer" or ?token=)
"""

from __future__ import annotations

from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.errors import Forbidden
from billing.kernel.periods import iso
from billing.runtime import container
from billing.runtime.http import (
    PAGE_HEADERS,
    caller,
    html_response,
    install_error_handlers,
    json_response,
    request_body,
)
from billing.runtime.observability import logger, metrics, tracer

PAGE, DATA = "/v1/portal", "/v1/portal/data"
app = APIGatewayRestResolver()
install_error_handlers(app, html_resources=(PAGE,))


def _base_url() -> str:
    configured = container.settings().portal_base_url
    if configured:
        return configured.rstrip("/")
    ctx = app.current_event.request_context
    host = ctx.domain_name or app.current_event.headers.get("Host") or "localhost"
    return f"https://{host}/{ctx.stage}" if ctx.stage else f"https://{host}"


@app.post("/v1/tenants/<tenant_id>/portal-link")
def portal_link(tenant_id: str) -> Response:
    from billing.portal.tokens import parse_ttl

    principal = caller(app.current_event)
    if not principal.platform:
        raise Forbidden(
            "only the platform key may create portal links",
            details=[{"field": "x-api-key", "reason": "not a platform key"}],
        )
    ttl = parse_ttl(request_body(app.current_event))
    container.portal_service().tenant(tenant_id)  # 404 for an unknown tenant
    token, expires_at = container.portal_tokens().issue(tenant_id, ttl)
    logger.info("portal link issued", extra={"tenant_id": tenant_id, "expires_at": iso(expires_at)})
    return json_response(
        201, {"url": f"{_base_url()}{PAGE}?token={quote(token)}", "expires_at": iso(expires_at)}
    )


def _token() -> str | None:
    auth = app.current_event.headers.get("Authorization") or app.current_event.headers.get("authorization")
    if auth and auth.startswith("Bearer "):
        return auth[len("Bearer ") :].strip()
    return app.current_event.get_query_string_value("token")


@app.get(PAGE)
@tracer.capture_method
def page() -> Response:
    from billing.portal.page import content_security_policy, render_page

    token = app.current_event.get_query_string_value("token")
    grant = container.portal_tokens().verify(token)
    logger.append_keys(tenant_id=grant.tenant_id)
    view = container.portal_service().view(grant.tenant_id, app.current_event.get_query_string_value("month"))
    html, nonce = render_page(view, token or "")
    return html_response(200, html, {"Content-Security-Policy": content_security_policy(nonce)})


@app.get(DATA)
@tracer.capture_method
def data() -> Response:
    from billing.portal.page import render_content

    grant = container.portal_tokens().verify(_token())
    logger.append_keys(tenant_id=grant.tenant_id)
    view = container.portal_service().view(grant.tenant_id, app.current_event.get_query_string_value("month"))
    return json_response(200, {**view.to_json(), "html": render_content(view)}, dict(PAGE_HEADERS))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
